"""Stripe-compatible reads: GET /v1/billing/analytics/meter_usage (spec/stripe-meter-usage-
analytics.md, API version 2025-09-30.preview and later) and
GET /v1/billing/meters/{id}/event_summaries.

Stripe encodes nested parameters in the query string with brackets
(`meters[0][dimension_filters][model][0]=gpt-4`); FastAPI does not, so the raw query string
is parsed here, by hand, into nested dicts and lists, and every name and value is checked
before use. `customer` is the catalog customer `id` (DESIGN 3b.7). Times are Unix seconds
aligned to minutes. Values are JSON numbers with every digit.

Decisions where Stripe leaves room:
- rows exist only for buckets (or, without value_grouping_window, ranges) with events;
- a row's starts_at/ends_at are its bucket clipped to [starts_at, ends_at);
- dimension filters accept one value (`[dimension_filters][k]=v`, older API versions) or a
  list (`[dimension_filters][k][0]=v`); group-by values of events without the property are "";
- event summaries use UTC hours/days, newest first; only windows with events get a summary,
  but without value_grouping_window there is always exactly one.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Path, Request

from api import lookups
from api.db import ReadOnlyWarehouse
from api.deps import Principal, PrincipalDep, SettingsDep, WarehouseDep
from api.encoding import ExactJSONResponse, unix
from api.errors import ERROR_RESPONSES, bad_request
from api.inputs import check_property_name, check_range, check_timezone, unix_seconds
from api.schemas import (
    MAX_GROUP_BY,
    MAX_LIST_ITEMS,
    MAX_PROPERTY_FILTERS,
    StripeMeterEventSummary,
    StripeMeterEventSummaryList,
    StripeMeterUsage,
    StripeMeterUsageRow,
    StripeMeterUsageRows,
)
from api.serving import SNAPSHOT_INFO
from api.usage import Dimension, Selection, grouped_usage, meter_usage

router = APIRouter(prefix="/v1/billing", tags=["Stripe billing analytics"],
                   responses=ERROR_RESPONSES)

USAGE_WINDOWS = {"hour": "HOUR", "day": "DAY", "week": "WEEK", "month": "MONTH"}
SUMMARY_WINDOWS = {"hour": "HOUR", "day": "DAY"}
MAX_PARAMETERS = 1000
MAX_DEPTH = 5
_KEY = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")

Params = dict[str, Any]


def _documented(*params: tuple[str, str, bool, dict]) -> dict[str, Any]:
    """OpenAPI parameters of a route whose query string is parsed by hand."""
    return {"parameters": [
        {"name": name, "in": "query", "required": required, "description": text,
         "schema": schema} for name, text, required, schema in params
    ]}


_STRING, _INTEGER = {"type": "string"}, {"type": "integer"}
USAGE_PARAMETERS = _documented(
    ("customer", "Catalog customer id", True, _STRING),
    ("starts_at", "Start (inclusive), Unix seconds, a multiple of 60", True, _INTEGER),
    ("ends_at", "End (exclusive), Unix seconds, a multiple of 60", True, _INTEGER),
    ("meters[0][meter]", "Meter id; meters[1][meter], ... for more (default: all meters)",
     False, _STRING),
    ("meters[0][dimension_filters][<key>][0]", "Keep events whose property <key> is one of "
     "the values (also meters[0][dimension_filters][<key>]=value)", False, _STRING),
    ("meters[0][dimension_group_by_keys][0]", "Group by this property", False, _STRING),
    ("timezone", "IANA timezone of the buckets (default UTC)", False, _STRING),
    ("value_grouping_window", "hour, day, week or month (default: one row for the range)",
     False, {"type": "string", "enum": list(USAGE_WINDOWS)}),
)
SUMMARY_PARAMETERS = _documented(
    ("customer", "Catalog customer id", True, _STRING),
    ("start_time", "Start (inclusive), Unix seconds, a multiple of 60", True, _INTEGER),
    ("end_time", "End (exclusive), Unix seconds, a multiple of 60", True, _INTEGER),
    ("value_grouping_window", "hour or day, UTC (default: one summary for the range)", False,
     {"type": "string", "enum": list(SUMMARY_WINDOWS)}),
    ("limit", "1 to 100, default 10", False, _INTEGER),
    ("starting_after", "Summary id: the page after it", False, _STRING),
    ("ending_before", "Summary id: the page before it", False, _STRING),
)


# --------------------------------------------------------------------------------------------
# Stripe's bracket encoding


def parse_bracket_query(query: str) -> Params:
    """`a[0][b]=x&a[0][c][]=y` -> {"a": {"0": {"b": "x", "c": {"0": "y"}}}}."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=MAX_PARAMETERS)
    except ValueError:
        raise bad_request(f"too many query parameters (at most {MAX_PARAMETERS})") from None
    root: Params = {}
    for key, value in pairs:
        match = _KEY.fullmatch(key)
        if match is None:
            raise bad_request(f"cannot parse the query parameter name {key!r}", key)
        path = [match.group(1), *_SEGMENT.findall(match.group(2))]
        if len(path) > MAX_DEPTH:
            raise bad_request(f"query parameter {key!r} is nested too deeply", key)
        node = root
        for segment in path[:-1]:
            segment = segment or str(len(node))
            child = node.setdefault(segment, {})
            if not isinstance(child, dict):
                raise bad_request(f"query parameter {key!r} conflicts with another one", key)
            node = child
        last = path[-1] or str(len(node))
        if last in node:
            raise bad_request(f"query parameter {key!r} is given more than once", key)
        node[last] = value
    return root


