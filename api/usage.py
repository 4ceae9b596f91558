"""Meter usage of any minute-aligned range, in any timezone, from the stored minute states.

This is how the read API answers ranges and windows that no precomputed rollup has (any
IANA timezone, any start and end): it fetches the per-minute states of one meter and one
customer (or a parent and its children) and merges them with `models.states`. It never
reads raw events.

Two sources of minute states:
- `fct_meter_usage_minutely` when the whole meter is asked for (`meter_usage`);
- `serving_meter_event_values`, aggregated into the same states in SQL, when events are
  filtered by properties or sources or grouped by source or properties
  (`grouped_usage` with a `Selection`); every aggregation type stays exact.
States are merged in SQL before they reach Python, into slots no answer looks inside
(`usage_grain`): the query's own windows (`Slots`: a state per window, or one for the whole
range), cut also at a bucketed MAX meter's own buckets; for WEIGHTED_SUM, whose value
integrates over time inside a window (or where slots cannot be cut), whole UTC hours where
every boundary of the query is one (`choose_grain`), else minutes.
"""

from __future__ import annotations

import decimal
import re
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from api.db import catalog_lookup, catalog_query, environment_scope
from api.serving import SERIES_ROWS
from models import states as st
from models import windows
from orchestration.warehouse import Warehouse

FAR_PAST = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
# Running sums of decimal(38, 12) values: wide enough never to round.
_WIDE = decimal.Context(prec=80)

# Property names a request may filter or group by. They are bound as parameters, never
# spliced into SQL; the pattern also keeps them valid inside a quoted JSON path.
PROPERTY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}")

Group = tuple[str, ...]


class UnsupportedAggregation(ValueError):
    """The requested aggregation cannot be computed from this meter's stored states."""


@dataclass(frozen=True)
class MeterInfo:
    tenant_id: str
    environment_id: str
    meter_id: str
    aggregation_type: str
    bucket_size: str | None
    reset_usage: str


@dataclass(frozen=True)
class Point:
    start: datetime
    end: datetime
    value: Decimal
    event_count: int


@dataclass
class Usage:
    total: Decimal
    event_count: int
    points: list[Point] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CustomerCalendar:
    timezone: str
    month_anchor_key: str


@dataclass(frozen=True)
class Dimension:
    """One group-by key: the event's `source`, or one top-level property."""

    kind: str  # "source" | "property"
    name: str = ""

    @classmethod
    def source(cls) -> Dimension:
        return cls("source")

    @classmethod
    def property(cls, name: str) -> Dimension:
        if not PROPERTY_NAME.fullmatch(name):
            raise ValueError(f"invalid property name {name!r}")
        return cls("property", name)


@dataclass(frozen=True)
class Selection:
    """Which of a meter's events a query keeps, and how it splits them into groups.

    `property_filters` match like meter filters (DESIGN 3b.5): the property's canonical text
    is one of the values; a missing property never matches. `sources` keeps events whose
    source is listed. Groups are keyed by the `group_by` values, '' for a missing one.
    """

    property_filters: tuple[tuple[str, tuple[str, ...]], ...] = ()
    sources: tuple[str, ...] | None = None
    group_by: tuple[Dimension, ...] = ()
    with_sources: bool = False  # also list each group's distinct sources

    def __post_init__(self) -> None:
        for name, values in self.property_filters:
            if not PROPERTY_NAME.fullmatch(name):
                raise ValueError(f"invalid property name {name!r}")
            if not values:
                raise ValueError(f"filter on {name!r} has no values")

    @property
    def needs_events(self) -> bool:
        """Whether states must come from the per-event serving table (the minute states of
        the whole meter are not enough)."""
        return bool(self.property_filters or self.sources is not None or self.group_by)


# --------------------------------------------------------------------------------------------
# Catalog and calendars


def load_meter(warehouse: Warehouse, tenant_id: str, environment_id: str,
               meter_id: str) -> MeterInfo | None:
    p = warehouse.ph
    rows = catalog_query(
        warehouse,
        "select aggregation_type, bucket_size, reset_usage "
        f"from {warehouse.table('catalog_meters')} "
        f"where tenant_id = {p} and environment_id = {p} and meter_id = {p}",
        [tenant_id, environment_id, meter_id],
    )
    if not rows:
        return None
    kind, bucket_size, reset = rows[0]
    return MeterInfo(tenant_id, environment_id, meter_id, kind, bucket_size, reset)


def customer_calendar(warehouse: Warehouse, meter: MeterInfo, customer: str) -> CustomerCalendar:
    return environment_calendar(warehouse, meter.tenant_id, meter.environment_id, customer)


def environment_calendar(warehouse: Warehouse, tenant_id: str, environment_id: str,
                         customer: str) -> CustomerCalendar:
    """Timezone and MONTH anchor key of a customer's usage (UTC and '' when unknown)."""
    rows = catalog_lookup(warehouse, "customer_usage_calendars", "timezone, month_anchor_key",
                          environment_scope(tenant_id, environment_id),
                          [("external_customer_id", customer)])
    return CustomerCalendar(*rows[0]) if rows else CustomerCalendar("UTC", "")


def _customers(customer: str | Sequence[str]) -> list[str]:
    return [customer] if isinstance(customer, str) else list(customer)


def _in_list(warehouse: Warehouse, values: Sequence[Any]) -> str:
    return "(" + ", ".join([warehouse.ph] * len(values)) + ")"


@dataclass
class _GroupStates:
    """What one group's usage is computed from."""

    states: list[st.MinuteState] = field(default_factory=list)
    distinct: list[tuple[datetime, str]] = field(default_factory=list)
    carried: Decimal = st.ZERO
    sources: set[str] = field(default_factory=set)


# --------------------------------------------------------------------------------------------
# Reading results fast and exactly
#
# DuckDB turns timestamptz and decimal values into Python objects slowly (~10 µs each), so
# DuckDB queries return instants as epoch microseconds and decimals as text, converted here;
# psycopg2 already returns datetimes and Decimals. Every instant ends up in datetime.UTC, so
# comparisons between them stay cheap.

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MINUTE, HOUR = "minute", "hour"


def _out_ts(warehouse: Warehouse, expr: str) -> str:
    return f"epoch_us({expr})" if warehouse.is_duckdb else expr


def _out_dec(warehouse: Warehouse, expr: str) -> str:
    return f"cast({expr} as varchar)" if warehouse.is_duckdb else expr


def _ts(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int):
        return _EPOCH + timedelta(microseconds=value)
    return value.astimezone(UTC)


def _dec(value: Any) -> Decimal | None:
    if value is None or isinstance(value, Decimal):
        return value
    return Decimal(value)


def _state(row: Sequence[Any]) -> st.MinuteState:
    group, minute, events, values, texts, total, peak, moment, at, seq, event_id, latest = row
    return st.MinuteState(group, _ts(minute), events, values, texts, _dec(total), _dec(peak),
                          _dec(moment), _ts(at), seq, event_id, _dec(latest))


# --------------------------------------------------------------------------------------------
# Row ranges of a series in a serving snapshot
#
# A serving snapshot lists, per table, the first and last row id of each series (tenant
# environment, meter, customer): `api.serving.SERIES_ROWS`. Its tables are sorted by series,
# so a lookup of one series that also bounds the row id reads only that series' rows instead
# of the whole row groups its zone maps leave (~1 ms instead of ~6 ms at 10M events). The
# range only narrows the scan: every query keeps its own filters, so a range that is wider
# than the series (a patched snapshot appends rows) is still exact.


