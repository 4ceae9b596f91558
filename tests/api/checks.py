"""Checks shared by the DuckDB, Postgres and real-server tests: an API answer against the
plain-Python reference (`models.reference`) on the same events.

Each check takes something with `.get`/`.post` (TestClient or httpx.Client) and the
`Expected` of the test data, and asserts; it returns how many numbers it compared.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import quote

from models import reference as ref
from models import windows
from tests.api.data import ACME_KEY, T0, T1, Expected, acme, close, iso

CANONICAL = re.compile(r"-?(0|[1-9]\d*)(\.\d*[1-9])?")
METERS = ["mtr_calls", "mtr_tokens", "mtr_latency", "mtr_peak", "mtr_users", "mtr_level",
          "mtr_storage"]
KINDS = {"mtr_calls": "COUNT", "mtr_tokens": "SUM", "mtr_latency": "AVG", "mtr_peak": "MAX",
         "mtr_users": "COUNT_UNIQUE", "mtr_level": "LATEST", "mtr_storage": "WEIGHTED_SUM"}
START = datetime(2024, 3, 8, 7, 30, tzinfo=UTC)
END = datetime(2024, 3, 12, 19, 45, tzinfo=UTC)
ANCHOR = datetime(2024, 1, 31, 10, 0, tzinfo=UTC)


def canonical(text: str) -> Decimal:
    assert CANONICAL.fullmatch(text), f"not canonical decimal text: {text!r}"
    return Decimal(text)


def stripe_query(params: dict) -> str:
    """A query string encoded the way Stripe's client libraries encode nested parameters."""
    pairs: list[tuple[str, str]] = []

    def flatten(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                flatten(f"{prefix}[{key}]" if prefix else str(key), item)
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                flatten(f"{prefix}[{index}]", item)
        else:
            pairs.append((prefix, str(value)))

    flatten("", params)
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)


def exact_json(response) -> dict:
    """A response body with its JSON numbers as Decimals (Stripe values are exact numbers)."""
    return json.loads(response.text, parse_float=Decimal)


def assert_usage(kind: str, got_total: str, got_count: int, got_points: list[tuple],
                 want: ref.UsageResult, context) -> int:
    """got_points: (start iso, value text, event_count)."""
    assert got_count == want.event_count, context
    assert close(kind, canonical(got_total), want.total), (context, got_total, want.total)
    assert [(p[0], p[2]) for p in got_points] == [
        (iso(p.start), p.event_count) for p in want.points], context
    for got, point in zip(got_points, want.points, strict=True):
        assert close(kind, canonical(got[1]), point.value), (context, got, point)
    return 1 + len(want.points)


# -- POST /v1/meter-usage/analytics ------------------------------------------------------------
def check_meter_usage_matches_reference(client, expected: Expected) -> int:
    """Every meter, window and range kind: minute-aligned (START, END) and hour-aligned
    (T0, T1, answered from states merged per hour)."""
    compared = 0
    cases = [(START, END, None, None), (START, END, "HOUR", None), (START, END, "DAY", None),
             (START, END, "15MIN", None), (START, END, "MONTH", ANCHOR),
             (START, END, "MONTH", None), (START, END, "WEEK", None), (T0, T1, None, None),
             (T0, T1, "HOUR", None), (T0, T1, "3HOUR", None), (T0, T1, "MONTH", ANCHOR)]
    for start, end, window, anchor in cases:
        body = {"external_customer_id": "cust_1", "meter_ids": METERS, "start_time": iso(start),
                "end_time": iso(end), "aggregation_type": "COUNT"}
        if window:
            body["window_size"] = window
        if anchor:
            body["billing_anchor"] = iso(anchor)
        for meter_id in METERS:
            kind = KINDS[meter_id]
            response = client.post("/v1/meter-usage/analytics", headers=acme(),
                                   json={**body, "meter_ids": [meter_id], "aggregation_type": kind})
            assert response.status_code == 200, response.text
            (item,) = response.json()["items"]
            assert (item["meter_id"], item["aggregation_type"]) == (meter_id, kind)
            want = expected.usage(meter_id, "cust_1", start, end, window, anchor=anchor)
            compared += assert_usage(
                kind, item["total_value"], item["event_count"],
                [(p["timestamp"], p["value"], p["event_count"]) for p in item["points"]],
                want, (meter_id, start, window, anchor))
    return compared


