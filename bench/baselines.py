"""The baselines: the same meter rollups written by hand in chDB (embedded ClickHouse) and in
plain DuckDB, over a Parquet export of the raw events — one staging statement, then one SQL
query per window size, each writing a table.

What a baseline computes, per tenant × environment × meter × customer × window size × window
start (the grain of `fct_meter_usage`), for the meters of the aggregation types it supports
(COUNT, SUM, SUM_WITH_MULTIPLIER, AVG, MAX — plain, and bucketed per (bucket, group) summed —,
LATEST and exact COUNT_UNIQUE):

- input: the raw event versions (`raw_events` exported to Parquet, the rows our dbt build
  reads), keeping the latest version (largest ingest_seq) of each event id;
- meter matching: event_name equal, every filter key present with a listed value;
- quantity: the property's numeric value (numbers or numeric strings) × multiplier; COUNT 1;
- windows in each customer's timezone (UTC for customers the catalog does not know); MONTH at
  the customer's billing anchor (day-of-month and time of the earliest subscription's anchor,
  clamped to short months), calendar months without one;
- value and contributing-event count as DESIGN 3 and 3b.4 define them; windows without
  contributing events are not emitted.

The SQL is generated from the catalog, one branch per distinct meter definition, as a team
writing its queries per meter would. bench/agreement.py compares the output tables with
`fct_meter_usage`. Semantic shortcuts (none is exercised by the generated data; the agreement
check would say so if one were):

- properties: ClickHouse reads them with its simpleJSON functions (flat objects with unique
  keys); values are compared as each engine's JSON reader renders them, where our dbt models
  canonicalise numbers ("5.0" and "5" are one COUNT_UNIQUE value); a value that does not parse
  is "no value" where our models record an error (both leave it out);
- local buckets: the instant's offset from each engine's tzdata, the wall clock truncated, and
  converted back with the offset that holds at the result; a repeated wall time (fall-back)
  takes the occurrence the instant is in, a wall time in a spring-forward gap the transition
  instant when the gap begins at that wall time — true of every zone in use today and checked
  against models.windows by tests/bench/test_baseline_windows.py;
- WEIGHTED_SUM meters and meters with a CEL `expression` are left out (listed in the report).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq

from models.catalog import Catalog
from models.windows import SUB_DAY_MINUTES, WINDOW_SIZES

SUPPORTED_TYPES = ("COUNT", "SUM", "SUM_WITH_MULTIPLIER", "AVG", "MAX", "LATEST", "COUNT_UNIQUE")
WEEK_ORIGIN_SECONDS = 4 * 86_400  # 1970-01-05, a Monday: the WEEK grid
OUTPUT_COLUMNS = (  # of every output table, in this order
    "tenant_id", "environment_id", "meter_id", "external_customer_id", "window_size",
    "window_start_epoch", "aggregation_type", "value", "avg_value", "event_count",
)
_SAFE = re.compile(r"^[A-Za-z0-9_./:+\- ]*$")


# --------------------------------------------------------------------------------------------
# What the baselines are given: meter definitions, customers' calendars, the raw events


@dataclass(frozen=True)
class MeterDefinition:
    """A meter's matching and aggregation rule (identical meters of several tenant
    environments share one definition, so the SQL holds one branch per definition)."""

    event_name: str
    aggregation_type: str
    field: str | None
    multiplier: str | None
    bucket_size: str | None
    group_by: str | None
    filters: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def bucketed(self) -> bool:
        return self.aggregation_type == "MAX" and self.bucket_size is not None


@dataclass(frozen=True)
class BaselineMeter:
    tenant_id: str
    environment_id: str
    meter_id: str
    event_name: str
    definition: int


@dataclass(frozen=True)
class BaselinePlan:
    """Everything the hand-written queries need besides the events."""

    definitions: tuple[MeterDefinition, ...]
    meters: tuple[BaselineMeter, ...]
    skipped: tuple[tuple[str, str, str, str], ...]  # tenant, environment, meter, reason
    timezones: tuple[str, ...]
    customers: pa.Table = field(repr=False)

    @property
    def property_keys(self) -> tuple[str, ...]:
        keys: list[str] = []
        for d in self.definitions:
            for key in (d.field, d.group_by if d.bucketed else None, *(k for k, _ in d.filters)):
                if key and key not in keys:
                    keys.append(key)
        return tuple(keys)

    @property
    def event_names(self) -> tuple[str, ...]:
        return tuple(sorted({d.event_name for d in self.definitions}))

    @property
    def bucket_sizes(self) -> tuple[str, ...]:
        return tuple(sorted({d.bucket_size for d in self.definitions if d.bucketed}))


def plan_from_catalog(catalog: Catalog) -> BaselinePlan:
    """Meter definitions and customer calendars read straight from the catalog (no warehouse)."""
    definitions: list[MeterDefinition] = []
    meters: list[BaselineMeter] = []
    skipped: list[tuple[str, str, str, str]] = []
    customers: dict[str, list] = {k: [] for k in (
        "tenant_id", "environment_id", "external_customer_id", "timezone", "anchor_day",
        "anchor_hour", "anchor_minute")}
    timezones = sorted({str(c.timezone or "UTC") for env in catalog.environments
                        for c in env.customers} - {"UTC"})
    timezones.insert(0, "UTC")  # tz_id 0: also the zone of customers the catalog lacks
    for env in catalog.environments:
        for meter in env.meters:
            agg = meter.aggregation
            kind = str(agg.type)
            if kind not in SUPPORTED_TYPES:
                skipped.append((env.tenant_id, env.environment_id, meter.id,
                                f"{kind} is not in the baselines"))
                continue
            if agg.expression:
                skipped.append((env.tenant_id, env.environment_id, meter.id,
                                "CEL expression is not in the baselines"))
                continue
            definition = MeterDefinition(
                event_name=meter.event_name,
                aggregation_type=kind,
                field=agg.field,
                multiplier=None if agg.multiplier is None else _decimal_text(agg.multiplier),
                bucket_size=str(agg.bucket_size) if agg.bucket_size else None,
                group_by=agg.group_by,
                filters=tuple((f.key, tuple(str(v) for v in f.values)) for f in meter.filters),
            )
            if definition not in definitions:
                definitions.append(definition)
            meters.append(BaselineMeter(env.tenant_id, env.environment_id, meter.id,
                                        meter.event_name, definitions.index(definition)))
        earliest: dict[str, object] = {}
        for sub in sorted(env.subscriptions, key=lambda s: (s.start_date.astimezone(UTC), s.id)):
            earliest.setdefault(sub.customer_id, sub.billing_anchor or sub.start_date)
        for customer in env.customers:
            tz = str(customer.timezone or "UTC")
            anchor = earliest.get(customer.id)
            local = anchor.astimezone(ZoneInfo(tz)) if anchor is not None else None
            for name, value in (
                ("tenant_id", env.tenant_id), ("environment_id", env.environment_id),
                ("external_customer_id", customer.external_id), ("timezone", tz),
                ("anchor_day", local.day if local else 1),
                ("anchor_hour", local.hour if local else 0),
                ("anchor_minute", local.minute if local else 0),
            ):
                customers[name].append(value)
    for text in [*timezones, *(k for d in definitions for k in _texts(d))]:
        if not _SAFE.match(text):
            raise ValueError(f"unexpected character in {text!r}: the SQL inlines catalog values")
    customers["tz_id"] = [timezones.index(tz) for tz in customers["timezone"]]
    # a calendar = (timezone, anchor); 0 is UTC calendar months, the calendar of customers the
    # catalog does not know
    calendar_keys = list(zip(customers["tz_id"], customers["anchor_day"],
                             customers["anchor_hour"], customers["anchor_minute"], strict=True))
    calendars = [(0, 1, 0, 0), *sorted(set(calendar_keys) - {(0, 1, 0, 0)})]
    customers["calendar_id"] = [calendars.index(key) for key in calendar_keys]
    table = pa.table(customers, schema=pa.schema(
        [(n, pa.string()) for n in ("tenant_id", "environment_id", "external_customer_id",
                                    "timezone")]
        + [(n, pa.int32()) for n in ("anchor_day", "anchor_hour", "anchor_minute", "tz_id",
                                     "calendar_id")]))
    return BaselinePlan(tuple(definitions), tuple(meters), tuple(skipped), tuple(timezones),
                        table)


def write_customers(plan: BaselinePlan, path: Path) -> Path:
    pq.write_table(plan.customers, path)
    return path


def _texts(d: MeterDefinition) -> Iterable[str]:
    yield d.event_name
    for value in (d.field, d.group_by, d.multiplier, d.bucket_size):
        if value:
            yield value
    for key, values in d.filters:
        yield key
        yield from values


def _decimal_text(value: object) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _q(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _col(key: str) -> str:
    return "p_" + re.sub(r"[^A-Za-z0-9_]", "_", key)


def _multi_if(branches: list[tuple[str, str]], default: str, engine: str) -> str:
    if not branches:
        return default
    if engine == "clickhouse":
        parts = ", ".join(f"{cond}, {value}" for cond, value in branches)
        return f"multiIf({parts}, {default})"
    whens = " ".join(f"when {cond} then {value}" for cond, value in branches)
    return f"case {whens} else {default} end"


# --------------------------------------------------------------------------------------------
# SQL pieces shared by both engines (time is epoch seconds; wall clocks are epoch seconds of
# the naive local time)


def _per_event(plan: BaselinePlan, engine: str, read: dict[str, str]) -> list[tuple[str, str]]:
    """Columns computed once per event, before the event meets its meters: each quantity
    field as a decimal (`d_<key>`) and each definition's filters as one boolean (`f_<def>`).
    `read[key]` is the SQL of a property as text (null when absent, null or not a scalar)."""
    dec = ("toDecimal128OrNull({}, 12)" if engine == "clickhouse"
           else "try_cast({} as decimal(38, 12))")
    columns: list[tuple[str, str]] = []
    fields = {d.field for d in plan.definitions
              if d.field and d.aggregation_type not in ("COUNT", "COUNT_UNIQUE")}
    for key in plan.property_keys:
        if key in fields:
            columns.append((f"d_{_col(key)}", dec.format(read[key])))
    for i, d in enumerate(plan.definitions):
        if d.filters:
            conditions = [
                f"coalesce({read[key]} in ({', '.join(_q(v) for v in values)}), false)"
                for key, values in d.filters
            ]
            columns.append((f"f_{i}", " and ".join(conditions)))
    return columns


def _per_definition(plan: BaselinePlan, engine: str) -> dict[str, str]:
    """Per (event × meter) expressions, one branch per meter definition, over the columns of
    `_per_event` and the property texts (`p_<key>`)."""
    ch = engine == "clickhouse"
    one = "toDecimal128(1, 12)" if ch else "cast(1 as decimal(38, 12))"
    null_dec = "CAST(NULL, 'Nullable(Decimal128(12))')" if ch else "cast(null as decimal(38, 12))"
    null_text = "CAST(NULL, 'Nullable(String)')" if ch else "cast(null as varchar)"
    filters, quantities, texts, buckets, kinds = [], [], [], [], []
    for i, d in enumerate(plan.definitions):
        when = f"def = {i}"
        if d.filters:
            filters.append((when, f"f_{i}"))
        kinds.append((when, _q(d.aggregation_type)))
        if d.aggregation_type == "COUNT":
            quantities.append((when, one))
        elif d.aggregation_type == "COUNT_UNIQUE":
            texts.append((when, _col(d.field)))
        else:
            value = f"d_{_col(d.field)}"
            if d.multiplier is not None:
                digits = len(d.multiplier.partition(".")[2])
                if ch:
                    value = (f"toDecimal128({value} * toDecimal128({_q(d.multiplier)}, {digits}),"
                             " 12)")
                else:
                    value = (f"cast({value} * cast({_q(d.multiplier)} as decimal(38, {digits}))"
                             " as decimal(38, 12))")
            quantities.append((when, value))
        if d.bucketed:
            start = _bucket_start(plan, d.bucket_size, engine)
            group = f"coalesce({_col(d.group_by)}, '')" if d.group_by else "''"
            cast = f"toString({start})" if ch else f"cast({start} as varchar)"
            buckets.append((when, f"concat({cast}, '|', {group})"))
    return {
        "filter_ok": _multi_if(filters, "true", engine),
        "aggregation_type": _multi_if(kinds, "''", engine),
        "quantity": _multi_if(quantities, null_dec, engine),
        "value_text": _multi_if(texts, null_text, engine),
        "bucket_key": _multi_if(buckets, "''", engine),
    }


def _offset(plan: BaselinePlan, engine: str, instant: str) -> str:
    """UTC offset (seconds) at the epoch-second `instant` in the row's timezone `tz_id`."""
    zones = [(i, tz) for i, tz in enumerate(plan.timezones) if tz != "UTC"]
    if engine == "clickhouse":
        branches = [(f"tz_id = {i}", f"timeZoneOffset(toDateTime({instant}, {_q(tz)}))")
                    for i, tz in zones]
    else:
        branches = [(f"tz_id = {i}",
                     f"epoch(timezone({_q(tz)}, to_timestamp({instant})))::bigint - {instant}")
                    for i, tz in zones]
    return _multi_if(branches, "0", engine)