def _has_table(warehouse: Warehouse, table: str) -> bool:
    """Whether the warehouse's schema has `table` (asked once per snapshot)."""
    rows = catalog_query(
        warehouse,
        "select count(*) from information_schema.tables "
        f"where table_schema = {warehouse.ph} and table_name = {warehouse.ph}",
        [warehouse.schema, table])
    return bool(rows and rows[0][0])


def has_series_rows(warehouse: Warehouse) -> bool:
    """Whether the warehouse is a serving snapshot with the series row ranges."""
    if getattr(warehouse, "cache", None) is None or not warehouse.is_duckdb:
        return False
    return _has_table(warehouse, SERIES_ROWS)


def series_rows(warehouse: Warehouse, table: str, meter: MeterInfo, customers: Sequence[str],
                meter_ids: Sequence[str] | None = None) -> str:
    """SQL (`(rowid between m and n) and `) that bounds a lookup of one customer in `table` to
    the rows of its series of `meter` (or of each of `meter_ids`, of `meter`'s tenant
    environment); '' unless every one of those series has a known range."""
    if len(customers) != 1 or not has_series_rows(warehouse):
        return ""
    ranges = []
    for meter_id in meter_ids if meter_ids is not None else [meter.meter_id]:
        found = catalog_lookup(
            warehouse, SERIES_ROWS, "first_row, last_row",
            [("table_name", table), *environment_scope(meter.tenant_id, meter.environment_id)],
            [("meter_id", meter_id), ("external_customer_id", customers[0])])
        if not found:
            return ""
        first, last = found[0]
        # literals, not parameters: DuckDB skips row groups by a row id range it plans with
        # (with bound parameters it reads them all: ~7 ms instead of ~2 ms)
        ranges.append(f"rowid between {int(first)} and {int(last)}")
    return f"({' or '.join(ranges)}) and " if ranges else ""


MAX_SLOTS = 400  # more slots than this: minutes or hours (a `case` per row grows with them)


@dataclass(frozen=True)
class Slots:
    """A grain of explicit slots: the states of [bounds[i], bounds[i + 1]) merge into one,
    keyed by bounds[i]. The bounds are sorted whole UTC minutes; the first and the last are
    the range read. An answer from such states is exact as long as it asks about the usage
    between bounds only (the callers cut at every window, billing period and range boundary
    they ask about). `every` = (n, origin) cuts them also every n minutes from origin: the
    buckets of a bucketed MAX meter, too many to list, where they are that regular."""

    bounds: tuple[datetime, ...]
    every: tuple[int, datetime] | None = None

    @classmethod
    def of(cls, instants: Iterable[datetime], start: datetime, end: datetime,
           every: tuple[int, datetime] | None = None) -> Slots | None:
        """Slots over [start, end) cut at the `instants` inside it (and `every`); None when a
        bound is not a whole minute or there would be more than MAX_SLOTS bounds to list."""
        inside = {start, end, *(at for at in instants if start < at < end)}
        bounds = tuple(sorted(at.astimezone(UTC) for at in inside))
        if every is not None:
            every = (every[0], every[1].astimezone(UTC))
        if len(bounds) > MAX_SLOTS + 1 or any(
                at.second or at.microsecond for at in (*bounds, *(every or ())[1:])):
            return None
        return cls(bounds, every)


Grain = str | Slots


# More `Slots` bounds than this: DuckDB finds a row's slot by an ASOF join on the bounds (one
# bound parameter) instead of a `case` with a branch per bound. Planning such a `case` costs
# about 0.1 ms a branch (15 ms at 168 hourly bounds, 2.5 ms as a join) and evaluating it grows
# with the bounds (200k rows: 57 ms at 168 bounds, 35 ms joined); below it the `case` is cheaper.
ASOF_BOUNDS = 16


@dataclass(frozen=True)
class SlotSql:
    """How a statement reads each row's slot: `expression` (over the row's `minute_start`),
    `join` to write right after the table it reads (or ''), and the join's parameters."""

    expression: str
    join: str = ""
    params: tuple[Any, ...] = ()


def _slot(warehouse: Warehouse, grain: Grain) -> SlotSql:
    """The slot a minute's states are merged into: the minute itself, its UTC hour, or the
    last of the `Slots` bounds at or before it (its rows never lie outside the bounds), or
    the start of its `every` cut if that is later."""
    if not isinstance(grain, Slots):
        return SlotSql("minute_start" if grain == MINUTE else "date_trunc('hour', minute_start)")
    starts = grain.bounds[:-1]
    join: tuple[str, tuple[Any, ...]] = ("", ())
    if warehouse.is_duckdb and len(starts) > ASOF_BOUNDS:
        slot = "slot_bounds.slot_start"
        join = (" asof join (select unnest(?::timestamptz[]) as slot_start) as slot_bounds "
                "on minute_start >= slot_bounds.slot_start", (list(starts),))
    else:
        literals = [f"cast('{at.isoformat()}' as timestamptz)" for at in starts]
        whens = "".join(f"when minute_start >= {at} then {at} " for at in reversed(literals[1:]))
        slot = f"(case {whens}else {literals[0]} end)" if whens else literals[0]
    if grain.every is not None:
        minutes, origin = grain.every
        binned = "time_bucket" if warehouse.is_duckdb else "date_bin"
        slot = (f"greatest({slot}, {binned}(interval '{int(minutes)} minutes', minute_start, "
                f"cast('{origin.isoformat()}' as timestamptz)))")
    return SlotSql(slot, *join)


# --------------------------------------------------------------------------------------------
# States of the whole meter (fct_meter_usage_minutely)


def fetch_states(warehouse: Warehouse, meter: MeterInfo, customer: str | Sequence[str],
                 start: datetime, end: datetime, grain: Grain = MINUTE) -> list[st.MinuteState]:
    """The meter's states in [start, end), per minute or merged per slot (`grain`)."""
    p, customers = warehouse.ph, _customers(customer)
    rows_sql = series_rows(warehouse, "fct_meter_usage_minutely", meter, customers)
    where = (f"where {rows_sql}tenant_id = {p} and environment_id = {p} and meter_id = {p} "
             f"and external_customer_id in {_in_list(warehouse, customers)} "
             f"and minute_start >= {p} and minute_start < {p}")
    params = [meter.tenant_id, meter.environment_id, meter.meter_id, *customers, start, end]
    table = warehouse.table("fct_meter_usage_minutely")
    slot = _slot(warehouse, grain)
    ts, dec = (lambda e: _out_ts(warehouse, e)), (lambda e: _out_dec(warehouse, e))
    if grain == MINUTE:
        sql = (f"select group_value, {ts('minute_start')}, event_count, value_count, text_count, "
               f"{dec('value_sum')}, {dec('value_max')}, {dec('weighted_moment_us')}, "
               f"{ts('latest_timestamp')}, latest_ingest_seq, latest_event_id, "
               f"{dec('latest_value')} from {table} {where} order by minute_start")
    else:  # merge the minutes of each slot; no weighted moment (WEIGHTED_SUM stays per minute)
        latest = "case when latest_rank = 1 then {} end"
        params = [*slot.params, *params]
        sql = (f"with slots as (select *, {slot.expression} as slot from {table}{slot.join} "
               f"{where}), "
               "ranked as (select *, row_number() over (partition by group_value, slot order by "
               "case when latest_timestamp is null then 0 else 1 end desc, "
               "latest_timestamp desc, latest_ingest_seq desc, latest_event_id desc) "
               "as latest_rank from slots) "
               f"select group_value, {ts('slot')}, sum(event_count), sum(value_count), "
               f"sum(text_count), {dec('sum(value_sum)')}, {dec('max(value_max)')}, null, "
               f"{ts('max(' + latest.format('latest_timestamp') + ')')}, "
               f"max({latest.format('latest_ingest_seq')}), "
               f"max({latest.format('latest_event_id')}), "
               f"{dec('max(' + latest.format('latest_value') + ')')} "
               "from ranked group by group_value, slot order by slot")
    return [_state(row) for row in warehouse.query(sql, params)]