def check_aggregation_override(client, expected: Expected) -> int:
    """The request's aggregation_type decides how the meter's quantities aggregate."""
    compared = 0
    for kind in ("SUM", "MAX", "AVG", "LATEST", "WEIGHTED_SUM"):
        response = client.post("/v1/meter-usage/analytics", headers=acme(), json={
            "external_customer_id": "cust_2", "meter_ids": ["mtr_tokens"], "window_size": "DAY",
            "start_time": iso(T0), "end_time": iso(T1), "aggregation_type": kind})
        assert response.status_code == 200, response.text
        (item,) = response.json()["items"]
        assert item["aggregation_type"] == kind
        want = expected.usage("mtr_tokens", "cust_2", T0, T1, "DAY", aggregation_type=kind)
        compared += assert_usage(kind, item["total_value"], item["event_count"],
                                 [(p["timestamp"], p["value"], p["event_count"])
                                  for p in item["points"]], want, kind)
    return compared


# -- POST /v1/events/analytics -----------------------------------------------------------------
def _property_is(name: str, values: set[str]):
    return lambda e: ref.canonical_text(e.properties.get(name)) in values


def check_events_analytics_matches_reference(client, expected: Expected) -> int:
    compared = 0
    base = {"external_customer_id": "cust_1", "start_time": iso(START), "end_time": iso(END),
            "window_size": "HOUR"}
    # plain: one item per feature with events, the meter's own aggregation
    response = client.post("/v1/events/analytics", headers=acme(), json=base)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["currency"] == "usd"
    assert canonical(body["total_cost"]) == sum(Decimal(i["total_cost"]) for i in body["items"])
    by_feature = {item["feature_id"]: item for item in body["items"]}
    assert set(by_feature) == {"feat_calls", "feat_tokens", "feat_peak", "feat_storage"}
    for feature_id, meter_id in (("feat_calls", "mtr_calls"), ("feat_tokens", "mtr_tokens"),
                                 ("feat_peak", "mtr_peak"), ("feat_storage", "mtr_storage")):
        item = by_feature[feature_id]
        want = expected.usage(meter_id, "cust_1", START, END, "HOUR")
        compared += assert_usage(KINDS[meter_id], item["total_usage"], item["event_count"],
                                 [(p["timestamp"], p["usage"], p["event_count"])
                                  for p in item["points"]], want, feature_id)
        compared += assert_costs(item, expected, ["cust_1"], START, END, "HOUR")
        assert item["window_size"] == "HOUR" and item["meter_id"] == meter_id
    calls = by_feature["feat_calls"]
    total = Decimal(calls["total_usage"])
    shown = (total * Decimal("0.001")).quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")
    assert calls["total_usage_display"] == ref.decimal_text(shown)
    assert calls["reporting_unit"] == {"unit_singular": "k-call", "unit_plural": "k-calls",
                                       "conversion_rate": 0.001}
    assert (calls["unit"], calls["unit_plural"]) == ("call", "calls")
    assert by_feature["feat_tokens"]["total_usage_display"] == ""
    sources = {e.source for e in expected.events(["cust_1"])
               if e.event_name == "api_request" and e.source and START <= e.timestamp < END}
    assert calls["sources"] == sorted(sources)

    # group_by a property: numbers in canonical form (5 and 5.0 are one group "5")
    response = client.post("/v1/events/analytics", headers=acme(), json={
        **base, "feature_ids": ["feat_tokens"], "group_by": ["properties.model", "feature_id"]})
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    groups = {item["properties"]["model"]: item for item in items}
    assert set(groups) <= {"gpt-4", "gpt-4o", "5", "o1", ""} and "5" in groups
    for value, item in groups.items():
        want = expected.usage("mtr_tokens", "cust_1", START, END, "HOUR",
                              where=lambda e, v=value: ref.group_value(e, "model") == v)
        compared += assert_usage("SUM", item["total_usage"], item["event_count"],
                                 [(p["timestamp"], p["usage"], p["event_count"])
                                  for p in item["points"]], want, ("model", value))
        compared += assert_costs(item, expected, ["cust_1"], START, END, "HOUR",
                                 where=lambda e, v=value: ref.group_value(e, "model") == v)

    # filters on properties and sources, grouped by source
    response = client.post("/v1/events/analytics", headers=acme(), json={
        **base, "feature_ids": ["feat_calls", "feat_storage"], "group_by": ["source"],
        "property_filters": {"model": ["gpt-4", 5]}, "sources": ["web", "batch"]})
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert items and all(item["source"] in ("web", "batch") for item in items)
    assert all("sources" not in item for item in items)
    for item in items:
        meter_id = item["meter_id"]
        want = expected.usage(
            meter_id, "cust_1", START, END, "HOUR",
            where=lambda e, s=item["source"]: e.source == s
            and _property_is("model", {"gpt-4", "5"})(e))
        compared += assert_usage(KINDS[meter_id], item["total_usage"], item["event_count"],
                                 [(p["timestamp"], p["usage"], p["event_count"])
                                  for p in item["points"]], want, ("source", item["source"]))
        compared += assert_costs(
            item, expected, ["cust_1"], START, END, "HOUR",
            where=lambda e, s=item["source"]: e.source == s
            and _property_is("model", {"gpt-4", "5"})(e))
    return compared