def _reject_unknown(params: Params, allowed: set[str], prefix: str = "") -> None:
    for name in params:
        if name not in allowed:
            label = f"{prefix}[{name}]" if prefix else name
            raise bad_request(f"received unknown parameter: {label}", label)


def _text(params: Params, name: str, label: str | None = None, required: bool = False
          ) -> str | None:
    label = label or name
    value = params.get(name)
    if isinstance(value, dict):
        raise bad_request(f"{label} must be a single value", label)
    if value in (None, "") and required:
        raise bad_request(f"missing required parameter: {label}", label)
    return value or None


def _list(value: Any, label: str) -> list[Any]:
    """A bracket-encoded list: {"0": a, "1": b} -> [a, b] (indexes in numeric order)."""
    if value is None:
        return []
    if not isinstance(value, dict) or not all(k.isdigit() for k in value):
        raise bad_request(f"{label} must be a list: {label}[0]=..., {label}[1]=...", label)
    return [value[k] for k in sorted(value, key=int)]


def _strings(value: Any, label: str) -> list[str]:
    items = [value] if isinstance(value, str) else _list(value, label)
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise bad_request(f"{label}[{index}] must be a single value", f"{label}[{index}]")
    return items


def _check_count(items: Any, limit: int, label: str) -> None:
    if len(items) > limit:
        raise bad_request(f"{label}: at most {limit} entries are allowed, got {len(items)}",
                          label)


def refreshed_at(warehouse: ReadOnlyWarehouse) -> int:
    """When the data was published (serving snapshots), else now."""
    if warehouse.is_duckdb and warehouse.source.startswith("snapshot-"):
        rows = warehouse.query(f"select published_at from {warehouse.table(SNAPSHOT_INFO)}")
        if rows and rows[0][0] is not None:
            return unix(rows[0][0])
    return unix(datetime.now(UTC))


# --------------------------------------------------------------------------------------------
# GET /v1/billing/analytics/meter_usage