def fetch_distinct_values(warehouse: Warehouse, meter: MeterInfo, customer: str | Sequence[str],
                          start: datetime, end: datetime, grain: Grain = MINUTE
                          ) -> list[tuple[datetime, str]]:
    p, customers = warehouse.ph, _customers(customer)
    table = "fct_meter_distinct_values_minutely"
    rows_sql = series_rows(warehouse, table, meter, customers)
    slot = _slot(warehouse, grain)
    rows = warehouse.query(
        f"select distinct {_out_ts(warehouse, slot.expression)}, value_text "
        f"from {warehouse.table(table)}{slot.join} "
        f"where {rows_sql}tenant_id = {p} and environment_id = {p} and meter_id = {p} "
        f"and external_customer_id in {_in_list(warehouse, customers)} "
        f"and minute_start >= {p} and minute_start < {p}",
        [*slot.params, meter.tenant_id, meter.environment_id, meter.meter_id, *customers,
         start, end],
    )
    return [(_ts(slot), value) for slot, value in rows]


def reset_points(warehouse: Warehouse, meter: MeterInfo, customer: str, start: datetime,
                 end: datetime) -> list[datetime]:
    """Billing period starts in (−∞, end) for meters whose usage resets each period."""
    if meter.reset_usage != "BILLING_PERIOD":
        return []
    rows = catalog_lookup(warehouse, "customer_billing_periods",
                          _out_ts(warehouse, "period_start"),
                          environment_scope(meter.tenant_id, meter.environment_id),
                          [("external_customer_id", customer)], "period_start")
    starts = [_ts(row[0]) for row in rows]
    return [at for at in starts if at < end]


def level_before(warehouse: Warehouse, meter: MeterInfo, customer: str, since: datetime,
                 until: datetime) -> Decimal:
    """Σ deltas in [since, until): the WEIGHTED_SUM level carried into a range."""
    if until <= since:
        return st.ZERO
    p = warehouse.ph
    rows_sql = series_rows(warehouse, "fct_meter_usage_minutely", meter, [customer])
    rows = warehouse.query(
        f"select sum(value_sum) from {warehouse.table('fct_meter_usage_minutely')} "
        f"where {rows_sql}tenant_id = {p} and environment_id = {p} and meter_id = {p} "
        f"and external_customer_id = {p} and minute_start >= {p} and minute_start < {p}",
        [meter.tenant_id, meter.environment_id, meter.meter_id, customer, since, until],
    )
    return rows[0][0] or st.ZERO


# --------------------------------------------------------------------------------------------
# States of selected events, by group (serving_meter_event_values)
#
# Properties are read in canonical form (DESIGN 3b.5), as meter filters read them: strings and
# booleans as they are, numbers without exponent or trailing zeros ("5.0" -> "5"), anything
# else (null, objects, arrays, missing) as no value. A missing value never matches a filter
# and groups as ''. Names and values are bound parameters, never SQL text.

_NUMERIC_TEXT = "'^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]{1,3})?$'"


def _property_columns(warehouse: Warehouse, index: int) -> str:
    """Columns k{index}_kind and k{index}_text of one property (its name bound twice)."""
    if warehouse.is_duckdb:
        return (f"json_type(properties, ?) as k{index}_kind, "
                f"json_extract_string(properties, ?) as k{index}_text")
    return (f"jsonb_typeof(properties -> %s) as k{index}_kind, "
            f"(properties ->> %s) as k{index}_text")


def _property_params(warehouse: Warehouse, name: str) -> list[str]:
    # DuckDB reads a JSON path; the name pattern excludes quotes and backslashes
    value = f'$."{name}"' if warehouse.is_duckdb else name
    return [value, value]


def _canonical_sql(warehouse: Warehouse, index: int) -> str:
    """The canonical text of property k{index}, or null (the SQL of mh_canonical_scalar_text)."""
    kind, text = f"k{index}_kind", f"k{index}_text"
    if warehouse.is_duckdb:
        number = f"try_cast(trim({text}) as decimal(38, 12))"
        canonical_number = (
            f"case when regexp_matches(trim({text}), {_NUMERIC_TEXT}) then "
            f"case when {number} = 0 then '0' else regexp_replace(regexp_replace("
            f"cast({number} as varchar), '([.][0-9]*?)0+$', '\\1'), '[.]$', '') end end")
        return (f"case when {kind} in ('VARCHAR', 'BOOLEAN') then {text} "
                f"when {kind} in ('BIGINT', 'UBIGINT', 'DOUBLE', 'HUGEINT', 'UHUGEINT') "
                f"then coalesce({canonical_number}, {text}) end")
    canonical_number = (
        f"case when trim({text}) ~ {_NUMERIC_TEXT} "
        f"and abs(cast(trim({text}) as numeric)) < 1e26 then cast(trim_scale(cast(cast("
        f"trim({text}) as numeric) as decimal(38, 12))) as text) end")
    return (f"case when {kind} in ('string', 'boolean') then {text} "
            f"when {kind} = 'number' then coalesce({canonical_number}, {text}) end")


