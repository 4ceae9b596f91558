"""`api.usage.choose_grain`: minutes merge into UTC hours only when every boundary an answer
depends on is a whole UTC hour (pure function; no warehouse)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api.usage import HOUR, MINUTE, CustomerCalendar, MeterInfo, choose_grain

START = datetime(2024, 3, 1, tzinfo=UTC)
END = datetime(2024, 4, 1, tzinfo=UTC)
LORD_HOWE_DST_ENDED = datetime(2024, 4, 10, tzinfo=UTC)
SUM = MeterInfo("t", "e", "m", "SUM", None, "NEVER")
PEAK = MeterInfo("t", "e", "m", "MAX", "DAY", "NEVER")
UTC_CALENDAR = CustomerCalendar("UTC", "")


@pytest.mark.parametrize("kind, meter, calendar, start, end, window, tz, anchor, grain", [
    ("SUM", SUM, UTC_CALENDAR, START, END, "DAY", "America/New_York", None, HOUR),
    ("SUM", SUM, UTC_CALENDAR, START, END, None, "UTC", None, HOUR),
    ("COUNT_UNIQUE", SUM, UTC_CALENDAR, START, END, "HOUR", "Europe/Berlin", None, HOUR),
    ("SUM", SUM, UTC_CALENDAR, START, END, "MONTH", "UTC",
     datetime(2024, 1, 15, 5, 0, tzinfo=UTC), HOUR),
    # not on the hour: the range, a sub-hour window, a half-hour zone, an anchor at :30
    ("SUM", SUM, UTC_CALENDAR, START.replace(minute=1), END, "DAY", "UTC", None, MINUTE),
    ("SUM", SUM, UTC_CALENDAR, START, END.replace(minute=30), None, "UTC", None, MINUTE),
    ("SUM", SUM, UTC_CALENDAR, START, END, "15MIN", "UTC", None, MINUTE),
    ("SUM", SUM, UTC_CALENDAR, START, END, "DAY", "Asia/Kathmandu", None, MINUTE),
    ("SUM", SUM, UTC_CALENDAR, START, END, "DAY", "Australia/Lord_Howe", None, HOUR),  # +11
    ("SUM", SUM, UTC_CALENDAR, START, LORD_HOWE_DST_ENDED, "DAY", "Australia/Lord_Howe", None,
     MINUTE),  # back to +10:30 on April 7
    ("SUM", SUM, UTC_CALENDAR, START, END, "MONTH", "UTC",
     datetime(2024, 1, 15, 5, 30, tzinfo=UTC), MINUTE),
    # the meter's own buckets are in the customer's calendar
    ("MAX", PEAK, CustomerCalendar("Asia/Kolkata", ""), START, END, "DAY", "UTC", None, MINUTE),
    ("MAX", PEAK, CustomerCalendar("America/New_York", ""), START, END, "DAY", "UTC", None,
     HOUR),
    ("MAX", MeterInfo("t", "e", "m", "MAX", "MONTH", "NEVER"),
     CustomerCalendar("UTC", "15 09:30"), START, END, None, "UTC", None, MINUTE),
    # WEIGHTED_SUM integrates over time: always minutes
    ("WEIGHTED_SUM", SUM, UTC_CALENDAR, START, END, "DAY", "UTC", None, MINUTE),
])
def test_grain(kind, meter, calendar, start, end, window, tz, anchor, grain):
    assert choose_grain(kind, meter, calendar, start, end, window, tz, anchor) == grain
