"""Tests for models/windows.py: bucket boundaries (DESIGN 3b.1-3b.3), calendars, billing periods.

Expected instants are worked out by hand from the zones' published rules; the properties
compare against an independent, literal implementation of rule 3b.1 written below.
"""

import calendar
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from models.windows import (
    WINDOW_SIZES,
    anchor_from_key,
    anchor_key,
    billing_periods,
    bucket_start,
    buckets_between,
    calendar_rows,
    next_bucket_start,
)

NY = "America/New_York"
LORD_HOWE = "Australia/Lord_Howe"
KATHMANDU = "Asia/Kathmandu"
CHATHAM = "Pacific/Chatham"
ST_JOHNS = "America/St_Johns"

ZONES = [
    "UTC",
    NY,
    LORD_HOWE,
    KATHMANDU,
    CHATHAM,
    ST_JOHNS,
    "Europe/Dublin",
    "Europe/London",
    "Europe/Berlin",
    "Atlantic/Azores",
    "America/Havana",
    "America/Santiago",
    "America/Sao_Paulo",
    "Australia/Adelaide",
    "Asia/Kolkata",
    "Asia/Tehran",
    "Pacific/Apia",
    "Africa/Casablanca",
]
CALENDAR_WINDOWS = [w for w in WINDOW_SIZES if w != "MINUTE"]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(tz: str, *args: int, fold: int = 0) -> datetime:
    """A local wall time as a UTC instant (fold=1: the second occurrence)."""
    return datetime(*args, tzinfo=ZoneInfo(tz), fold=fold).astimezone(UTC)