def _matched_cte(warehouse: Warehouse, meter: MeterInfo, customers: Sequence[str],
                 start: datetime, end: datetime, selection: Selection,
                 grain: Grain = MINUTE, meter_ids: Sequence[str] | None = None
                 ) -> tuple[str, list[Any]]:
    """CTEs ending in `matched`: the selected events with their slot and group columns
    d0..dn; SQL and parameters. Aliases are positional, every request value is bound."""
    p = warehouse.ph
    names = list(dict.fromkeys([d.name for d in selection.group_by if d.kind == "property"]
                               + [name for name, _ in selection.property_filters]))
    key = {name: index for index, name in enumerate(names)}
    extract_sql, extract_params = ["properties"], []
    for name in names:
        extract_sql.append(_property_columns(warehouse, key[name]))
        extract_params += _property_params(warehouse, name)
    ids = list(meter_ids) if meter_ids is not None else [meter.meter_id]
    rows_sql = series_rows(warehouse, "serving_meter_event_values", meter, customers, ids)
    where = [f"{rows_sql}tenant_id = {p}", f"environment_id = {p}",
             f"meter_id in {_in_list(warehouse, ids)}",
             f"external_customer_id in {_in_list(warehouse, customers)}",
             f"minute_start >= {p}", f"minute_start < {p}"]
    where_params: list[Any] = [meter.tenant_id, meter.environment_id, *ids, *customers, start,
                               end]
    if selection.sources is not None:
        if selection.sources:
            where.append(f"event_source in {_in_list(warehouse, selection.sources)}")
            where_params += list(selection.sources)
        else:
            where.append("1 = 0")
    base = ["minute_start", "event_timestamp", "ingest_seq", "event_id", "quantity",
            "value_text", "group_value", "event_source"]
    if meter_ids is not None:
        base.append("meter_id")
    slot = _slot(warehouse, grain)
    extracted = (f"extracted as (select {', '.join(base)}, {slot.expression} as slot, "
                 f"{', '.join(extract_sql)} "
                 f"from {warehouse.table('serving_meter_event_values')}{slot.join} "
                 f"where {' and '.join(where)})")
    canonical = [f"{_canonical_sql(warehouse, key[name])} as c{key[name]}" for name in names]
    dims = []
    for index, dimension in enumerate(selection.group_by):
        column = ("event_source" if dimension.kind == "source"
                  else f"c{key[dimension.name]}")
        dims.append(f"coalesce({column}, '') as d{index}")
    canonicalised = (f"canonical as (select {', '.join([*base, 'slot', *canonical])} "
                     "from extracted)")
    filters, filter_params = [], []
    for name, values in selection.property_filters:
        filters.append(f"c{key[name]} in {_in_list(warehouse, values)}")
        filter_params += list(values)
    matched = (f"matched as (select {', '.join([*base, 'slot', *dims])} from canonical"
               + (f" where {' and '.join(filters)})" if filters else ")"))
    return (f"{extracted}, {canonicalised}, {matched}",
            extract_params + list(slot.params) + where_params + filter_params)


def _group_columns(selection: Selection) -> str:
    return "".join(f"d{i}, " for i in range(len(selection.group_by)))


def _epoch_us(warehouse: Warehouse, column: str) -> str:
    if warehouse.is_duckdb:
        return f"epoch_us({column})"
    return f"cast(extract(epoch from {column}) * 1000000 as bigint)"


def fetch_sources(warehouse: Warehouse, meter: MeterInfo, customers: Sequence[str],
                  start: datetime, end: datetime) -> set[str]:
    """The distinct non-empty sources of the meter's events in [start, end)."""
    matched, params = _matched_cte(warehouse, meter, customers, start, end, Selection())
    rows = warehouse.query(
        f"with {matched} select distinct event_source from matched "
        "where event_source is not null and event_source <> ''", params,
    )
    return {row[0] for row in rows}


def fetch_group_states(warehouse: Warehouse, meter: MeterInfo, customers: Sequence[str],
                       start: datetime, end: datetime, selection: Selection,
                       kind: str, grain: Grain = MINUTE, meter_ids: Sequence[str] | None = None,
                       distinct_ids: Sequence[str] = (),
                       latest_ids: Sequence[str] = (),
                       sources_from: datetime | None = None) -> dict[Group, _GroupStates]:
    """States of the selected events per group and slot: the same states as
    fct_meter_usage_minutely holds, computed the same way, for the selected events only.

    With `meter_ids`, the states of all those meters (of `meter`'s tenant environment) in
    one statement, each group key led by its meter id; distinct values are listed for the
    meters in `distinct_ids` (those whose aggregation is COUNT_UNIQUE), without `meter_ids`
    when `kind` is COUNT_UNIQUE; likewise the latest value only for the meters in
    `latest_ids`, or for `kind` LATEST (its ordering key is a quarter of a statement's time).

    One statement reads the states, the distinct values and (`selection.with_sources`) the
    sources: each state row lists the distinct values and sources of its own events, and a
    group's are the union of its rows' lists (of the slots from `sources_from` on, when
    given: the states read before it serve costs only)."""
    matched, params = _matched_cte(warehouse, meter, customers, start, end, selection, grain,
                                   meter_ids)
    g = _group_columns(selection)
    width = len(selection.group_by)
    if meter_ids is not None:
        g, width = "meter_id, " + g, width + 1
        distinct_params, latest_params = list(distinct_ids), list(latest_ids)
        distinct_when = (f"meter_id in {_in_list(warehouse, distinct_ids)} and "
                         if distinct_ids else None)
        latest_when = (f"meter_id in {_in_list(warehouse, latest_ids)} and "
                       if latest_ids else None)
    else:
        distinct_params, latest_params = [], []
        distinct_when = "" if kind == "COUNT_UNIQUE" else None
        latest_when = "" if kind == "LATEST" else None
    ts, dec = (lambda e: _out_ts(warehouse, e)), (lambda e: _out_dec(warehouse, e))
    moment = "null"
    if grain == MINUTE:
        moment = dec(f"cast(sum(quantity * ({_epoch_us(warehouse, 'event_timestamp')} - "
                     f"{_epoch_us(warehouse, 'minute_start')})) as decimal(38, 12))")
    # DuckDB: list_distinct(list(x)) costs a third of a distinct aggregate
    distinct_of = ((lambda column, when: f"list_distinct(list({column}) filter (where {when}))")
                   if warehouse.is_duckdb else
                   (lambda column, when: f"array_agg(distinct {column}) filter (where {when})"))
    lists = [
        "null" if distinct_when is None else
        distinct_of("value_text", f"{distinct_when}value_text is not null"),
        distinct_of("event_source", "event_source is not null and event_source <> ''")
        if selection.with_sources else "null",
    ]
    aggregates = (f"count(*), count(quantity), count(value_text), "
                  f"{dec('cast(sum(quantity) as decimal(38, 12))')}, "
                  f"{dec('cast(max(quantity) as decimal(38, 12))')}, {moment}")
    if latest_when is None:
        source = "matched"
        latest_sql = "null, null" if warehouse.is_duckdb else "null, null, null, null"
        latest_params = []
    elif warehouse.is_duckdb:
        # the latest valued event of a slot in one pass: the largest (timestamp, ingest_seq,
        # event_id) key among valued events, and the quantity of that event (the key is only
        # built for the rows that need it)
        when = f"{latest_when}quantity is not null"
        key = (f"case when {when} then {{'t': epoch_us(event_timestamp), 's': ingest_seq, "
               "'i': event_id} end")
        valued = f"filter (where {when})"
        source = "matched"
        latest_sql = (f"max({key}) {valued}, cast(cast(arg_max(quantity, {key}) {valued} "
                      "as decimal(38, 12)) as varchar)")
        latest_params = latest_params * 4  # `when` is written four times
    else:
        latest_params = []  # Postgres ranks every row (the meters' latest come out unused)
        source = (f"(select *, row_number() over (partition by {g}group_value, slot order by "
                  "case when quantity is null then 0 else 1 end desc, event_timestamp desc, "
                  "ingest_seq desc, event_id desc) as latest_rank from matched) as ranked")
        latest = "case when latest_rank = 1 and quantity is not null then {} end"
        latest_sql = (f"max({latest.format('event_timestamp')}), "
                      f"max({latest.format('ingest_seq')}), max({latest.format('event_id')}), "
                      f"cast(max({latest.format('quantity')}) as decimal(38, 12))")
    rows = warehouse.query(
        f"with {matched} select {g}group_value, {ts('slot')}, {aggregates}, {latest_sql}, "
        f"{', '.join(lists)} from {source} group by {g}group_value, slot order by slot",
        params + latest_params + distinct_params,
    )
    groups: dict[Group, _GroupStates] = defaultdict(_GroupStates)
    distinct: dict[Group, set[tuple[datetime, str]]] = defaultdict(set)
    for row in rows:
        key_values, values, sources = row[:width], row[-2], row[-1]
        state = row[width:-2]
        if warehouse.is_duckdb:  # unpack the latest key
            latest_key = state[8]
            state = (*state[:8], *((latest_key["t"], latest_key["s"], latest_key["i"])
                                   if latest_key else (None, None, None)), state[9])
        groups[tuple(key_values)].states.append(_state(state))
        if values:
            slot = _ts(state[1])
            distinct[tuple(key_values)].update((slot, value) for value in values)
        if sources and (sources_from is None or _ts(state[1]) >= sources_from):
            groups[tuple(key_values)].sources.update(sources)
    for key, values in distinct.items():
        groups[key].distinct = sorted(values)
    return dict(groups)