def _meter_specs(params: Params) -> list[dict[str, Any]]:
    specs = []
    items = _list(params.get("meters"), "meters")
    _check_count(items, MAX_LIST_ITEMS, "meters")
    for index, item in enumerate(items):
        label = f"meters[{index}]"
        if not isinstance(item, dict):
            raise bad_request(f"{label} must be an object: {label}[meter]=...", label)
        for unsupported in ("tenant_filters", "tenant_group_by_keys"):
            if unsupported in item:
                raise bad_request(f"{label}[{unsupported}] is not supported; use "
                                  "dimension_filters and dimension_group_by_keys",
                                  f"{label}[{unsupported}]")
        _reject_unknown(item, {"meter", "dimension_filters", "dimension_group_by_keys"}, label)
        meter_id = _text(item, "meter", f"{label}[meter]", required=True)
        filters_param = item.get("dimension_filters") or {}
        if not isinstance(filters_param, dict):
            raise bad_request(f"{label}[dimension_filters] must be key-value pairs: "
                              f"{label}[dimension_filters][key]=value",
                              f"{label}[dimension_filters]")
        filters = []
        _check_count(filters_param, MAX_PROPERTY_FILTERS, f"{label}[dimension_filters]")
        for name, values in sorted(filters_param.items()):
            filter_label = f"{label}[dimension_filters][{name}]"
            check_property_name(name, filter_label)
            strings = _strings(values, filter_label)
            if not strings:
                raise bad_request(f"{filter_label} needs a value", filter_label)
            _check_count(strings, MAX_LIST_ITEMS, filter_label)
            filters.append((name, tuple(dict.fromkeys(strings))))
        keys_label = f"{label}[dimension_group_by_keys]"
        keys = []
        key_names = _strings(item.get("dimension_group_by_keys"), keys_label)
        _check_count(key_names, MAX_GROUP_BY, keys_label)
        for position, name in enumerate(key_names):
            check_property_name(name, f"{keys_label}[{position}]")
            if name not in keys:
                keys.append(name)
        specs.append({"meter": meter_id, "filters": tuple(filters), "keys": keys,
                      "param": f"{label}[meter]"})
    return specs


@router.get("/analytics/meter_usage", response_model=StripeMeterUsage,
            summary="Retrieve aggregated meter usage data",
            operation_id="retrieveBillingAnalyticsMeterUsage", openapi_extra=USAGE_PARAMETERS)