def walls(buckets: list[tuple[datetime, datetime]], tz: str) -> list[str]:
    return [b.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M") for b, _ in buckets]


# --------------------------------------------------------------------------------------------
# DST examples


def test_new_york_fall_back_has_two_one_oclock_hours():
    first, second = utc(2024, 11, 3, 5, 30), utc(2024, 11, 3, 6, 30)  # 01:30 EDT, 01:30 EST
    assert bucket_start(first, "HOUR", NY) == utc(2024, 11, 3, 5)
    assert bucket_start(second, "HOUR", NY) == utc(2024, 11, 3, 6)
    assert next_bucket_start(utc(2024, 11, 3, 5), "HOUR", NY) == utc(2024, 11, 3, 6)

    day = buckets_between(local(NY, 2024, 11, 3), local(NY, 2024, 11, 4), "HOUR", NY)
    assert len(day) == 25
    assert walls(day, NY)[:4] == ["11-03 00:00", "11-03 01:00", "11-03 01:00", "11-03 02:00"]
    assert all(end - start == timedelta(hours=1) for start, end in day)


def test_new_york_fall_back_three_hour_bucket_lasts_four_hours():
    start = bucket_start(utc(2024, 11, 3, 6, 30), "3HOUR", NY)
    assert start == local(NY, 2024, 11, 3, 0) == utc(2024, 11, 3, 4)
    assert next_bucket_start(start, "3HOUR", NY) == local(NY, 2024, 11, 3, 3) == utc(2024, 11, 3, 8)
    day = buckets_between(local(NY, 2024, 11, 3), local(NY, 2024, 11, 4), "DAY", NY)
    assert [(e - s) for s, e in day] == [timedelta(hours=25)]


def test_new_york_spring_forward():
    # 02:00 EST jumps to 03:00 EDT at 07:00Z
    assert bucket_start(utc(2024, 3, 10, 6, 59), "HOUR", NY) == utc(2024, 3, 10, 6)
    assert next_bucket_start(utc(2024, 3, 10, 6), "HOUR", NY) == utc(2024, 3, 10, 7)
    assert bucket_start(utc(2024, 3, 10, 7, 30), "HOUR", NY) == utc(2024, 3, 10, 7)
    three = bucket_start(utc(2024, 3, 10, 6, 30), "3HOUR", NY)
    assert (three, next_bucket_start(three, "3HOUR", NY)) == (
        utc(2024, 3, 10, 5),
        utc(2024, 3, 10, 7),
    )
    day = bucket_start(utc(2024, 3, 10, 12), "DAY", NY)
    assert next_bucket_start(day, "DAY", NY) - day == timedelta(hours=23)
    hours = buckets_between(local(NY, 2024, 3, 10), local(NY, 2024, 3, 11), "HOUR", NY)
    assert len(hours) == 23 and "03-10 02:00" not in walls(hours, NY)


def test_lord_howe_spring_forward_half_hour_gap():
    # 2024-10-06 02:00 +10:30 jumps to 02:30 +11:00, at 2024-10-05 15:30Z
    transition = utc(2024, 10, 5, 15, 30)
    assert bucket_start(utc(2024, 10, 5, 15, 45), "HOUR", LORD_HOWE) == transition
    assert next_bucket_start(transition, "HOUR", LORD_HOWE) == utc(2024, 10, 5, 16)  # 03:00
    assert bucket_start(utc(2024, 10, 5, 15, 15), "HOUR", LORD_HOWE) == utc(2024, 10, 5, 14, 30)
    assert next_bucket_start(utc(2024, 10, 5, 14, 30), "HOUR", LORD_HOWE) == transition
    assert bucket_start(utc(2024, 10, 5, 15, 45), "30MIN", LORD_HOWE) == transition
    day = bucket_start(utc(2024, 10, 6), "DAY", LORD_HOWE)
    assert day == utc(2024, 10, 5, 13, 30)
    assert next_bucket_start(day, "DAY", LORD_HOWE) - day == timedelta(hours=23, minutes=30)


def test_lord_howe_fall_back_half_hour_repeat():
    # 2024-04-07 02:00 +11:00 goes back to 01:30 +10:30, at 2024-04-06 15:00Z
    assert bucket_start(utc(2024, 4, 6, 15, 15), "HOUR", LORD_HOWE) == utc(2024, 4, 6, 14)
    assert next_bucket_start(utc(2024, 4, 6, 14), "HOUR", LORD_HOWE) == utc(2024, 4, 6, 15, 30)
    halves = buckets_between(utc(2024, 4, 6, 14), utc(2024, 4, 6, 16), "30MIN", LORD_HOWE)
    assert halves == [
        (utc(2024, 4, 6, 14), utc(2024, 4, 6, 14, 30)),  # 01:00 +11
        (utc(2024, 4, 6, 14, 30), utc(2024, 4, 6, 15)),  # 01:30 +11
        (utc(2024, 4, 6, 15), utc(2024, 4, 6, 15, 30)),  # 01:30 +10:30
        (utc(2024, 4, 6, 15, 30), utc(2024, 4, 6, 16)),  # 02:00 +10:30
    ]
    day = bucket_start(utc(2024, 4, 7), "DAY", LORD_HOWE)
    assert next_bucket_start(day, "DAY", LORD_HOWE) - day == timedelta(hours=24, minutes=30)


def test_kathmandu_quarter_hour_offset():
    ts = utc(2024, 1, 1)  # 05:45 local
    assert bucket_start(ts, "HOUR", KATHMANDU) == utc(2023, 12, 31, 23, 15)
    assert bucket_start(ts, "15MIN", KATHMANDU) == ts
    assert bucket_start(ts, "3HOUR", KATHMANDU) == utc(2023, 12, 31, 21, 15)
    assert bucket_start(ts, "DAY", KATHMANDU) == utc(2023, 12, 31, 18, 15)
    assert bucket_start(ts, "MONTH", KATHMANDU) == utc(2023, 12, 31, 18, 15)


def test_chatham_fall_back_across_an_hour_boundary_keeps_buckets_tiling():
    # 2024-04-07 03:45 +13:45 goes back to 02:45 +12:45 at 14:00Z: the repeated wall times
    # 02:45-03:45 straddle 03:00. 14:05Z reads 02:50; its hour began at 03:00 +13:45 (13:15Z),
    # not at 02:00 +13:45 (12:15Z), which had already ended: every hour stays one real hour.
    assert bucket_start(utc(2024, 4, 6, 14, 5), "HOUR", CHATHAM) == utc(2024, 4, 6, 13, 15)
    day = buckets_between(local(CHATHAM, 2024, 4, 7), local(CHATHAM, 2024, 4, 8), "HOUR", CHATHAM)
    assert len(day) == 25
    assert all(end - start == timedelta(hours=1) for start, end in day)


def test_st_johns_1995_midnight_fall_back():
    # Until 2011 Newfoundland fell back at 00:01 to 23:01, so midnight occurred twice
    # (02:30Z and 03:30Z on 1995-10-29): both are DAY boundaries, as for NY's 01:00 HOUR.
    days = buckets_between(utc(1995, 10, 28, 12), utc(1995, 10, 29, 12), "DAY", ST_JOHNS)
    assert days == [
        (utc(1995, 10, 28, 2, 30), utc(1995, 10, 29, 2, 30)),
        (utc(1995, 10, 29, 2, 30), utc(1995, 10, 29, 3, 30)),
        (utc(1995, 10, 29, 3, 30), utc(1995, 10, 30, 3, 30)),
    ]
    # 02:45Z reads 23:14 on the 28th, but the 28th had ended at the first midnight
    assert bucket_start(utc(1995, 10, 29, 2, 45), "DAY", ST_JOHNS) == utc(1995, 10, 29, 2, 30)


def test_azores_midnight_fall_back_gives_a_one_hour_day_bucket():
    # 2024-10-27 01:00 -00:00 goes back to 00:00 -01:00: midnight occurs twice, and each
    # occurrence starts a DAY bucket (the latest occurrence <= the instant, rule 3b.1)
    days = buckets_between(utc(2024, 10, 26, 12), utc(2024, 10, 27, 12), "DAY", "Atlantic/Azores")
    assert days == [
        (utc(2024, 10, 26), utc(2024, 10, 27)),
        (utc(2024, 10, 27), utc(2024, 10, 27, 1)),
        (utc(2024, 10, 27, 1), utc(2024, 10, 28, 1)),
    ]


# --------------------------------------------------------------------------------------------
# Weeks and months


@pytest.mark.parametrize(
    ("day", "monday"),
    [
        ((2024, 12, 31), (2024, 12, 30)),
        ((2025, 1, 5), (2024, 12, 30)),
        ((2021, 1, 1), (2020, 12, 28)),
        ((2023, 1, 1), (2022, 12, 26)),
        ((2023, 1, 2), (2023, 1, 2)),
    ],
)
def test_iso_weeks_across_year_end(day, monday):
    assert bucket_start(utc(*day, 15), "WEEK", "UTC") == utc(*monday)
    assert next_bucket_start(utc(*monday), "WEEK", "UTC") == utc(*monday) + timedelta(days=7)
    assert bucket_start(local(NY, *day, 15), "WEEK", NY) == local(NY, *monday)


def test_calendar_months_in_timezone():
    assert bucket_start(utc(2024, 3, 1, 3), "MONTH", NY) == local(NY, 2024, 2, 1)
    assert bucket_start(utc(2024, 3, 1, 6), "MONTH", NY) == local(NY, 2024, 3, 1)
    assert next_bucket_start(local(NY, 2024, 3, 1), "MONTH", NY) == local(NY, 2024, 4, 1)


def test_month_anchor_on_the_31st_is_clamped():
    anchor = utc(2024, 1, 31, 10)
    months = buckets_between(utc(2024, 1, 31, 10), utc(2024, 5, 1), "MONTH", "UTC", anchor)
    assert [start for start, _ in months] == [
        utc(2024, 1, 31, 10),
        utc(2024, 2, 29, 10),
        utc(2024, 3, 31, 10),
        utc(2024, 4, 30, 10),
    ]
    assert bucket_start(utc(2023, 3, 1), "MONTH", "UTC", anchor) == utc(2023, 2, 28, 10)
    assert bucket_start(utc(2023, 2, 28, 9, 59), "MONTH", "UTC", anchor) == utc(2023, 1, 31, 10)
    assert next_bucket_start(utc(2023, 2, 28, 10), "MONTH", "UTC", anchor) == utc(2023, 3, 31, 10)


def test_month_anchor_is_read_in_the_bucket_timezone():
    anchor = utc(2024, 2, 1, 3)  # 2024-01-31 22:00 in New York
    assert anchor_key(anchor, NY) == "31 22:00"
    assert anchor_key(anchor, "UTC") == "01 03:00"
    assert bucket_start(utc(2024, 3, 15), "MONTH", NY, anchor) == local(NY, 2024, 2, 29, 22)
    assert bucket_start(utc(2024, 3, 15), "MONTH", "UTC", anchor) == utc(2024, 3, 1, 3)


def test_month_anchor_seconds_are_dropped():
    with_seconds = utc(2024, 1, 15, 10, 23, 45, 5)
    assert anchor_key(with_seconds, "UTC") == "15 10:23"
    assert bucket_start(utc(2024, 2, 15, 10, 23, 30), "MONTH", "UTC", with_seconds) == utc(
        2024, 2, 15, 10, 23
    )


def test_anchor_key_round_trip():
    assert anchor_key(None, NY) == ""
    assert anchor_from_key("", NY) is None
    assert anchor_key(utc(2024, 1, 5, 4, 7), "UTC") == "05 04:07"
    for key in ["01 00:00", "31 23:59", "29 02:30", "10 02:15"]:
        for tz in (NY, LORD_HOWE, CHATHAM, "UTC"):
            assert anchor_key(anchor_from_key(key, tz), tz) == key
    # the key gives the same calendar as the anchor it came from
    anchor = utc(2024, 5, 31, 17, 42, 9)
    again = anchor_from_key(anchor_key(anchor, LORD_HOWE), LORD_HOWE)
    span = (utc(2023, 1, 1), utc(2026, 1, 1))
    assert buckets_between(*span, "MONTH", LORD_HOWE, anchor) == buckets_between(
        *span, "MONTH", LORD_HOWE, again
    )


def test_anchor_only_matters_for_month():
    anchor = utc(2024, 1, 20, 13, 7)
    ts = utc(2024, 6, 3, 11, 59)
    for window in WINDOW_SIZES:
        if window != "MONTH":
            assert bucket_start(ts, window, NY, anchor) == bucket_start(ts, window, NY)


def test_rejects_naive_datetimes_and_unknown_windows():
    with pytest.raises(ValueError):
        bucket_start(datetime(2024, 1, 1), "HOUR", "UTC")
    with pytest.raises(ValueError):
        bucket_start(utc(2024, 1, 1), "2HOUR", "UTC")


def test_accepts_str_enums():
    from enum import StrEnum

    class Window(StrEnum):
        HOUR = "HOUR"
        MONTH = "MONTH"

    assert bucket_start(utc(2024, 1, 1, 5, 5), Window.HOUR, "UTC") == utc(2024, 1, 1, 5)
    rows = calendar_rows("UTC", "", [Window.HOUR], utc(2024, 1, 1), utc(2024, 1, 1, 2))
    assert [row[2] for row in rows] == ["HOUR", "HOUR"]
    assert all(type(row[2]) is str for row in rows)


# --------------------------------------------------------------------------------------------
# Properties against a literal reading of rule 3b.1


def _literal_truncate(wall: datetime, window: str, anchor: tuple[int, int, int] | None):
    """Rule 3b.1/3b.3 on a naive wall time, written independently of the module."""
    minutes = {"MINUTE": 1, "15MIN": 15, "30MIN": 30, "HOUR": 60, "3HOUR": 180, "6HOUR": 360}
    minutes["12HOUR"] = 720
    midnight = wall.replace(hour=0, minute=0, second=0, microsecond=0)
    if window in minutes:
        of_day = wall.hour * 60 + wall.minute
        return midnight + timedelta(minutes=of_day - of_day % minutes[window])
    if window == "DAY":
        return midnight
    if window == "WEEK":
        return midnight - timedelta(days=wall.weekday())
    day, hour, minute = anchor or (1, 0, 0)
    year, month = wall.year, wall.month
    for _ in range(2):
        last = calendar.monthrange(year, month)[1]
        start = datetime(year, month, min(day, last), hour, minute)
        if start <= wall:
            return start
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    raise AssertionError("unreachable")


def _offset(zone: ZoneInfo, t: datetime) -> timedelta:
    return t.astimezone(zone).utcoffset()


def literal_bucket_start(ts: datetime, window: str, tz: str, anchor: datetime | None):
    """Truncate the wall clock, then: latest occurrence <= ts, or the gap's transition."""
    zone = ZoneInfo(tz)
    parts = None
    if anchor is not None and window == "MONTH":
        a = anchor.astimezone(zone)
        parts = (a.day, a.hour, a.minute)
    wall = _literal_truncate(ts.astimezone(zone).replace(tzinfo=None), window, parts)
    occurrences = []
    for fold in (0, 1):
        instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == wall:
            occurrences.append(instant)
    if occurrences:
        return max(o for o in occurrences if o <= ts)
    # a gap: bisect (to the second) for the instant the offset changes
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    before = _offset(zone, low)
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        middle -= timedelta(microseconds=middle.microsecond)
        if _offset(zone, middle) == before:
            low = middle
        else:
            high = middle
    return high


@cache
def offset_changes(tz: str, year: int) -> tuple[datetime, ...]:
    """Offset changes of a zone in a year: a daily scan (tzdata never changes an offset twice
    within 4 days), then the minute found by bisection."""
    zone = ZoneInfo(tz)
    changes = []
    day = utc(year, 1, 1)
    while day.year == year:
        low, high = day, day + timedelta(days=1)
        if _offset(zone, low) != _offset(zone, high):
            while high - low > timedelta(minutes=1):
                middle = low + timedelta(minutes=(high - low) // timedelta(minutes=2))
                if _offset(zone, middle) == _offset(zone, low):
                    low = middle
                else:
                    high = middle
            changes.append(high)
        day += timedelta(days=1)
    return tuple(changes)


zones = st.sampled_from(ZONES)
window_sizes = st.sampled_from(WINDOW_SIZES)
anchors = st.none() | st.builds(
    utc,
    st.just(2020),
    st.just(1),
    st.integers(1, 31),
    st.integers(0, 23),
    st.sampled_from([0, 1, 15, 30, 45, 59]),
)
any_instant = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2060, 12, 31), timezones=st.just(UTC)
)


