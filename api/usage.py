"""Meter usage of any minute-aligned range, in any timezone, from the stored minute states.

This is how the read API answers ranges and windows that no precomputed rollup has (any
IANA timezone, any start and end): it fetches the per-minute states of one meter and one
customer from `fct_meter_usage_minutely` and merges them with `models.states`. It never
reads raw events.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from models import states as st
from models import windows
from orchestration.warehouse import Warehouse

FAR_PAST = datetime.fromisoformat("1970-01-01T00:00:00+00:00")


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


@dataclass(frozen=True)
class CustomerCalendar:
    timezone: str
    month_anchor_key: str


def load_meter(warehouse: Warehouse, tenant_id: str, environment_id: str,
               meter_id: str) -> MeterInfo | None:
    p = warehouse.ph
    rows = warehouse.query(
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
    p = warehouse.ph
    rows = warehouse.query(
        "select timezone, month_anchor_key "
        f"from {warehouse.table('customer_usage_calendars')} "
        f"where tenant_id = {p} and environment_id = {p} and external_customer_id = {p}",
        [meter.tenant_id, meter.environment_id, customer],
    )
    return CustomerCalendar(*rows[0]) if rows else CustomerCalendar("UTC", "")


def fetch_states(warehouse: Warehouse, meter: MeterInfo, customer: str, start: datetime,
                 end: datetime) -> list[st.MinuteState]:
    p = warehouse.ph
    rows = warehouse.query(
        "select group_value, minute_start, event_count, value_count, text_count, value_sum, "
        "value_max, weighted_moment_us, latest_timestamp, latest_ingest_seq, latest_event_id, "
        f"latest_value from {warehouse.table('fct_meter_usage_minutely')} "
        f"where tenant_id = {p} and environment_id = {p} and meter_id = {p} "
        f"and external_customer_id = {p} and minute_start >= {p} and minute_start < {p} "
        "order by minute_start",
        [meter.tenant_id, meter.environment_id, meter.meter_id, customer, start, end],
    )
    return [st.MinuteState(*row) for row in rows]


def fetch_distinct_values(warehouse: Warehouse, meter: MeterInfo, customer: str,
                          start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    p = warehouse.ph
    return warehouse.query(
        "select minute_start, value_text "
        f"from {warehouse.table('fct_meter_distinct_values_minutely')} "
        f"where tenant_id = {p} and environment_id = {p} and meter_id = {p} "
        f"and external_customer_id = {p} and minute_start >= {p} and minute_start < {p}",
        [meter.tenant_id, meter.environment_id, meter.meter_id, customer, start, end],
    )


def reset_points(warehouse: Warehouse, meter: MeterInfo, customer: str, start: datetime,
                 end: datetime) -> list[datetime]:
    """Billing period starts in (−∞, end) for meters whose usage resets each period."""
    if meter.reset_usage != "BILLING_PERIOD":
        return []
    p = warehouse.ph
    rows = warehouse.query(
        f"select period_start from {warehouse.table('customer_billing_periods')} "
        f"where tenant_id = {p} and environment_id = {p} and external_customer_id = {p} "
        f"and period_start < {p} order by period_start",
        [meter.tenant_id, meter.environment_id, customer, end],
    )
    return [r[0] for r in rows]


def level_before(warehouse: Warehouse, meter: MeterInfo, customer: str, since: datetime,
                 until: datetime) -> Decimal:
    """Σ deltas in [since, until): the WEIGHTED_SUM level carried into a range."""
    if until <= since:
        return st.ZERO
    p = warehouse.ph
    rows = warehouse.query(
        f"select sum(value_sum) from {warehouse.table('fct_meter_usage_minutely')} "
        f"where tenant_id = {p} and environment_id = {p} and meter_id = {p} "
        f"and external_customer_id = {p} and minute_start >= {p} and minute_start < {p}",
        [meter.tenant_id, meter.environment_id, meter.meter_id, customer, since, until],
    )
    return rows[0][0] or st.ZERO


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
) -> Usage:
    """Usage of one meter for one customer over [start, end), with points per window.

    `aggregation_type` (default: the meter's) decides how the meter's per-event quantities
    aggregate. Points are emitted only for windows with contributing events; the total is the
    aggregate over the whole range (not the sum of the points).
    """
    kind = aggregation_type or meter.aggregation_type
    if kind == "COUNT_UNIQUE" and meter.aggregation_type != "COUNT_UNIQUE":
        raise UnsupportedAggregation(
            "COUNT_UNIQUE is only stored for meters whose aggregation is COUNT_UNIQUE"
        )
    states = fetch_states(warehouse, meter, customer, start, end)
    calendar = customer_calendar(warehouse, meter, customer)
    distinct = (fetch_distinct_values(warehouse, meter, customer, start, end)
                if kind == "COUNT_UNIQUE" else [])
    resets: list[datetime] = []
    carried = st.ZERO
    if kind == "WEIGHTED_SUM":
        resets = reset_points(warehouse, meter, customer, start, end)
        carried = level_before(warehouse, meter, customer, _last_reset(resets, start), start)

    def level_at(at: datetime) -> Decimal:
        """WEIGHTED_SUM level at `at`: deltas since the last reset (carried in + in range)."""
        since = _last_reset(resets, at)
        base = carried if since <= start else st.ZERO
        return base + sum(
            (s.value_sum for s in states
             if s.value_count > 0 and max(since, start) <= s.minute_start < at),
            st.ZERO,
        )

    meter_bucket_of = _meter_buckets(meter, calendar, states) if (
        kind == "MAX" and meter.bucket_size) else {}

    def value_of(lo: datetime, hi: datetime) -> tuple[Decimal, int]:
        inside = [s for s in states if lo <= s.minute_start < hi]
        count = st.contributing_events(kind, inside)
        if kind == "COUNT_UNIQUE":
            return st.count_distinct(v for m, v in distinct if lo <= m < hi), count
        if kind == "MAX" and meter.bucket_size:
            return st.merge_bucketed_max(inside, meter_bucket_of), count
        if kind == "WEIGHTED_SUM":
            return st.weighted_value(inside, lo, hi, level_at(lo), resets), count
        return st.merge_simple(kind, inside), count

    total, total_count = value_of(start, end)
    usage = Usage(total=total, event_count=total_count)
    if window is None:
        return usage
    minutes_with_events = {s.minute_start for s in states}
    if kind == "COUNT_UNIQUE":
        minutes_with_events = {m for m, _ in distinct}
    for b_start, b_end in windows.buckets_between(start, end, window, timezone, anchor):
        lo, hi = max(b_start, start), min(b_end, end)
        if not any(lo <= m < hi for m in minutes_with_events):
            continue
        value, count = value_of(lo, hi)
        if count > 0:
            usage.points.append(Point(b_start, b_end, value, count))
    return usage


def _last_reset(resets: list[datetime], at: datetime) -> datetime:
    return max((r for r in resets if r <= at), default=FAR_PAST)


def _meter_buckets(meter: MeterInfo, calendar: CustomerCalendar,
                   states: list[st.MinuteState]) -> dict[datetime, datetime]:
    """Start of the meter's own bucket (customer calendar) for every minute with states."""
    anchor = windows.anchor_from_key(calendar.month_anchor_key, calendar.timezone)
    cache: dict[datetime, datetime] = {}
    by_hour: dict[datetime, list[datetime]] = defaultdict(list)
    for s in states:
        by_hour[s.minute_start.replace(minute=0)].append(s.minute_start)
    for minutes in by_hour.values():
        for minute in minutes:
            cache[minute] = windows.bucket_start(
                minute, meter.bucket_size, calendar.timezone,
                anchor if meter.bucket_size == "MONTH" else None,
            )
    return cache