PRICES = {"feat_calls": "price_calls", "feat_tokens": "price_tokens", "feat_peak": "price_peak",
          "feat_storage": "price_storage"}


def assert_costs(item: dict, expected: Expected, customers: list[str], start: datetime,
                 end: datetime, window: str | None, where=None,
                 timezone: str = "America/New_York") -> int:
    """An item's cost and its points' costs equal the pricing reference (models.pricing)."""
    price_id = PRICES[item["feature_id"]]
    want = expected.cost(price_id, customers, start, end, where)
    assert canonical(item["total_cost"]) == want, (item["feature_id"], item["total_cost"], want)
    assert item["currency"] == "usd" and item["price_id"] == price_id
    assert item["sub_line_item_id"] == f"sub_1:{price_id}"
    compared = 1
    for point in item["points"]:
        at = datetime.fromisoformat(point["timestamp"])
        stop = windows.next_bucket_start(at, window, timezone,
                                         expected.case.customer_anchor("cust_1"))
        want = expected.point_cost(price_id, customers, max(at, start), min(stop, end), where)
        assert canonical(point["cost"]) == want, (item["feature_id"], point, want)
        compared += 1
    return compared


def check_include_children(client, expected: Expected) -> int:
    """A parent's usage with its child folded in: the union of their events."""
    response = client.post("/v1/events/analytics", headers=acme(), json={
        "external_customer_id": "cust_1", "start_time": iso(T0), "end_time": iso(T1),
        "feature_ids": ["feat_tokens", "feat_calls", "feat_storage"], "include_children": True,
        "window_size": "DAY"})
    assert response.status_code == 200, response.text
    items = {item["feature_id"]: item for item in response.json()["items"]}
    for feature_id, meter_id in (("feat_tokens", "mtr_tokens"), ("feat_calls", "mtr_calls")):
        meter = expected.meter(meter_id)
        want = ref.usage(meter, expected.events(["cust_1", "cust_2"]), T0, T1, "DAY",
                         "America/New_York", expected.case.customer_anchor("cust_1"))
        assert_usage(KINDS[meter_id], items[feature_id]["total_usage"],
                     items[feature_id]["event_count"],
                     [(p["timestamp"], p["usage"], p["event_count"])
                      for p in items[feature_id]["points"]], want, feature_id)
    # costs: the parent's subscription prices the family's folded usage
    for feature_id in ("feat_tokens", "feat_calls", "feat_storage"):
        assert_costs(items[feature_id], expected, ["cust_1", "cust_2"], T0, T1, "DAY")
    # WEIGHTED_SUM: each customer's level (with its own resets) adds up
    parts = [expected.usage("mtr_storage", c, T0, T1, None) for c in ("cust_1", "cust_2")]
    storage = items["feat_storage"]
    assert storage["event_count"] == sum(p.event_count for p in parts)
    assert close("WEIGHTED_SUM", Decimal(storage["total_usage"]), sum(p.total for p in parts))
    return 3


# -- Stripe --------------------------------------------------------------------------------------
def stripe_get(client, path: str, params: dict, key: str = ACME_KEY):
    return client.get(f"{path}?{stripe_query(params)}",
                      headers={"Authorization": f"Bearer {key}"})


