"""Calendars: bucket boundaries and billing periods, computed once in Python, exactly.

Local-time bucketing (DST gaps and repeats, anchors clamped to short months) is decided by
`models.windows`, the same code the reference uses; the warehouse receives the boundaries as
plain tables and only joins them, so every engine gives the same answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from models import windows
from orchestration.warehouse import Warehouse

CALENDAR_WINDOWS = ("15MIN", "30MIN", "HOUR", "3HOUR", "6HOUR", "12HOUR", "DAY", "WEEK", "MONTH")
# Calendar rows are keyed by the UTC hour of a minute, so they are needed only for the hours
# that hold events; each row carries its whole bucket, even when it starts before them.
SPAN_MARGIN = timedelta(hours=1)
# Billing periods are few (one row a month per customer) and the API asks about ranges beyond
# the events (a WEIGHTED_SUM level resets even when no event follows): cover a wide span.
PERIOD_MARGIN = timedelta(days=800)

CALENDAR_TABLES = ("calendar_buckets", "customer_billing_periods", "customer_usage_calendars")
CALENDAR_DDL = (
    "timezone varchar, anchor_key varchar, window_size varchar, hour_start timestamptz, "
    "bucket_start timestamptz, bucket_end timestamptz"
)
USAGE_CALENDARS_DDL = (
    "tenant_id varchar, environment_id varchar, external_customer_id varchar, "
    "timezone varchar, month_anchor_key varchar"
)
BILLING_PERIODS_DDL = (
    "tenant_id varchar, environment_id varchar, external_customer_id varchar, "
    "period_start timestamptz, period_end timestamptz"
)


@dataclass(frozen=True)
class CustomerCalendar:
    """The calendar one customer's usage is bucketed and reset in."""

    tenant_id: str
    environment_id: str
    external_customer_id: str
    timezone: str = "UTC"
    anchor: datetime | None = None
    billing_period: str = "MONTHLY"
    billing_period_count: int = 1

    @property
    def month_anchor_key(self) -> str:
        return windows.anchor_key(self.anchor, self.timezone)


def event_span(warehouse: Warehouse) -> tuple[datetime, datetime] | None:
    """First and last event timestamp in the raw events, or None without events."""
    if not warehouse.table_exists("raw_events"):
        return None
    row = warehouse.query(
        f"select min(event_timestamp), max(event_timestamp) from {warehouse.table('raw_events')}"
    )[0]
    if row[0] is None:
        return None
    return _as_utc(row[0]), _as_utc(row[1])


def customer_calendars(warehouse: Warehouse) -> list[CustomerCalendar]:
    """Every customer that appears in the catalog or in the events, with its calendar.

    The anchor is that of the customer's earliest subscription (its billing period too);
    customers without a subscription use calendar months; unknown customers use UTC.
    """
    t = warehouse.table
    known: dict[tuple[str, str, str], CustomerCalendar] = {}
    if warehouse.table_exists("catalog_customers"):
        subscriptions = _earliest_subscriptions(warehouse)
        for row in warehouse.query_dicts(
            f"select tenant_id, environment_id, customer_id, external_id, timezone "
            f"from {t('catalog_customers')}"
        ):
            sub = subscriptions.get((row["tenant_id"], row["environment_id"], row["customer_id"]))
            key = (row["tenant_id"], row["environment_id"], row["external_id"])
            known[key] = CustomerCalendar(
                *key,
                timezone=row["timezone"] or "UTC",
                anchor=sub["anchor"] if sub else None,
                billing_period=sub["billing_period"] if sub else "MONTHLY",
                billing_period_count=sub["billing_period_count"] if sub else 1,
            )
    if warehouse.table_exists("raw_events"):
        for tenant, env, external_id in warehouse.query(
            "select distinct tenant_id, environment_id, external_customer_id "
            f"from {t('raw_events')}"
        ):
            known.setdefault((tenant, env, external_id), CustomerCalendar(tenant, env, external_id))
    return sorted(known.values(), key=lambda c: (c.tenant_id, c.environment_id,
                                                  c.external_customer_id))