def group_levels_before(warehouse: Warehouse, meter: MeterInfo, customer: str,
                        since: datetime, until: datetime,
                        selection: Selection) -> dict[Group, Decimal]:
    """Σ deltas in [since, until) per group: the WEIGHTED_SUM levels carried into a range."""
    if until <= since:
        return {}
    matched, params = _matched_cte(warehouse, meter, [customer], since, until, selection)
    g = _group_columns(selection)
    width = len(selection.group_by)
    grouping = f" group by {g.rstrip(', ')}" if width else ""
    rows = warehouse.query(
        f"with {matched} select {g}sum(quantity) as level from matched "
        f"where quantity is not null{grouping}",
        params,
    )
    return {tuple(row[:width]): row[width] or st.ZERO for row in rows}


# --------------------------------------------------------------------------------------------
# Grain: merge minutes into UTC hours when every boundary of the query is an hour boundary


def _whole_hours(tz: str, start: datetime, end: datetime) -> bool:
    """Whether `tz` keeps whole-hour UTC offsets, changed at whole UTC hours, in [start, end)."""
    zone = ZoneInfo(tz)
    changes = windows._offset_changes(zone, start, end)  # cached per zone and year
    for instant in (start, *changes):
        offset = instant.astimezone(zone).utcoffset()
        if offset is None or offset % timedelta(hours=1):
            return False
    return all(not (c.minute or c.second or c.microsecond) for c in changes)


def _on_the_hour(value: datetime) -> bool:
    return not (value.minute or value.second or value.microsecond)


def choose_grain(kind: str, meter: MeterInfo, calendar: CustomerCalendar, start: datetime,
                 end: datetime, window: str | None, timezone: str,
                 anchor: datetime | None) -> str:
    """HOUR when every boundary the answer depends on is a whole UTC hour, else MINUTE.

    The range ends, the window's buckets (whole-hour zone offsets, windows of an hour or
    more, a MONTH anchor on the hour) and the meter's own buckets (bucket_size, in the
    customer's calendar) must all fall on UTC hours; then minutes merge into hours before
    they leave the warehouse, exactly, with up to 60 times fewer rows. WEIGHTED_SUM always
    reads minutes (its time integral needs them).
    """
    if kind == "WEIGHTED_SUM" or not (_on_the_hour(start) and _on_the_hour(end)):
        return MINUTE
    if window is not None:
        if window in ("MINUTE", "15MIN", "30MIN") or not _whole_hours(timezone, start, end):
            return MINUTE
        if window == "MONTH" and anchor is not None and (
                anchor.astimezone(ZoneInfo(timezone)).minute != 0):
            return MINUTE
    if kind == "MAX" and meter.bucket_size:
        if not _whole_hours(calendar.timezone, start, end):
            return MINUTE
        if meter.bucket_size == "MONTH" and calendar.month_anchor_key[-2:] not in ("", "00"):
            return MINUTE
    return HOUR


def window_cuts(start: datetime, end: datetime, window: str | None, timezone: str,
                anchor: datetime | None) -> list[datetime]:
    """The boundaries of the `window` buckets inside [start, end) (none without a window),
    at most MAX_SLOTS + 1 of them (more are of no use to `Slots.of`)."""
    cuts: list[datetime] = []
    if window is not None:
        at = windows.next_bucket_start(windows.bucket_start(start, window, timezone, anchor),
                                       window, timezone, anchor)
        while at < end and len(cuts) <= MAX_SLOTS:
            cuts.append(at)
            at = windows.next_bucket_start(at, window, timezone, anchor)
    return cuts


def meter_bucket_slots(bucket_size: str, timezone: str, anchor: datetime | None,
                       cuts: Iterable[datetime], start: datetime, end: datetime
                       ) -> Slots | None:
    """Slots over [start, end) cut at `cuts` and at the buckets of a bucketed MAX meter in its
    customer's calendar (`timezone`, `anchor` for MONTH buckets), so every slot lies inside
    one bucket: the buckets listed when they are few, else cut by arithmetic (`Slots.every`)
    when they are sub-day buckets of one fixed width over the whole range (a zone whose
    offset moves by less than their width, Lord Howe's half hour for HOUR, is not); None
    otherwise (and for MINUTE buckets, which are minutes)."""
    if bucket_size == "MINUTE":
        return None
    buckets = windows.buckets_between(start, end, bucket_size, timezone,
                                      anchor if bucket_size == "MONTH" else None)
    cuts = list(cuts)
    inside = [b for b, _ in buckets[1:]]
    if len(inside) + len(cuts) <= MAX_SLOTS:
        return Slots.of([*cuts, *inside], start, end)
    width = windows.SUB_DAY_MINUTES.get(bucket_size)
    if width is None or any(b - a != timedelta(minutes=width) for a, b in buckets):
        return None
    return Slots.of(cuts, start, end, every=(width, buckets[0][0]))


def usage_grain(kind: str, meter: MeterInfo, calendar: CustomerCalendar, start: datetime,
                end: datetime, window: str | None, timezone: str,
                anchor: datetime | None) -> Grain:
    """The grain of the states a usage answer is computed from: the answer's own windows
    (`window_cuts`), as every value is then a merge of whole slots, cut also at a bucketed
    MAX meter's own buckets (`meter_bucket_slots`); but WEIGHTED_SUM (its time integral)
    reads minutes or hours (`choose_grain`), and so does any answer whose slots would be too
    many or not on whole minutes."""
    if kind != "WEIGHTED_SUM":
        slots = _cut_slots(kind, meter, calendar,
                           window_cuts(start, end, window, timezone, anchor), start, end)
        if slots is not None:
            return slots
    return choose_grain(kind, meter, calendar, start, end, window, timezone, anchor)


def _cut_slots(kind: str, meter: MeterInfo, calendar: CustomerCalendar,
               cuts: list[datetime], start: datetime, end: datetime) -> Slots | None:
    """Slots over [start, end) cut at `cuts`, and at a bucketed MAX meter's own buckets."""
    if kind == "MAX" and meter.bucket_size:
        return meter_bucket_slots(
            meter.bucket_size, calendar.timezone,
            windows.anchor_from_key(calendar.month_anchor_key, calendar.timezone),
            cuts, start, end)
    return Slots.of(cuts, start, end)