@st.composite
def instants_in(draw, tz: str):
    """Instants 1990-2060, half of them within hours of one of the zone's offset changes."""
    if draw(st.booleans()):
        return draw(any_instant)
    year = draw(st.integers(1990, 2060))
    changes = offset_changes(tz, year)
    assume(changes)
    near = draw(st.sampled_from(changes))
    return near + timedelta(microseconds=draw(st.integers(-6 * 3600 * 10**6, 6 * 3600 * 10**6)))


@st.composite
def cases(draw):
    tz = draw(zones)
    return draw(instants_in(tz)), draw(window_sizes), tz, draw(anchors)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(cases())
def test_every_instant_lies_in_its_bucket(case):
    ts, window, tz, anchor = case
    start = bucket_start(ts, window, tz, anchor)
    end = next_bucket_start(start, window, tz, anchor)
    assert start <= ts < end
    assert bucket_start(start, window, tz, anchor) == start
    assert bucket_start(end, window, tz, anchor) == end
    assert bucket_start(end - timedelta(microseconds=1), window, tz, anchor) == start
    assert start.tzinfo == UTC and end.tzinfo == UTC


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(cases())
def test_bucket_start_follows_rule_3b1(case):
    ts, window, tz, anchor = case
    start = bucket_start(ts, window, tz, anchor)
    literal = literal_bucket_start(ts, window, tz, anchor)
    if start != literal:
        # Only where the literal reading would overlap an earlier bucket: the clock went back
        # past a boundary it had already shown (Chatham, St John's before 2011).
        zone = ZoneInfo(tz)
        assert literal < start <= ts
        assert _offset(zone, start) > _offset(zone, ts)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(cases(), st.integers(0, 10**6))