def _month_floor(engine: str, wall: str) -> str:
    """The latest MONTH start wall time <= `wall`: the anchor day (clamped to the month's last
    day), hour and minute of this month, else of the previous month."""
    if engine == "clickhouse":
        def start(day: str) -> str:
            return (f"toInt64(toUnixTimestamp(makeDateTime(toYear({day}), toMonth({day}), "
                    f"least(anchor_day, toDayOfMonth(toLastDayOfMonth({day}))), anchor_hour, "
                    f"anchor_minute, 0, 'UTC')))")
        this = start(f"toDate(toDateTime({wall}, 'UTC'))")
        prev = start(f"(toStartOfMonth(toDate(toDateTime({wall}, 'UTC'))) - toIntervalMonth(1))")
        return f"if({wall} >= {this}, {this}, {prev})"

    def start(day: str) -> str:
        return (f"epoch(make_timestamp(year({day}), month({day}), "
                f"least(anchor_day, day(last_day({day}))), anchor_hour, anchor_minute, 0))::bigint")
    this = start(f"make_timestamp({wall} * 1000000)::date")
    prev = start(f"(date_trunc('month', make_timestamp({wall} * 1000000)) - interval 1 month)"
                 "::date")
    return f"case when {wall} >= {this} then {this} else {prev} end"