# --------------------------------------------------------------------------------------------
# Stored windows: the precomputed rows of fct_meter_usage
#
# fct_meter_usage holds every window with contributing events, of every size, in each
# customer's calendar (timezone; MONTH at the customer's anchor), valued by the meter's own
# aggregation. When a request asks for exactly those windows, its whole windows are read
# from there; only a partial window at either end of the range (a range that does not start
# or end on a window boundary) is computed, from the stored HOUR windows in the same statement
# when it is whole hours of the customer's calendar and the aggregation merges over windows
# (a 30-day range of UTC days for a customer at UTC-5: one statement, not two), else from the
# minute states. AVG (stored to 18 places,
# the API divides to 34 digits), WEIGHTED_SUM, bucketed MAX and other aggregation types than
# the meter's always use the minute states.

STORED_WINDOW_TYPES = ("COUNT", "SUM", "SUM_WITH_MULTIPLIER", "MAX", "LATEST", "COUNT_UNIQUE")
_CALENDAR_MONTHS = "01 00:00"  # the MONTH anchor key of calendar months


def stored_windows_fit(kind: str, meter: MeterInfo, calendar: CustomerCalendar,
                       window: str | None, timezone: str, anchor: datetime | None) -> bool:
    """Whether the windows asked for are the stored windows of fct_meter_usage."""
    if window is None or kind != meter.aggregation_type or kind not in STORED_WINDOW_TYPES:
        return False
    if meter.bucket_size or timezone != calendar.timezone:
        return False
    if window == "MONTH":
        asked = windows.anchor_key(anchor, timezone) or _CALENDAR_MONTHS
        return asked == (calendar.month_anchor_key or _CALENDAR_MONTHS)
    return True


def has_stored_windows(warehouse: Warehouse) -> bool:
    """Whether the warehouse (or serving snapshot) has fct_meter_usage."""
    return _has_table(warehouse, "fct_meter_usage")


def stored_window_usage(warehouse: Warehouse, meter: MeterInfo, customer: str,
                        calendar: CustomerCalendar, start: datetime, end: datetime, window: str,
                        anchor: datetime | None) -> Usage | None:
    """Usage from the stored windows of fct_meter_usage plus the minute states of the partial
    windows at the ends of the range; None when the range holds no whole window."""
    kind, timezone = meter.aggregation_type, calendar.timezone
    first = windows.bucket_start(start, window, timezone, anchor)
    if first < start:
        first = windows.next_bucket_start(first, window, timezone, anchor)
    last = windows.bucket_start(end, window, timezone, anchor)  # whole windows end by here
    if first >= last:
        return None
    p, ts, dec = warehouse.ph, (lambda e: _out_ts(warehouse, e)), (lambda e: _out_dec(warehouse, e))
    series = (f"tenant_id = {p} and environment_id = {p} and meter_id = {p} "
              f"and external_customer_id = {p}")
    key = [meter.tenant_id, meter.environment_id, meter.meter_id, customer]
    windows_sql = series_rows(warehouse, "fct_meter_usage", meter, [customer])
    edges = [(lo, hi) for lo, hi in ((start, first), (last, end)) if lo < hi]
    # partial windows made of whole stored HOUR windows are read with the whole windows
    hourly = [(lo, hi) for lo, hi in edges if _whole_stored_hours(kind, window, timezone, lo, hi)]
    hour_ranges = "".join(f" or (window_size = 'HOUR' and window_start >= {p} "
                          f"and window_start < {p})" for _ in hourly)
    # the stored windows, then the minute states of the other partial windows at the ends (two
    # statements: at 10M events one `union all` of both read more row groups than the two)
    rows = warehouse.query(
        f"select window_size, {ts('window_start')}, {ts('window_end')}, event_count, "
        f"{dec('value')} from {warehouse.table('fct_meter_usage')} "
        f"where {windows_sql}{series} and ((window_size = {p} and window_start >= {p} "
        f"and window_start < {p}){hour_ranges}) order by window_start",
        [*key, window, first, last, *(at for edge in hourly for at in edge)])
    pieces = [Usage(_dec(value), count, [Point(_ts(lo), _ts(hi), _dec(value), count)])
              for size, lo, hi, count, value in rows if size == window]
    for lo, hi in hourly:
        hours = [(count, _dec(value)) for size, at, _, count, value in rows
                 if size == "HOUR" and lo <= _ts(at) < hi]
        pieces.insert(0 if lo == start else len(pieces),
                      _merged_hours(kind, hours, lo, window, timezone, anchor))
    edges = [edge for edge in edges if edge not in hourly]
    edge_states = []
    if edges:
        ranges = " or ".join(f"(minute_start >= {p} and minute_start < {p})" for _ in edges)
        minutes_sql = series_rows(warehouse, "fct_meter_usage_minutely", meter, [customer])
        edge_states = [_state(row) for row in warehouse.query(
            f"select group_value, {ts('minute_start')}, event_count, value_count, text_count, "
            f"{dec('value_sum')}, {dec('value_max')}, {dec('weighted_moment_us')}, "
            f"{ts('latest_timestamp')}, latest_ingest_seq, latest_event_id, "
            f"{dec('latest_value')} from {warehouse.table('fct_meter_usage_minutely')} "
            f"where {minutes_sql}{series} and ({ranges}) order by minute_start",
            [*key, *(at for edge in edges for at in edge)])]
    for lo, hi in edges:
        data = _GroupStates([s for s in edge_states if lo <= s.minute_start < hi])
        if kind == "COUNT_UNIQUE":
            data.distinct = fetch_distinct_values(warehouse, meter, customer, lo, hi)
        edge = compute_usage(kind, meter, calendar, data, [], lo, hi, window, timezone, anchor)
        pieces.insert(0 if lo == start else len(pieces), edge)
    counted = [piece for piece in pieces if piece.event_count > 0]
    usage = Usage(st.ZERO, sum(piece.event_count for piece in counted),
                  [point for piece in counted for point in piece.points])
    if kind in _WINDOW_MERGEABLE:
        usage.total = _merged_windows(kind, [piece.total for piece in counted])
    else:  # COUNT_UNIQUE: distinct values of the whole range
        usage.total = _distinct_count(warehouse, meter, customer, start, end)
    return usage


# Aggregations whose value over several windows follows from the windows' own values.
_WINDOW_MERGEABLE = ("COUNT", "SUM", "SUM_WITH_MULTIPLIER", "MAX", "LATEST")


def _merged_windows(kind: str, values: list[Decimal]) -> Decimal:
    """The value over consecutive windows with events from their values, in time order."""
    if kind == "MAX":
        return max(values, default=st.ZERO)
    if kind == "LATEST":  # the latest event is in the latest window with events
        return values[-1] if values else st.ZERO
    return _sum_wide(values)


def _whole_stored_hours(kind: str, window: str, timezone: str, lo: datetime,
                        hi: datetime) -> bool:
    """Whether the stored HOUR windows in [lo, hi) give its usage: an aggregation they merge
    into, windows longer than an hour, and [lo, hi) on hours of the customer's calendar."""
    return (kind in _WINDOW_MERGEABLE and windows.SUB_DAY_MINUTES.get(window, 24 * 60) > 60
            and all(windows.bucket_start(at, "HOUR", timezone) == at for at in (lo, hi)))


