"""Billing periods of every subscription, computed once in Python, exactly.

Priced usage is per subscription line item and billing period. A subscription's periods
follow its billing anchor, billing_period and billing_period_count in the customer's
timezone (clamped in short months, DST-correct: `models.windows.billing_periods`), clipped to
[start_date, end_date) (`models.pricing.subscription_periods`). The warehouse receives them as
the table `subscription_billing_periods` and dbt only joins it, like the calendars.

Open-ended subscriptions get every period up to the one holding the later of now and the
last event. For subscriptions with a windowed commitment, each period also carries how many
meter buckets (HOUR, DAY, MONTH in the customer's calendar) it meets: a windowed true-up
counts the buckets without events too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

from models import windows
from models.pricing import subscription_periods
from orchestration.calendar import customer_calendars, event_span
from orchestration.warehouse import Warehouse

SUBSCRIPTION_PERIODS_TABLE = "subscription_billing_periods"
SUBSCRIPTION_PERIODS_COLUMNS = (
    ("tenant_id", "varchar", pa.string()),
    ("environment_id", "varchar", pa.string()),
    ("subscription_id", "varchar", pa.string()),
    ("period_index", "integer", pa.int32()),
    ("period_start", "timestamptz", pa.timestamp("us", tz="UTC")),
    ("period_end", "timestamptz", pa.timestamp("us", tz="UTC")),
    ("timezone", "varchar", pa.string()),
    ("hour_buckets", "integer", pa.int32()),
    ("day_buckets", "integer", pa.int32()),
    ("month_buckets", "integer", pa.int32()),
)
SUBSCRIPTION_PERIODS_DDL = ", ".join(f"{name} {sql}" for name, sql, _ in
                                     SUBSCRIPTION_PERIODS_COLUMNS)
BUCKET_COLUMNS = {"HOUR": "hour_buckets", "DAY": "day_buckets", "MONTH": "month_buckets"}


@dataclass(frozen=True)
class SubscriptionCalendar:
    """What decides one subscription's billing periods, and the customer's bucket calendar."""

    tenant_id: str
    environment_id: str
    subscription_id: str
    start_date: datetime
    end_date: datetime | None
    billing_anchor: datetime | None
    billing_period: str
    billing_period_count: int
    timezone: str = "UTC"
    month_anchor: datetime | None = None
    bucket_sizes: tuple[str, ...] = ()  # meter buckets counted per period (windowed commitments)


def period_rows(subscription: SubscriptionCalendar, until: datetime) -> list[dict]:
    """The rows of one subscription's billing periods (pure)."""
    periods = subscription_periods(
        subscription.start_date, subscription.end_date, subscription.billing_anchor,
        subscription.timezone, subscription.billing_period, subscription.billing_period_count,
        until,
    )
    rows = []
    for index, (start, end) in enumerate(periods):
        row = {
            "tenant_id": subscription.tenant_id,
            "environment_id": subscription.environment_id,
            "subscription_id": subscription.subscription_id,
            "period_index": index,
            "period_start": start,
            "period_end": end,
            "timezone": subscription.timezone,
            **dict.fromkeys(BUCKET_COLUMNS.values()),
        }
        for size in subscription.bucket_sizes:
            buckets = windows.buckets_between(
                start, end, size, subscription.timezone, subscription.month_anchor
            )
            row[BUCKET_COLUMNS[size]] = len(buckets)
        rows.append(row)
    return rows