def _wall_floor(window: str, engine: str, wall: str) -> str:
    mod = "modulo" if engine == "clickhouse" else "mod"
    if window in SUB_DAY_MINUTES or window == "DAY":
        step = SUB_DAY_MINUTES.get(window, 1440) * 60
        return f"({wall} - {mod}({wall}, {step}))"
    if window == "WEEK":
        return f"({wall} - {mod}({wall} - {WEEK_ORIGIN_SECONDS}, {7 * 86_400}))"
    if window == "MONTH":
        return _month_floor(engine, wall)
    raise ValueError(f"unknown window {window!r}")


def _bucket_start(plan: BaselinePlan, window: str, engine: str) -> str:
    """Epoch seconds of the start of `window`'s bucket holding the minute `t` whose offset is
    `off_t`: truncate the wall clock, convert back with the offset that holds there."""
    if window == "MINUTE":
        return "t"  # offsets are whole minutes: a local minute is the UTC minute
    floor = _wall_floor(window, engine, "(t + off_t)")
    first = f"({floor} - off_t)"
    other = _offset(plan, engine, first)
    if engine == "clickhouse":
        return f"if({other} = off_t, {first}, {floor} - {other})"
    return f"case when {other} = off_t then {first} else {floor} - {other} end"


def _bucket_start_columns(plan: BaselinePlan, window: str, engine: str) -> str:
    """The same as `_bucket_start`, as a chain of select-list aliases ending in
    `window_start_epoch` (the inline form repeats the truncation in every timezone branch,
    which makes MONTH queries 100 kB long and slow to plan)."""
    if window == "MINUTE":
        return "t as window_start_epoch"
    choose = ("if(other_offset = off_t, first_start, wall_start - other_offset)"
              if engine == "clickhouse" else
              "case when other_offset = off_t then first_start else wall_start - other_offset "
              "end")
    return (f"{_wall_floor(window, engine, '(t + off_t)')} as wall_start,\n"
            "        wall_start - off_t as first_start,\n"
            f"        {_offset(plan, engine, 'first_start')} as other_offset,\n"
            f"        {choose} as window_start_epoch")


