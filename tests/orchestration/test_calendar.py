"""Calendars written to the warehouse agree with models.windows for every customer."""

from datetime import UTC, datetime

import pyarrow as pa

from models import windows
from orchestration.calendar import (
    CustomerCalendar,
    billing_periods_table,
    calendar_table,
    write_calendars,
)
from orchestration.warehouse import Warehouse

START = datetime(2024, 11, 2, tzinfo=UTC)
END = datetime(2024, 11, 5, tzinfo=UTC)


def test_calendar_rows_cover_each_minute_once_per_window():
    cal = CustomerCalendar("t", "e", "c", timezone="America/New_York",
                           anchor=datetime(2024, 1, 31, 5, 0, tzinfo=UTC))
    table = calendar_table([cal], START, END).to_pylist()
    anchor = windows.anchor_from_key(cal.month_anchor_key, cal.timezone)
    minute = datetime(2024, 11, 3, 6, 17, tzinfo=UTC)  # 01:17 EST, the second 01:00 hour
    hour = minute.replace(minute=0)
    for window in ("15MIN", "HOUR", "3HOUR", "DAY", "WEEK", "MONTH"):
        key = cal.month_anchor_key if window == "MONTH" else ""
        rows = [r for r in table if r["timezone"] == cal.timezone and r["anchor_key"] == key
                and r["window_size"] == window and r["hour_start"] == hour
                and r["bucket_start"] <= minute < r["bucket_end"]]
        assert len(rows) == 1, window
        expected = windows.bucket_start(minute, window, cal.timezone,
                                        anchor if window == "MONTH" else None)
        assert rows[0]["bucket_start"] == expected


def test_billing_periods_follow_the_anchor():
    cal = CustomerCalendar("t", "e", "c", timezone="UTC",
                           anchor=datetime(2024, 1, 31, tzinfo=UTC))
    rows = billing_periods_table([cal], datetime(2024, 2, 10, tzinfo=UTC),
                                 datetime(2024, 3, 10, tzinfo=UTC)).to_pylist()
    starts = [r["period_start"] for r in rows]
    assert datetime(2024, 2, 29, tzinfo=UTC) in starts


def test_write_calendars_for_event_customers(duckdb_config):
    with Warehouse(duckdb_config) as wh:
        wh.execute("create table raw_events (tenant_id varchar, environment_id varchar, "
                   "external_customer_id varchar, event_timestamp timestamptz)")
        wh.append_arrow("raw_events", pa.table({
            "tenant_id": ["t"], "environment_id": ["e"], "external_customer_id": ["c9"],
            "event_timestamp": pa.array([START], pa.timestamp("us", tz="UTC"))}))
        counts = write_calendars(wh)
        assert counts["customer_usage_calendars"] == 1
        assert wh.query("select timezone, month_anchor_key from customer_usage_calendars") == [
            ("UTC", "")]
        first = write_calendars(wh)
        assert first == counts  # idempotent