def _merged_hours(kind: str, hours: list[tuple[int, Decimal]], lo: datetime, window: str,
                  timezone: str, anchor: datetime | None) -> Usage:
    """The usage of a partial window at `lo` from its stored HOUR windows (event count and
    value, in time order), as `compute_usage` has it from the minutes: one point, the
    window's, when events contributed."""
    count = sum(events for events, _ in hours)
    if count == 0:
        return Usage(st.ZERO, 0)
    value = _merged_windows(kind, [value for _, value in hours])
    bucket = windows.bucket_start(lo, window, timezone, anchor)
    return Usage(value, count, [Point(bucket, windows.next_bucket_start(
        bucket, window, timezone, anchor), value, count)])


def _sum_wide(values: Iterable[Decimal]) -> Decimal:
    total = st.ZERO
    for value in values:
        total = _WIDE.add(total, value)
    return total


def _distinct_count(warehouse: Warehouse, meter: MeterInfo, customer: str, start: datetime,
                    end: datetime) -> Decimal:
    p, table = warehouse.ph, "fct_meter_distinct_values_minutely"
    rows_sql = series_rows(warehouse, table, meter, [customer])
    rows = warehouse.query(
        f"select count(distinct value_text) from {warehouse.table(table)} "
        f"where {rows_sql}tenant_id = {p} and environment_id = {p} and meter_id = {p} "
        f"and external_customer_id = {p} and minute_start >= {p} and minute_start < {p}",
        [meter.tenant_id, meter.environment_id, meter.meter_id, customer, start, end])
    return Decimal(rows[0][0] if rows else 0)


# --------------------------------------------------------------------------------------------
# Usage


def meter_usage(
    warehouse: Warehouse,
    meter: MeterInfo,
    customer: str,
    start: datetime,
    end: datetime,
    window: str | None,
    timezone: str,
    anchor: datetime | None = None,
    aggregation_type: str | None = None,
    stored_windows: bool = True,
) -> Usage:
    """Usage of one meter for one customer over [start, end), with points per window.

    `aggregation_type` (default: the meter's) decides how the meter's per-event quantities
    aggregate. Points are emitted only for windows with contributing events; the total is the
    aggregate over the whole range (not the sum of the points).
    """
    return grouped_usage(warehouse, meter, [customer], start, end, window, timezone, anchor,
                         aggregation_type, stored_windows=stored_windows)[()]


def grouped_usage(
    warehouse: Warehouse,
    meter: MeterInfo,
    customers: Sequence[str],
    start: datetime,
    end: datetime,
    window: str | None,
    timezone: str,
    anchor: datetime | None = None,
    aggregation_type: str | None = None,
    selection: Selection | None = None,
    stored_windows: bool = True,
    prefetched: dict[Group, _GroupStates] | None = None,
) -> dict[Group, Usage]:
    """Usage of one meter over [start, end) for the union of `customers`' events, per group.

    Without a selection (or an empty one) the result has the one group `()`, present even
    without events. With one, groups are the `selection.group_by` values of the selected
    events and only groups with selected events appear (one whose events all lack a value
    can count 0 events, as the meter's aggregation counts them; the routers leave it out).
    Several customers fold into one usage: meter buckets (bucket_size) follow the first
    customer's calendar, and WEIGHTED_SUM levels are each customer's own (resets included)
    added together.

    One customer's whole-meter usage in windows of the customer's own calendar is read from
    the precomputed windows of fct_meter_usage (`stored_window_usage`) unless
    `stored_windows` is False; the answer is the same either way. `prefetched` are the
    meter's group states as `prefetch_group_states` read them for this very query.
    """
    kind = aggregation_type or meter.aggregation_type
    if kind == "COUNT_UNIQUE" and meter.aggregation_type != "COUNT_UNIQUE":
        raise UnsupportedAggregation(
            "COUNT_UNIQUE is only stored for meters whose aggregation is COUNT_UNIQUE"
        )
    customers = list(dict.fromkeys(customers))
    selection = selection or Selection()
    if kind == "WEIGHTED_SUM" and len(customers) > 1:
        return _folded_weighted_sum(warehouse, meter, customers, start, end, window, timezone,
                                    anchor, selection)
    calendar = customer_calendar(warehouse, meter, customers[0])
    if (stored_windows and len(customers) == 1 and not selection.needs_events
            and not selection.with_sources
            and stored_windows_fit(kind, meter, calendar, window, timezone, anchor)
            and has_stored_windows(warehouse)):
        usage = stored_window_usage(warehouse, meter, customers[0], calendar, start, end,
                                    window, anchor)
        if usage is not None:
            return {(): usage}
    grain = usage_grain(kind, meter, calendar, start, end, window, timezone, anchor)
    groups = _fetch_groups(warehouse, meter, customers, start, end, kind, selection, grain,
                           prefetched)
    resets = (reset_points(warehouse, meter, customers[0], start, end)
              if kind == "WEIGHTED_SUM" else [])
    return {
        key: compute_usage(kind, meter, calendar, data, resets, start, end, window, timezone,
                           anchor)
        for key, data in groups.items()
    }


def prefetch_group_states(warehouse: Warehouse, meters: Sequence[MeterInfo],
                          customers: Sequence[str], start: datetime, end: datetime,
                          window: str | None, timezone: str, anchor: datetime | None,
                          selection: Selection,
                          extents: dict[str, tuple[datetime, list[datetime]]] | None = None,
                          shared: dict[str, tuple[dict[Group, _GroupStates], Grain]] | None = None
                          ) -> dict[str, dict[Group, _GroupStates]]:
    """The group states `grouped_usage` reads for each of several meters of one tenant
    environment (with their own aggregation, `selection` needing events), in one statement
    per grain instead of one or more per meter. WEIGHTED_SUM meters are left out (their
    levels are read per customer).

    `extents` (meter id: (since, cuts), `api.costs.cost_extents`) widens a meter's read to
    start at `since` and cuts its slots also at `cuts`, so that the same states price its
    line items: those meters' states and grain go into `shared` for `costs_for`, which then
    reads nothing more for them. A meter whose widened slots cannot be cut keeps its own read.
    """
    customers = list(dict.fromkeys(customers))
    if not selection.needs_events or not customers:
        return {}
    extents = extents or {}
    by_grain: dict[tuple[Grain, datetime], list[MeterInfo]] = defaultdict(list)
    for meter in dict.fromkeys(meters):
        if meter.aggregation_type == "WEIGHTED_SUM":
            continue
        calendar = customer_calendar(warehouse, meter, customers[0])
        kind = meter.aggregation_type
        grain: Grain | None = None
        since, cuts = extents.get(meter.meter_id, (start, []))
        if meter.meter_id in extents:
            since = min(since, start)
            cuts = [*window_cuts(start, end, window, timezone, anchor), start, *cuts]
            grain = _cut_slots(kind, meter, calendar, cuts, since, end)
        if grain is None:
            since = start
            grain = usage_grain(kind, meter, calendar, start, end, window, timezone, anchor)
        by_grain[(grain, since)].append(meter)
    found: dict[str, dict[Group, _GroupStates]] = {}
    for (grain, since), group in by_grain.items():
        ids = [m.meter_id for m in group]
        distinct = [m.meter_id for m in group if m.aggregation_type == "COUNT_UNIQUE"]
        latest = [m.meter_id for m in group if m.aggregation_type == "LATEST"]
        found.update({meter_id: {} for meter_id in ids})
        states = fetch_group_states(warehouse, group[0], customers, since, end, selection, "",
                                    grain, ids, distinct, latest, sources_from=start)
        for key, data in states.items():
            found[key[0]][key[1:]] = data
        if shared is not None and isinstance(grain, Slots):
            for meter_id in ids:
                if meter_id in extents:
                    shared[meter_id] = (found[meter_id], grain)
    return found