def output_table(window: str) -> str:
    """The table a baseline writes `window`'s rollup to."""
    return f"rollup_{window.lower()}"


def _meter_rows(plan: BaselinePlan) -> str:
    return ", ".join(
        f"({_q(m.tenant_id)}, {_q(m.environment_id)}, {_q(m.event_name)}, {_q(m.meter_id)}, "
        f"{m.definition})" for m in plan.meters
    )


# --------------------------------------------------------------------------------------------
# The rollup outputs: every window query ends the same way

_VALUE_BY_TYPE = """
        case aggregation_type
            when 'COUNT' then n_events
            when 'SUM' then value_sum
            when 'SUM_WITH_MULTIPLIER' then value_sum
            when 'MAX' then {max_value}
            when 'LATEST' then latest_value
            when 'COUNT_UNIQUE' then n_distinct
        end"""
_EVENT_COUNT_BY_TYPE = """
        case aggregation_type
            when 'COUNT' then n_events
            when 'COUNT_UNIQUE' then n_texts
            else n_values
        end"""


# --------------------------------------------------------------------------------------------
# chDB: staging statements into Memory tables, then one query per window size


def chdb_stage(plan: BaselinePlan, raw: Path, customers: Path) -> list[str]:
    """Latest version of each event id, metered names only, properties read once with
    ClickHouse's simpleJSON functions (flat objects), matched to meters, quantities typed; the
    (tenant, environment, meter, customer) series keyed by a 64-bit hash (cheap GROUP BY keys)
    with its names in a small table."""
    src = f"file({_q(str(raw))}, Parquet)"
    keys = plan.property_keys
    raw_columns = ",\n                ".join(
        f"simpleJSONExtractRaw(properties, {_q(k)}) as r_{_col(k)}" for k in keys)
    texts = ",\n            ".join(
        f"multiIf(r_{_col(k)} in ('', 'null') or startsWith(r_{_col(k)}, '{{') "
        f"or startsWith(r_{_col(k)}, '['), CAST(NULL, 'Nullable(String)'), "
        f"startsWith(r_{_col(k)}, '\"'), simpleJSONExtractString(properties, {_q(k)}), "
        f"r_{_col(k)}) as {_col(k)}" for k in keys)
    per = _per_definition(plan, "clickhouse")
    per_event = "".join(
        f",\n            {sql} as {alias}"
        for alias, sql in _per_event(plan, "clickhouse", {k: _col(k) for k in keys}))
    names = ", ".join(_q(n) for n in plan.event_names)
    stage = f"""
create table meter_events engine = Memory as
select
    cityHash64(tenant_id, environment_id, meter_id, external_customer_id) as series,
    tenant_id, environment_id, meter_id, external_customer_id, event_id, ts_us, ingest_seq,
    t, tz_id, off_t, anchor_day, anchor_hour, anchor_minute,
    aggregation_type, quantity, value_text, bucket_key
from (
    select
        e.*, m.meter_id as meter_id, m.def as def,
        {per["aggregation_type"]} as aggregation_type,
        {per["quantity"]} as quantity,
        {per["value_text"]} as value_text,
        {per["bucket_key"]} as bucket_key,
        {per["filter_ok"]} as filter_ok
    from (
        select
            events.* except (properties),
            {texts}{per_event},
            ifNull(c.tz_id, 0) as tz_id,
            if(ifNull(c.anchor_day, 0) = 0, 1, assumeNotNull(c.anchor_day)) as anchor_day,
            ifNull(c.anchor_hour, 0) as anchor_hour,
            ifNull(c.anchor_minute, 0) as anchor_minute,
            {_offset(plan, "clickhouse", "t")} as off_t
        from (
            select
                tenant_id, environment_id, event_id, event_name, external_customer_id,
                toUnixTimestamp64Micro(event_timestamp) as ts_us, ingest_seq,
                intDiv(ts_us, 60000000) * 60 as t,
                properties,
                {raw_columns}
            from {src}
            where event_name in ({names})
                and ingest_seq not in (
                    select arrayJoin(arrayPopBack(arraySort(groupArray(ingest_seq))))
                    from {src}
                    group by tenant_id, environment_id, event_id
                    having count() > 1
                )
        ) as events
        left join file({_q(str(customers))}, Parquet) as c
            on events.tenant_id = c.tenant_id and events.environment_id = c.environment_id
            and events.external_customer_id = c.external_customer_id
    ) as e
    inner join (
        select * from values(
            'tenant_id String, environment_id String, event_name String, meter_id String,
             def UInt32',
            {_meter_rows(plan)})
    ) as m
        on e.tenant_id = m.tenant_id and e.environment_id = m.environment_id
        and e.event_name = m.event_name
)
where filter_ok
settings join_use_nulls = 0
"""
    names_table = """
create table series_names engine = Memory as
select distinct series, tenant_id, environment_id, meter_id, external_customer_id
from meter_events
"""
    return [stage, names_table]


