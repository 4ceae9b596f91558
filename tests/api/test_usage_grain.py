"""`api.usage.choose_grain`: minutes merge into UTC hours only when every boundary an answer
depends on is a whole UTC hour; `usage_grain`: otherwise into the answer's own windows (pure
functions; no warehouse)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.usage import (
    HOUR,
    MAX_SLOTS,
    MINUTE,
    CustomerCalendar,
    MeterInfo,
    Slots,
    choose_grain,
    meter_bucket_slots,
    usage_grain,
)

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


# Slots: the states of each window of the answer merge into one (usage_grain)
DAY_ONE = datetime(2024, 3, 2, tzinfo=UTC)
NEW_YORK_MIDNIGHTS = [datetime(2024, 3, d, 5, tzinfo=UTC) for d in range(1, 32)]


def test_slots_are_the_windows_of_the_answer():
    grain = usage_grain("SUM", SUM, UTC_CALENDAR, START, END, "DAY", "America/New_York", None)
    assert isinstance(grain, Slots)
    # New York's midnights (UTC-5, then UTC-4 from March 10), the range's ends around them
    assert grain.bounds[0] == START and grain.bounds[-1] == END
    assert grain.bounds[1:-1] == tuple(
        at - timedelta(hours=1) if at >= datetime(2024, 3, 10, 7, tzinfo=UTC) else at
        for at in NEW_YORK_MIDNIGHTS)
    assert usage_grain("COUNT_UNIQUE", SUM, UTC_CALENDAR, START, END, None, "UTC",
                       None) == Slots((START, END))


@pytest.mark.parametrize("kind, meter, start, end, window, grain", [
    # a time integral: minutes or hours as choose_grain says
    ("WEIGHTED_SUM", SUM, START, END, "DAY", MINUTE),
    # more windows than MAX_SLOTS, or not on whole minutes
    ("SUM", SUM, START, END, "15MIN", MINUTE),
    ("SUM", SUM, START.replace(second=30), END, "DAY", MINUTE),
])
def test_slots_give_way_to_minutes_or_hours(kind, meter, start, end, window, grain):
    assert usage_grain(kind, meter, UTC_CALENDAR, start, end, window, "UTC", None) == grain


def test_slots_of_cuts_inside_the_range_only():
    inside = DAY_ONE + timedelta(minutes=7)
    slots = Slots.of([START - timedelta(days=1), inside, inside, END], START, END)
    assert slots == Slots((START, inside, END))
    assert Slots.of([inside + timedelta(seconds=1)], START, END) is None
    assert Slots.of([START + timedelta(minutes=m) for m in range(1, MAX_SLOTS)], START,
                    END) is not None
    assert Slots.of([START + timedelta(minutes=m) for m in range(1, MAX_SLOTS + 1)], START,
                    END) is None


def test_a_bucketed_meter_cuts_slots_at_its_own_buckets_too():
    # DAY buckets in Kolkata (18:30 UTC), DAY windows in UTC: both lists of cuts
    meter = MeterInfo("t", "e", "m", "MAX", "DAY", "NEVER")
    kolkata = CustomerCalendar("Asia/Kolkata", "")
    grain = usage_grain("MAX", meter, kolkata, START, START + timedelta(days=3), "DAY", "UTC",
                        None)
    assert grain == Slots(tuple(sorted(
        [START + timedelta(days=d) for d in range(4)]
        + [datetime(2024, 3, d, 18, 30, tzinfo=UTC) for d in (1, 2, 3)])))


def test_hourly_buckets_too_many_to_list_are_cut_every_hour_from_their_origin():
    # Kathmandu's hours start at :15 UTC (+05:45) all month: 744 buckets, cut by arithmetic
    slots = meter_bucket_slots("HOUR", "Asia/Kathmandu", None, [DAY_ONE], START, END)
    assert slots == Slots((START, DAY_ONE, END), (60, datetime(2024, 2, 29, 23, 15, tzinfo=UTC)))
    # Lord Howe's offset moves by half an hour on April 7: no fixed origin, so no slots
    assert meter_bucket_slots("HOUR", "Australia/Lord_Howe", None, [], START,
                              LORD_HOWE_DST_ENDED) is None
    # MINUTE buckets are minutes
    assert meter_bucket_slots("MINUTE", "UTC", None, [], START, DAY_ONE) is None