def _fetch_groups(warehouse: Warehouse, meter: MeterInfo, customers: list[str], start: datetime,
                  end: datetime, kind: str, selection: Selection, grain: Grain = MINUTE,
                  prefetched: dict[Group, _GroupStates] | None = None
                  ) -> dict[Group, _GroupStates]:
    if not selection.needs_events:
        data = _GroupStates(fetch_states(warehouse, meter, customers, start, end, grain))
        if kind == "COUNT_UNIQUE":
            data.distinct = fetch_distinct_values(warehouse, meter, customers, start, end,
                                                  grain)
        if selection.with_sources and data.states:
            data.sources = fetch_sources(warehouse, meter, customers, start, end)
        groups = {(): data}
    elif prefetched is not None:
        groups = prefetched
    else:
        groups = fetch_group_states(warehouse, meter, customers, start, end, selection, kind,
                                    grain)
    if kind == "WEIGHTED_SUM":  # one customer here (several are folded per customer)
        since = _last_reset(reset_points(warehouse, meter, customers[0], start, end), start)
        if not selection.needs_events:
            groups[()].carried = level_before(warehouse, meter, customers[0], since, start)
        else:
            levels = group_levels_before(warehouse, meter, customers[0], since, start, selection)
            for key, data in groups.items():
                data.carried = levels.get(key, st.ZERO)
    return groups


def _folded_weighted_sum(warehouse: Warehouse, meter: MeterInfo, customers: list[str],
                         start: datetime, end: datetime, window: str | None, timezone: str,
                         anchor: datetime | None, selection: Selection) -> dict[Group, Usage]:
    """WEIGHTED_SUM of several customers: the sum of their levels, each with its resets.

    A point is reported for every bucket where any of them has events, and its value adds
    every customer's level over that bucket (also those without events in it).
    """
    per_customer = {
        customer: _fetch_groups(warehouse, meter, [customer], start, end, "WEIGHTED_SUM",
                                selection)
        for customer in customers
    }
    keys = sorted({key for groups in per_customer.values() for key in groups})
    folded: dict[Group, Usage] = {}
    for key in keys:
        minutes = sorted({s.minute_start for groups in per_customer.values()
                          for s in groups.get(key, _GroupStates()).states})
        total, count = st.ZERO, 0
        points: dict[datetime, Point] = {}
        sources: set[str] = set()
        for customer, groups in per_customer.items():
            data = groups.get(key, _GroupStates())
            sources |= data.sources
            calendar = customer_calendar(warehouse, meter, customer)
            resets = reset_points(warehouse, meter, customer, start, end)
            usage = compute_usage("WEIGHTED_SUM", meter, calendar, data, resets, start, end,
                                  window, timezone, anchor, event_minutes=minutes)
            total += usage.total
            count += usage.event_count
            for point in usage.points:
                seen = points.get(point.start)
                points[point.start] = point if seen is None else Point(
                    point.start, point.end, seen.value + point.value,
                    seen.event_count + point.event_count)
        if selection.needs_events and count == 0:
            continue
        folded[key] = Usage(total, count, [points[s] for s in sorted(points)], sorted(sources))
    if not selection.needs_events and () not in folded:
        folded[()] = Usage(st.ZERO, 0)
    return folded


def compute_usage(
    kind: str,
    meter: MeterInfo,
    calendar: CustomerCalendar,
    data: _GroupStates,
    resets: list[datetime],
    start: datetime,
    end: datetime,
    window: str | None,
    timezone: str,
    anchor: datetime | None,
    event_minutes: Sequence[datetime] | None = None,
) -> Usage:
    """Total and points of one group from its minute states (pure; no warehouse).

    Points are the `window` buckets holding minutes with events (`event_minutes` overrides
    which minutes count, for folding WEIGHTED_SUM levels of several customers).
    """
    states = sorted(data.states, key=lambda s: s.minute_start)
    minutes = [s.minute_start for s in states]
    distinct = sorted(data.distinct)
    distinct_minutes = [m for m, _ in distinct]

    # Σ deltas of states[:i], so that the WEIGHTED_SUM level at any instant is two lookups
    prefix = [st.ZERO]
    if kind == "WEIGHTED_SUM":
        for s in states:
            prefix.append(_WIDE.add(prefix[-1], s.value_sum if s.value_count > 0 else st.ZERO))

    def inside(lo: datetime, hi: datetime) -> list[st.MinuteState]:
        return states[bisect_left(minutes, lo):bisect_left(minutes, hi)]

    def level_at(at: datetime) -> Decimal:
        """WEIGHTED_SUM level at `at`: deltas since the last reset (carried in + in range)."""
        since = _last_reset(resets, at)
        base = data.carried if since <= start else st.ZERO
        deltas = _WIDE.subtract(prefix[bisect_left(minutes, at)],
                                prefix[bisect_left(minutes, max(since, start))])
        return base + deltas

    meter_bucket_of = _meter_buckets(meter, calendar, states) if (
        kind == "MAX" and meter.bucket_size) else {}

    def value_of(lo: datetime, hi: datetime) -> tuple[Decimal, int]:
        part = inside(lo, hi)
        count = st.contributing_events(kind, part)
        if kind == "COUNT_UNIQUE":
            values = distinct[bisect_left(distinct_minutes, lo):bisect_left(distinct_minutes, hi)]
            return st.count_distinct(v for _, v in values), count
        if kind == "MAX" and meter.bucket_size:
            return st.merge_bucketed_max(part, meter_bucket_of), count
        if kind == "WEIGHTED_SUM":
            return st.weighted_value(part, lo, hi, level_at(lo), resets), count
        return st.merge_simple(kind, part), count

    total, total_count = value_of(start, end)
    usage = Usage(total=total, event_count=total_count, sources=sorted(data.sources))
    if window is None:
        return usage
    forced = event_minutes is not None
    if event_minutes is None:
        event_minutes = distinct_minutes if kind == "COUNT_UNIQUE" else minutes
    active = sorted({m for m in event_minutes if start <= m < end})
    index = 0
    while index < len(active):
        b_start = windows.bucket_start(active[index], window, timezone, anchor)
        b_end = windows.next_bucket_start(b_start, window, timezone, anchor)
        value, count = value_of(max(b_start, start), min(b_end, end))
        if count > 0 or forced:
            usage.points.append(Point(b_start, b_end, value, count))
        index = bisect_left(active, b_end, lo=index + 1)
    return usage


def _last_reset(resets: list[datetime], at: datetime) -> datetime:
    return max((r for r in resets if r <= at), default=FAR_PAST)


def _meter_buckets(meter: MeterInfo, calendar: CustomerCalendar,
                   states: Iterable[st.MinuteState]) -> dict[datetime, datetime]:
    """Start of the meter's own bucket (customer calendar) for every minute with states."""
    anchor = windows.anchor_from_key(calendar.month_anchor_key, calendar.timezone)
    cache: dict[datetime, datetime] = {}
    for s in states:
        if s.minute_start not in cache:
            cache[s.minute_start] = windows.bucket_start(
                s.minute_start, meter.bucket_size, calendar.timezone,
                anchor if meter.bucket_size == "MONTH" else None,
            )
    return cache