def subscription_calendars(warehouse: Warehouse) -> list[SubscriptionCalendar]:
    """Every subscription of the catalog tables with its customer's calendar."""
    if not warehouse.table_exists("catalog_subscriptions"):
        return []
    t = warehouse.table
    calendars = {
        (c.tenant_id, c.environment_id, c.external_customer_id): c
        for c in customer_calendars(warehouse)
    }
    bucket_sizes = _windowed_bucket_sizes(warehouse)
    found = []
    for row in warehouse.query_dicts(
        "select tenant_id, environment_id, subscription_id, external_customer_id, start_date, "
        "end_date, billing_anchor, billing_period, billing_period_count "
        f"from {t('catalog_subscriptions')} order by 1, 2, 3"
    ):
        key = (row["tenant_id"], row["environment_id"])
        calendar = calendars.get((*key, row["external_customer_id"]))
        found.append(SubscriptionCalendar(
            *key,
            subscription_id=row["subscription_id"],
            start_date=_as_utc(row["start_date"]),
            end_date=_as_utc(row["end_date"]) if row["end_date"] else None,
            billing_anchor=_as_utc(row["billing_anchor"]) if row["billing_anchor"] else None,
            billing_period=row["billing_period"],
            billing_period_count=int(row["billing_period_count"]),
            timezone=calendar.timezone if calendar else "UTC",
            month_anchor=calendar.anchor if calendar else None,
            bucket_sizes=tuple(sorted(bucket_sizes.get((*key, row["subscription_id"]), ()))),
        ))
    return found


def _windowed_bucket_sizes(warehouse: Warehouse) -> dict[tuple[str, str, str], set[str]]:
    """Bucket sizes of the meters that carry a windowed commitment, per subscription."""
    needed = ("catalog_subscription_commitments", "catalog_prices", "catalog_meters")
    if not all(warehouse.table_exists(name) for name in needed):
        return {}
    t = warehouse.table
    sizes: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for tenant, environment, subscription, size in warehouse.query(
        "select c.tenant_id, c.environment_id, c.subscription_id, m.bucket_size "
        f"from {t('catalog_subscription_commitments')} as c "
        f"inner join {t('catalog_prices')} as p on p.tenant_id = c.tenant_id "
        "and p.environment_id = c.environment_id and p.price_id = c.price_id "
        f"inner join {t('catalog_meters')} as m on m.tenant_id = p.tenant_id "
        "and m.environment_id = p.environment_id and m.meter_id = p.meter_id "
        "where c.is_windowed and m.bucket_size is not null"
    ):
        sizes[(tenant, environment, subscription)].add(size)
    return sizes


def subscription_periods_table(
    subscriptions: Iterable[SubscriptionCalendar], until: datetime
) -> pa.Table:
    rows = [row for sub in subscriptions for row in period_rows(sub, until)]
    schema = pa.schema([(name, arrow) for name, _, arrow in SUBSCRIPTION_PERIODS_COLUMNS])
    return pa.Table.from_pylist(rows, schema=schema)


def write_subscription_periods(
    warehouse: Warehouse, *, now: datetime | None = None
) -> dict[str, int]:
    """(Re)build `subscription_billing_periods` from the catalog and the events' span.

    Periods run up to the one holding the later of `now` (default: the current time) and the
    last event. Call it after the catalog and the calendars are written, before dbt.
    """
    warehouse.connect()
    until = _as_utc(now) if now is not None else datetime.now(UTC)
    span = event_span(warehouse)
    if span is not None:
        until = max(until, span[1])
    table = subscription_periods_table(subscription_calendars(warehouse), until)
    with warehouse.transaction():
        _drop_if_shape_changed(warehouse)
        warehouse.replace_arrow(SUBSCRIPTION_PERIODS_TABLE, table, SUBSCRIPTION_PERIODS_DDL)
    return {SUBSCRIPTION_PERIODS_TABLE: table.num_rows}


def _drop_if_shape_changed(warehouse: Warehouse) -> None:
    """A table written by an older version with other columns is dropped and recreated."""
    existing = [column for column, _ in warehouse.columns(SUBSCRIPTION_PERIODS_TABLE)]
    if existing and existing != [name for name, _, _ in SUBSCRIPTION_PERIODS_COLUMNS]:
        cascade = " cascade" if warehouse.is_postgres else ""
        warehouse.execute(f"drop table {warehouse.table(SUBSCRIPTION_PERIODS_TABLE)}{cascade}")


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