def chdb_window(plan: BaselinePlan, window: str) -> str:
    """`window`'s rollup of every supported meter into a MergeTree table: one GROUP BY per
    aggregation type under a UNION ALL (each group carries only the states its type needs;
    bucketed MAX through maxMap: the max per bucket-and-group key, summed)."""
    start = _bucket_start_columns(plan, window, "clickhouse")
    branches = {
        "COUNT": ("toDecimal128(count(), 12)", "NULL", "count()"),
        "SUM": ("sum(quantity)", "NULL", "count()"),
        "SUM_WITH_MULTIPLIER": ("sum(quantity)", "NULL", "count()"),
        "AVG": ("NULL", "toFloat64(sum(quantity)) / count()", "count()"),
        "MAX": ("if(any(bucket_key) != '', arraySum((maxMap([bucket_key], [quantity])).2), "
                "max(quantity))", "NULL", "count()"),
        "LATEST": ("argMax(quantity, (ts_us, ingest_seq, event_id))", "NULL", "count()"),
        "COUNT_UNIQUE": ("toDecimal128(uniqExact(value_text), 12)", "NULL", "count()"),
    }
    kinds = {d.aggregation_type for d in plan.definitions}
    selects = []
    for kind, (value, avg, count) in branches.items():
        if kind not in kinds:
            continue
        # rows without a usable value do not contribute to value-based types (DESIGN 3b.4)
        usable = {"COUNT": "", "COUNT_UNIQUE": " and value_text is not null"}.get(
            kind, " and quantity is not null")
        selects.append(f"""
    select
        series, window_start_epoch, {_q(kind)} as kind,
        CAST({value}, 'Nullable(Decimal128(12))') as value,
        CAST({avg}, 'Nullable(Float64)') as avg_value,
        toUInt64({count}) as event_count
    from (
        select *, {start}
        from meter_events
        where aggregation_type = {_q(kind)}{usable}
    )
    group by series, window_start_epoch""")
    union = "\n    union all".join(selects)
    return f"""
create table {output_table(window)} engine = MergeTree order by tuple() as
select
    s.tenant_id as tenant_id, s.environment_id as environment_id, s.meter_id as meter_id,
    s.external_customer_id as external_customer_id, {_q(window)} as window_size,
    w.window_start_epoch as window_start_epoch, w.kind as aggregation_type,
    w.value as value, w.avg_value as avg_value, w.event_count as event_count
from ({union}
) as w
inner join series_names as s on w.series = s.series
"""