def _earliest_subscriptions(warehouse: Warehouse) -> dict[tuple[str, str, str], dict]:
    if not warehouse.table_exists("catalog_subscriptions"):
        return {}
    rows = warehouse.query_dicts(
        "select tenant_id, environment_id, customer_id, subscription_id, start_date, "
        "billing_anchor, billing_period, billing_period_count "
        f"from {warehouse.table('catalog_subscriptions')} "
        "order by start_date, subscription_id"
    )
    earliest: dict[tuple[str, str, str], dict] = {}
    for row in rows:
        key = (row["tenant_id"], row["environment_id"], row["customer_id"])
        if key in earliest:
            continue
        anchor = row["billing_anchor"] or row["start_date"]
        earliest[key] = {
            "anchor": _as_utc(anchor) if anchor else None,
            "billing_period": row["billing_period"] or "MONTHLY",
            "billing_period_count": int(row["billing_period_count"] or 1),
        }
    return earliest


def calendar_table(
    calendars: Iterable[CustomerCalendar], span_start: datetime, span_end: datetime
) -> pa.Table:
    """Bucket boundaries for every (timezone, anchor) the customers use, over the span."""
    wanted: set[tuple[str, str]] = {("UTC", "")}
    for cal in calendars:
        wanted.add((cal.timezone, ""))
        wanted.add((cal.timezone, cal.month_anchor_key))
    columns: dict[str, list] = {k: [] for k in
                                ("timezone", "anchor_key", "window_size", "hour_start",
                                 "bucket_start", "bucket_end")}
    for tz, key in sorted(wanted):
        sizes = CALENDAR_WINDOWS if key == "" else ("MONTH",)
        for row in windows.calendar_rows(tz, key, sizes, span_start, span_end):
            for name, value in zip(columns, row, strict=True):
                columns[name].append(value)
    return _arrow(columns, time_columns=("hour_start", "bucket_start", "bucket_end"))


def billing_periods_table(
    calendars: Iterable[CustomerCalendar], span_start: datetime, span_end: datetime
) -> pa.Table:
    columns: dict[str, list] = {k: [] for k in
                                ("tenant_id", "environment_id", "external_customer_id",
                                 "period_start", "period_end")}
    for cal in calendars:
        for start, end in windows.billing_periods(
            cal.anchor, cal.timezone, span_start, span_end,
            cal.billing_period, cal.billing_period_count,
        ):
            for name, value in zip(
                columns,
                (cal.tenant_id, cal.environment_id, cal.external_customer_id, start, end),
                strict=True,
            ):
                columns[name].append(value)
    return _arrow(columns, time_columns=("period_start", "period_end"))


def usage_calendars_table(calendars: Iterable[CustomerCalendar]) -> pa.Table:
    cals = list(calendars)
    return pa.table({
        "tenant_id": [c.tenant_id for c in cals],
        "environment_id": [c.environment_id for c in cals],
        "external_customer_id": [c.external_customer_id for c in cals],
        "timezone": [c.timezone for c in cals],
        "month_anchor_key": [c.month_anchor_key for c in cals],
    }, schema=pa.schema([(n, pa.string()) for n in (
        "tenant_id", "environment_id", "external_customer_id", "timezone", "month_anchor_key")]))


def write_calendars(warehouse: Warehouse) -> dict[str, int]:
    """(Re)build the three calendar tables for the customers and events in the warehouse."""
    calendars = customer_calendars(warehouse)
    span = event_span(warehouse)
    if span is None:
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        span = (now, now)
    span_start, span_end = span[0] - SPAN_MARGIN, span[1] + SPAN_MARGIN
    buckets = calendar_table(calendars, span_start, span_end)
    periods = billing_periods_table(
        calendars, span[0] - PERIOD_MARGIN, max(span[1], datetime.now(UTC)) + PERIOD_MARGIN
    )
    usage = usage_calendars_table(calendars)
    with warehouse.transaction():
        warehouse.replace_arrow("calendar_buckets", buckets, CALENDAR_DDL)
        warehouse.replace_arrow("customer_billing_periods", periods, BILLING_PERIODS_DDL)
        warehouse.replace_arrow("customer_usage_calendars", usage, USAGE_CALENDARS_DDL)
    return {
        "calendar_buckets": buckets.num_rows,
        "customer_billing_periods": periods.num_rows,
        "customer_usage_calendars": usage.num_rows,
    }


def _arrow(columns: dict[str, list], time_columns: tuple[str, ...]) -> pa.Table:
    fields = [
        (name, pa.timestamp("us", tz="UTC") if name in time_columns else pa.string())
        for name in columns
    ]
    return pa.table(columns, schema=pa.schema(fields))


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