def retrieve_meter_usage(
    request: Request,
    warehouse: WarehouseDep,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> ExactJSONResponse:
    """Query (Stripe bracket encoding): customer, starts_at, ends_at, meters[i][meter],
    meters[i][dimension_filters][key][j], meters[i][dimension_group_by_keys][j], timezone,
    value_grouping_window (hour, day, week, month)."""
    params = parse_bracket_query(request.url.query)
    _reject_unknown(params, {"customer", "starts_at", "ends_at", "meters", "timezone",
                             "value_grouping_window", "expand"})
    customer_id = _text(params, "customer", required=True)
    start = unix_seconds(_text(params, "starts_at"), "starts_at")
    end = unix_seconds(_text(params, "ends_at"), "ends_at")
    timezone = check_timezone(_text(params, "timezone") or "UTC")
    grouping = _text(params, "value_grouping_window")
    if grouping is not None and grouping not in USAGE_WINDOWS:
        raise bad_request(f"value_grouping_window must be one of {', '.join(USAGE_WINDOWS)}, "
                          f"got {grouping!r}", "value_grouping_window")
    window = USAGE_WINDOWS.get(grouping) if grouping else None
    start, end = check_range(start, end, window, settings, "starts_at", "ends_at",
                             "value_grouping_window")
    specs = _meter_specs(params)
    customer = lookups.customer_by_id(warehouse, principal, customer_id)
    if specs:
        meters = [lookups.meter_by_id(warehouse, principal, s["meter"], s["param"])
                  for s in specs]
    else:
        meters = lookups.meters(warehouse, principal)
        specs = [{"meter": m.id, "filters": (), "keys": []} for m in meters]

    rows: list[StripeMeterUsageRow] = []
    for meter, spec in zip(meters, specs, strict=True):
        selection = Selection(property_filters=spec["filters"],
                              group_by=tuple(Dimension.property(k) for k in spec["keys"]))
        groups = grouped_usage(warehouse, meter.info(), [customer.external_id], start, end,
                               window, timezone, None, None, selection)
        for key, usage in sorted(groups.items()):
            if usage.event_count == 0:
                continue
            dimensions = dict(zip(spec["keys"], key, strict=True))
            bounds = ([(max(p.start, start), min(p.end, end), p.value) for p in usage.points]
                      if window else [(start, end, usage.total)])
            rows += [StripeMeterUsageRow(meter=meter.id, starts_at=unix(lo), ends_at=unix(hi),
                                         value=value, dimensions=dimensions)
                     for lo, hi, value in bounds]
    body = StripeMeterUsage(refreshed_at=refreshed_at(warehouse),
                            rows=StripeMeterUsageRows(total=len(rows), data=rows))
    return ExactJSONResponse(body.model_dump(mode="python"))


# --------------------------------------------------------------------------------------------
# GET /v1/billing/meters/{id}/event_summaries


def summary_id(principal: Principal, meter_id: str, customer_id: str, start: int, end: int) -> str:
    key = "|".join([principal.tenant_id, principal.environment_id, meter_id, customer_id,
                    str(start), str(end)])
    return "mtrusg_" + hashlib.sha256(key.encode()).hexdigest()[:32]


def _limit(text: str | None) -> int:
    if text is None:
        return 10
    if not text.isdigit() or not 1 <= int(text) <= 100:
        raise bad_request(f"limit must be an integer between 1 and 100, got {text!r}", "limit")
    return int(text)


@router.get("/meters/{meter_id}/event_summaries", response_model=StripeMeterEventSummaryList,
            summary="List billing meter event summaries",
            operation_id="listBillingMeterEventSummaries", openapi_extra=SUMMARY_PARAMETERS)
def list_event_summaries(
    request: Request,
    meter_id: Annotated[str, Path(min_length=1, max_length=200)],
    warehouse: WarehouseDep,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> ExactJSONResponse:
    """Query: customer, start_time, end_time (Unix seconds, minute-aligned),
    value_grouping_window (hour, day; UTC), limit (1-100, default 10), starting_after,
    ending_before (summary ids)."""
    params = parse_bracket_query(request.url.query)
    _reject_unknown(params, {"customer", "start_time", "end_time", "value_grouping_window",
                             "limit", "starting_after", "ending_before", "expand"})
    customer_id = _text(params, "customer", required=True)
    start = unix_seconds(_text(params, "start_time"), "start_time")
    end = unix_seconds(_text(params, "end_time"), "end_time")
    grouping = _text(params, "value_grouping_window")
    if grouping is not None and grouping not in SUMMARY_WINDOWS:
        raise bad_request(f"value_grouping_window must be one of "
                          f"{', '.join(SUMMARY_WINDOWS)}, got {grouping!r}",
                          "value_grouping_window")
    window = SUMMARY_WINDOWS.get(grouping) if grouping else None
    limit = _limit(_text(params, "limit"))
    after, before = _text(params, "starting_after"), _text(params, "ending_before")
    if after and before:
        raise bad_request("give starting_after or ending_before, not both", "ending_before")
    start, end = check_range(start, end, window, settings, "start_time", "end_time",
                             "value_grouping_window")
    meter = lookups.meter_by_id(warehouse, principal, meter_id, "id")
    customer = lookups.customer_by_id(warehouse, principal, customer_id)

    usage = meter_usage(warehouse, meter.info(), customer.external_id, start, end, window, "UTC")
    bounds = ([(max(p.start, start), min(p.end, end), p.value) for p in usage.points]
              if window else [(start, end, usage.total)])
    summaries = [
        StripeMeterEventSummary(
            id=summary_id(principal, meter.id, customer.id, unix(lo), unix(hi)),
            aggregated_value=value, start_time=unix(lo), end_time=unix(hi), meter=meter.id)
        for lo, hi, value in reversed(bounds)  # newest first, as Stripe lists them
    ]
    ids = [s.id for s in summaries]
    cursor = after or before
    if cursor is not None and cursor not in ids:
        param = "starting_after" if after else "ending_before"
        raise bad_request(f"{param}: {cursor!r} is not a summary of this query", param)
    if after:
        first = ids.index(after) + 1
        page, has_more = summaries[first:first + limit], first + limit < len(summaries)
    elif before:
        last = ids.index(before)
        page, has_more = summaries[max(0, last - limit):last], last - limit > 0
    else:
        page, has_more = summaries[:limit], len(summaries) > limit
    body = StripeMeterEventSummaryList(data=page, has_more=has_more,
                                       url=f"/v1/billing/meters/{meter.id}/event_summaries")
    return ExactJSONResponse(body.model_dump(mode="python"))