def chdb_export(window: str, out: Path) -> str:
    """Copy a window's output table to Parquet for the agreement check (not timed)."""
    return (f"insert into function file({_q(str(out))}, Parquet) "
            f"select * from {output_table(window)}")


def chdb_cleanup() -> list[str]:
    return ["drop table if exists meter_events", "drop table if exists series_names",
            *(f"drop table if exists {output_table(w)}" for w in WINDOW_SIZES)]


# --------------------------------------------------------------------------------------------
# DuckDB: staging statements into temporary tables, then one query per window size


def duckdb_stage(plan: BaselinePlan, raw: Path, customers: Path) -> list[str]:
    """Latest version of each event id, metered names only, properties read once
    (json_extract_string with a list of paths: one parse per event), matched to meters,
    quantities typed; the series keyed by a 64-bit hash, its names in a small table."""
    src = f"read_parquet({_q(str(raw))})"
    keys = plan.property_keys
    paths = ", ".join(_q(f'$."{k}"') for k in keys)
    per = _per_definition(plan, "duckdb")
    per_event = "".join(
        f",\n        {sql} as {alias}"
        for alias, sql in _per_event(plan, "duckdb", {k: _col(k) for k in keys}))
    properties = ",\n        ".join(f"props[{i + 1}] as {_col(k)}" for i, k in enumerate(keys))
    names = ", ".join(_q(n) for n in plan.event_names)
    stage = f"""
create or replace temp table meter_events as
with superseded as (
    select unnest(list_sort(list(ingest_seq))[:-2]) as ingest_seq
    from {src}
    group by tenant_id, environment_id, event_id
    having count(*) > 1
),

events as (
    select
        r.tenant_id, r.environment_id, r.event_id, r.event_name, r.external_customer_id,
        epoch_us(r.event_timestamp) as ts_us, r.ingest_seq,
        (epoch_us(r.event_timestamp) // 60000000) * 60 as t,
        json_extract_string(r.properties, [{paths}]) as props
    from {src} as r
    anti join superseded using (ingest_seq)
    where r.event_name in ({names})
),

with_calendar as (
    select
        events.* exclude (props),
        {properties},
        coalesce(c.tz_id, 0) as tz_id,
        coalesce(c.calendar_id, 0) as calendar_id,
        coalesce(c.anchor_day, 1) as anchor_day,
        coalesce(c.anchor_hour, 0) as anchor_hour,
        coalesce(c.anchor_minute, 0) as anchor_minute
    from events
    left join read_parquet({_q(str(customers))}) as c
        on events.tenant_id = c.tenant_id and events.environment_id = c.environment_id
        and events.external_customer_id = c.external_customer_id
),

with_offset as (
    select *, {_offset(plan, "duckdb", "t")} as off_t{per_event}
    from with_calendar
),

meters (tenant_id, environment_id, event_name, meter_id, def) as (
    values {_meter_rows(plan)}
),

matched as (
    select e.*, m.meter_id, m.def
    from with_offset as e
    inner join meters as m
        on e.tenant_id = m.tenant_id and e.environment_id = m.environment_id
        and e.event_name = m.event_name
)

select
    hash(tenant_id, environment_id, meter_id, external_customer_id) as series,
    tenant_id, environment_id, meter_id, external_customer_id, event_id, ts_us, ingest_seq,
    t, tz_id, calendar_id, off_t, anchor_day, anchor_hour, anchor_minute,
    {per["aggregation_type"]} as aggregation_type,
    {per["quantity"]} as quantity,
    {per["value_text"]} as value_text,
    {per["bucket_key"]} as bucket_key
from matched
where {per["filter_ok"]}
"""
    names_table = """
create or replace temp table series_names as
select distinct series, tenant_id, environment_id, meter_id, external_customer_id
from meter_events
"""
    return [stage, names_table]