def check_stripe_meter_usage_matches_reference(client, expected: Expected) -> int:
    compared = 0
    start, end = int(START.timestamp()), int(END.timestamp())
    for grouping, window in (("day", "DAY"), ("hour", "HOUR"), (None, None)):
        params = {"customer": "cus_1", "starts_at": start, "ends_at": end,
                  "timezone": "Asia/Kathmandu",
                  "meters": [{"meter": "mtr_tokens"}, {"meter": "mtr_latency"}]}
        if grouping:
            params["value_grouping_window"] = grouping
        response = stripe_get(client, "/v1/billing/analytics/meter_usage", params)
        assert response.status_code == 200, response.text
        body = exact_json(response)
        assert body["object"] == "billing.analytics.meter_usage" and body["livemode"] is False
        assert body["rows"]["total"] == len(body["rows"]["data"])
        for meter_id in ("mtr_tokens", "mtr_latency"):
            rows = [r for r in body["rows"]["data"] if r["meter"] == meter_id]
            want = expected.usage(meter_id, "cust_1", START, END, window, tz="Asia/Kathmandu")
            if window is None:
                assert [(r["starts_at"], r["ends_at"]) for r in rows] == [(start, end)]
                assert close(KINDS[meter_id], Decimal(str(rows[0]["value"])), want.total)
                compared += 1
                continue
            assert [r["starts_at"] for r in rows] == [
                max(int(p.start.timestamp()), start) for p in want.points]
            assert [r["ends_at"] for r in rows] == [
                min(int(p.end.timestamp()), end) for p in want.points]
            for row, point in zip(rows, want.points, strict=True):
                assert row["object"] == "billing.analytics.meter_usage_row"
                assert row["dimensions"] == {}
                assert close(KINDS[meter_id], Decimal(str(row["value"])), point.value)
                compared += 1

    # dimensions: filter on model (list form) and on method (single form), group by region
    params = {"customer": "cus_1", "starts_at": start, "ends_at": end,
              "value_grouping_window": "day",
              "meters": [{"meter": "mtr_calls",
                          "dimension_filters": {"model": ["gpt-4", "5"], "method": "GET"},
                          "dimension_group_by_keys": ["region"]}]}
    response = stripe_get(client, "/v1/billing/analytics/meter_usage", params)
    assert response.status_code == 200, response.text
    rows = response.json()["rows"]["data"]
    regions = {r["dimensions"]["region"] for r in rows}
    assert regions and regions <= {"us", "eu", ""}
    for region in regions:
        want = expected.usage(
            "mtr_calls", "cust_1", START, END, "DAY", tz="UTC",
            where=lambda e, g=region: ref.group_value(e, "region") == g
            and _property_is("model", {"gpt-4", "5"})(e) and _property_is("method", {"GET"})(e))
        got = [r for r in rows if r["dimensions"]["region"] == region]
        assert [r["starts_at"] for r in got] == [
            max(int(p.start.timestamp()), start) for p in want.points]
        assert [Decimal(str(r["value"])) for r in got] == [p.value for p in want.points]
        compared += len(got)
    return compared


def check_event_summaries(client, expected: Expected) -> int:
    start, end = int(T0.timestamp()), int(T1.timestamp())
    path = "/v1/billing/meters/mtr_tokens/event_summaries"
    base = {"customer": "cus_2", "start_time": start, "end_time": end,
            "value_grouping_window": "hour"}
    response = stripe_get(client, path, {**base, "limit": 100})
    assert response.status_code == 200, response.text
    everything = response.json()["data"]
    want = expected.usage("mtr_tokens", "cust_2", T0, T1, "HOUR", tz="UTC")
    assert [(s["start_time"], Decimal(str(s["aggregated_value"]))) for s in everything] == [
        (int(p.start.timestamp()), p.value) for p in reversed(want.points)]
    assert all(s["object"] == "billing.meter_event_summary" and s["meter"] == "mtr_tokens"
               for s in everything)
    # paging forward with starting_after visits every summary once, in order
    seen, cursor = [], None
    while True:
        params = {**base, "limit": 7, **({"starting_after": cursor} if cursor else {})}
        page = stripe_get(client, path, params).json()
        seen += page["data"]
        if not page["has_more"]:
            break
        cursor = page["data"][-1]["id"]
    assert seen == everything
    # and backwards with ending_before
    page = stripe_get(client, path, {**base, "limit": 3,
                                     "ending_before": everything[5]["id"]}).json()
    assert page["data"] == everything[2:5] and page["has_more"] is True
    # without a grouping window: exactly one summary for the whole range
    (single,) = stripe_get(client, path, {"customer": "cus_2", "start_time": start,
                                          "end_time": end}).json()["data"]
    assert (single["start_time"], single["end_time"]) == (start, end)
    assert Decimal(str(single["aggregated_value"])) == want.total
    return len(everything) + 1