def test_buckets_between_tiles_the_range(case, length):
    start, window, tz, anchor = case
    scale = {"MINUTE": 6, "15MIN": 60, "30MIN": 120, "HOUR": 240}.get(window, 40_000)
    end = start + timedelta(seconds=length * scale // 1000)
    buckets = buckets_between(start, end, window, tz, anchor)
    if start >= end:
        assert buckets == []
        return
    assert buckets[0][0] <= start < buckets[0][1]
    assert buckets[-1][0] < end <= buckets[-1][1]
    for (_, previous_end), (following_start, _) in zip(buckets, buckets[1:], strict=False):
        assert previous_end == following_start
    for b_start, b_end in buckets:
        assert b_start < b_end
        assert bucket_start(b_start, window, tz, anchor) == b_start
        assert next_bucket_start(b_start, window, tz, anchor) == b_end


# --------------------------------------------------------------------------------------------
# Calendars


def _check_minutes(rows, tz, key, windows, span_start, span_end, step=timedelta(minutes=1)):
    by_hour: dict[tuple[str, datetime], list[tuple]] = {}
    for row in rows:
        by_hour.setdefault((row[2], row[3]), []).append(row)
    minute = span_start
    while minute < span_end:
        hour = minute.replace(minute=0, second=0, microsecond=0)
        for window in windows:
            anchor = anchor_from_key(key, tz) if window == "MONTH" else None
            found = [r for r in by_hour[(window, hour)] if r[4] <= minute < r[5]]
            start = bucket_start(minute, window, tz, anchor)
            assert [(r[4], r[5]) for r in found] == [
                (start, next_bucket_start(start, window, tz, anchor))
            ], (window, minute)
        minute += step


@pytest.mark.parametrize(
    ("tz", "day"),
    [
        (NY, (2024, 11, 3)),
        (NY, (2024, 3, 10)),
        (LORD_HOWE, (2024, 10, 5)),
        (LORD_HOWE, (2024, 4, 6)),
    ]
    + [(CHATHAM, (2024, 4, 6)), (KATHMANDU, (2024, 2, 29)), (ST_JOHNS, (1995, 10, 29))],
)
def test_calendar_rows_agree_with_bucket_start_every_minute(tz, day):
    span_start, span_end = utc(*day) - timedelta(hours=12), utc(*day) + timedelta(hours=36)
    key = "31 01:30"
    rows = calendar_rows(tz, key, list(WINDOW_SIZES), span_start, span_end)
    assert "MINUTE" not in {row[2] for row in rows}
    assert {row[1] for row in rows if row[2] != "MONTH"} == {""}
    assert {row[1] for row in rows if row[2] == "MONTH"} == {key}
    assert len(set(rows)) == len(rows)
    _check_minutes(rows, tz, key, CALENDAR_WINDOWS, span_start, span_end)


@settings(max_examples=40, deadline=None)
@given(zones, any_instant, st.sampled_from(["", "31 23:59", "15 00:00", "29 01:30"]))
def test_calendar_rows_agree_with_bucket_start_on_random_spans(tz, start, key):
    start = start.replace(second=0, microsecond=0) + timedelta(minutes=7)
    end = start + timedelta(days=3)
    rows = calendar_rows(tz, key, list(WINDOW_SIZES), start, end)
    assert min(row[3] for row in rows) == start.replace(minute=0)
    assert max(row[3] for row in rows) < end
    _check_minutes(rows, tz, key, CALENDAR_WINDOWS, start, end, step=timedelta(minutes=37))


def test_calendar_rows_row_counts():
    rows = calendar_rows(
        "UTC", "", ["HOUR", "15MIN", "DAY", "MINUTE"], utc(2024, 1, 1), utc(2024, 1, 2)
    )
    counts = {w: sum(1 for r in rows if r[2] == w) for w in ("HOUR", "15MIN", "DAY")}
    assert counts == {"HOUR": 24, "15MIN": 96, "DAY": 24}
    assert rows[0] == ("UTC", "", "HOUR", utc(2024, 1, 1), utc(2024, 1, 1), utc(2024, 1, 1, 1))


# --------------------------------------------------------------------------------------------
# Billing periods


def test_billing_periods_from_an_anchor_on_the_31st_are_not_chained():
    periods = billing_periods(utc(2024, 1, 31, 10), "UTC", utc(2024, 2, 10), utc(2024, 5, 1))
    assert periods == [
        (utc(2024, 1, 31, 10), utc(2024, 2, 29, 10)),
        (utc(2024, 2, 29, 10), utc(2024, 3, 31, 10)),
        (utc(2024, 3, 31, 10), utc(2024, 4, 30, 10)),
        (utc(2024, 4, 30, 10), utc(2024, 5, 31, 10)),
    ]


def test_billing_periods_without_anchor_are_calendar_months_in_timezone():
    periods = billing_periods(None, NY, utc(2024, 1, 15), utc(2024, 3, 1, 5))
    assert periods == [
        (local(NY, 2024, 1, 1), local(NY, 2024, 2, 1)),
        (local(NY, 2024, 2, 1), local(NY, 2024, 3, 1)),
    ]
    assert billing_periods(None, NY, utc(2024, 1, 15), utc(2024, 1, 15)) == []


def test_billing_periods_match_month_buckets():
    anchor = utc(2023, 8, 30, 4, 20)
    span = (utc(2023, 1, 1), utc(2026, 1, 1))
    for tz in (NY, LORD_HOWE, "UTC"):
        assert billing_periods(anchor, tz, *span) == buckets_between(*span, "MONTH", tz, anchor)


@pytest.mark.parametrize(
    ("period", "count", "expected_starts"),
    [
        ("QUARTERLY", 1, [(2023, 11, 30), (2024, 2, 29), (2024, 5, 31), (2024, 8, 31)]),
        ("HALF_YEARLY", 1, [(2023, 11, 30), (2024, 5, 31)]),
        ("ANNUAL", 1, [(2023, 5, 31), (2024, 5, 31)]),
        ("MONTHLY", 2, [(2024, 1, 31), (2024, 3, 31), (2024, 5, 31), (2024, 7, 31)]),
        ("WEEKLY", 1, [(2024, 2, 7), (2024, 2, 14)]),
        ("DAILY", 3, [(2024, 2, 7), (2024, 2, 10), (2024, 2, 13)]),  # 252 days after
    ],
)
def test_billing_period_kinds(period, count, expected_starts):
    anchor = utc(2023, 5, 31, 9)  # a Wednesday
    if period in ("WEEKLY", "DAILY"):
        span = (utc(2024, 2, 10), utc(2024, 2, 15))
    elif period == "MONTHLY":
        span = (utc(2024, 2, 10), utc(2024, 8, 1))
    else:
        span = (utc(2024, 2, 10), utc(2024, 9, 1))
    periods = billing_periods(anchor, "UTC", *span, period=period, count=count)
    assert [p[0] for p in periods] == [utc(*day, 9) for day in expected_starts]
    assert all(a[1] == b[0] for a, b in zip(periods, periods[1:], strict=False))
    assert periods[0][0] <= span[0] < periods[0][1] and periods[-1][0] < span[1] <= periods[-1][1]


def test_billing_periods_without_anchor_align_to_the_calendar():
    span = (utc(2024, 5, 10), utc(2024, 5, 11))
    assert billing_periods(None, "UTC", *span, period="QUARTERLY")[0] == (
        utc(2024, 4, 1),
        utc(2024, 7, 1),
    )
    assert billing_periods(None, "UTC", *span, period="ANNUAL")[0] == (
        utc(2024, 1, 1),
        utc(2025, 1, 1),
    )
    assert billing_periods(None, "UTC", *span, period="WEEKLY")[0] == (
        utc(2024, 5, 6),
        utc(2024, 5, 13),
    )


def test_billing_period_boundary_in_a_dst_gap_or_repeat():
    # anchor 02:30 on the 10th in New York: 2024-03-10 02:30 does not exist -> 03:00 EDT
    anchor = local(NY, 2024, 1, 10, 2, 30)
    periods = billing_periods(anchor, NY, utc(2024, 3, 1), utc(2024, 3, 20))
    assert periods[1][0] == utc(2024, 3, 10, 7)
    # anchor 01:30 on the 3rd: 2024-11-03 01:30 occurs twice -> the first occurrence
    anchor = local(NY, 2024, 1, 3, 1, 30)
    periods = billing_periods(anchor, NY, utc(2024, 10, 20), utc(2024, 11, 20))
    assert periods[1][0] == local(NY, 2024, 11, 3, 1, 30, fold=0) == utc(2024, 11, 3, 5, 30)


@settings(max_examples=100, deadline=None)
@given(
    zones,
    anchors,
    any_instant,
    st.integers(1, 800),
    st.sampled_from(["DAILY", "WEEKLY", "MONTHLY", "QUARTERLY", "HALF_YEARLY", "ANNUAL"]),
    st.integers(1, 3),
)
def test_billing_periods_cover_the_span(tz, anchor, start, days, period, count):
    end = start + timedelta(days=days)
    periods = billing_periods(anchor, tz, start, end, period=period, count=count)
    assert periods[0][0] <= start < periods[0][1]
    assert periods[-1][0] < end <= periods[-1][1]
    assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(periods, periods[1:], strict=False))


def test_a_day_the_zone_skipped_is_no_billing_period():
    # Samoa moved across the date line: Apia's local 2011-12-30 never happened
    periods = billing_periods(None, "Pacific/Apia", datetime(2011, 12, 28, 12, tzinfo=UTC),
                              datetime(2012, 1, 2, tzinfo=UTC), period="DAILY")
    assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(periods, periods[1:], strict=False))
    assert periods[0][0] <= datetime(2011, 12, 28, 12, tzinfo=UTC) < periods[0][1]
    assert len(periods) == 5  # the local days Dec 28, 29 and 31, Jan 1 and 2