def duckdb_window(plan: BaselinePlan, window: str) -> str:
    """`window`'s rollup of every supported meter into a table: one GROUP BY per aggregation
    type under a UNION ALL (bucketed MAX: the max per bucket-and-group key, then their sum).
    Bucket starts are computed once per distinct (calendar, minute) and joined: DuckDB's
    timezone() and date arithmetic cost far more per row than ClickHouse's."""
    start = "window_start_epoch"
    null_dec, null_avg = "cast(null as decimal(38, 12))", "cast(null as double)"
    branches = {
        "COUNT": ("count(*)", null_avg, "count(*)"),
        "SUM": ("sum(quantity)", null_avg, "count(*)"),
        "SUM_WITH_MULTIPLIER": ("sum(quantity)", null_avg, "count(*)"),
        "AVG": (null_dec, "cast(sum(quantity) as double) / count(*)", "count(*)"),
        "MAX": ("max(quantity)", null_avg, "count(*)"),
        "LATEST": ("arg_max(quantity, (ts_us, ingest_seq, event_id))", null_avg, "count(*)"),
        "COUNT_UNIQUE": ("count(distinct value_text)", null_avg, "count(*)"),
    }
    kinds = {d.aggregation_type for d in plan.definitions}
    selects = []
    for kind, (value, avg, count) in branches.items():
        if kind not in kinds:
            continue
        usable = {"COUNT": "", "COUNT_UNIQUE": " and value_text is not null"}.get(
            kind, " and quantity is not null")
        bucketed = {"MAX": " and bucket_key = ''"}.get(kind, "")
        selects.append(f"""
    select
        series, {start} as window_start_epoch, {_q(kind)} as aggregation_type,
        cast({value} as decimal(38, 12)) as value, {avg} as avg_value,
        {count} as event_count
    from meter_events
    inner join starts using (calendar_id, t)
    where aggregation_type = {_q(kind)}{usable}{bucketed}
    group by all""")
    if any(d.bucketed for d in plan.definitions):
        selects.append(f"""
    select
        series, window_start_epoch, 'MAX' as aggregation_type,
        cast(sum(bucket_max) as decimal(38, 12)) as value, {null_avg} as avg_value,
        sum(events) as event_count
    from (
        select series, {start} as window_start_epoch, bucket_key,
            max(quantity) as bucket_max, count(*) as events
        from meter_events
        inner join starts using (calendar_id, t)
        where aggregation_type = 'MAX' and quantity is not null and bucket_key != ''
        group by all
    )
    group by all""")
    union = "\n    union all".join(selects)
    return f"""
create or replace table {output_table(window)} as
with starts as (
    select calendar_id, t, {_bucket_start_columns(plan, window, "duckdb")}
    from (
        select distinct calendar_id, t, tz_id, off_t, anchor_day, anchor_hour, anchor_minute
        from meter_events
    )
)
select
    s.tenant_id, s.environment_id, s.meter_id, s.external_customer_id,
    {_q(window)} as window_size,
    w.window_start_epoch, w.aggregation_type, w.value, w.avg_value,
    cast(w.event_count as bigint) as event_count
from ({union}
) as w
inner join series_names as s using (series)
"""


def duckdb_export(window: str, out: Path) -> str:
    """Copy a window's output table to Parquet for the agreement check (not timed)."""
    return f"copy {output_table(window)} to {_q(str(out))} (format parquet)"


def duckdb_cleanup() -> list[str]:
    return ["drop table if exists meter_events", "drop table if exists series_names",
            *(f"drop table if exists {output_table(w)}" for w in WINDOW_SIZES)]


__all__ = [
    "OUTPUT_COLUMNS",
    "SUPPORTED_TYPES",
    "WINDOW_SIZES",
    "BaselinePlan",
    "chdb_cleanup",
    "chdb_export",
    "chdb_stage",
    "chdb_window",
    "duckdb_cleanup",
    "duckdb_export",
    "duckdb_stage",
    "duckdb_window",
    "output_table",
    "plan_from_catalog",
    "write_customers",
]
