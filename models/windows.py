"""Time windows: bucket boundaries, calendars and billing periods (DESIGN 3 and 3b.1-3b.3).

Pure Python over the standard library's ``zoneinfo``. Every function takes and returns aware
datetimes; results are in UTC. Window sizes and billing periods are plain strings (str enums
such as ``WindowSize`` compare equal to them).

How a bucket is found (DESIGN 3b.1): read the instant's wall clock in the bucket timezone,
truncate it to the window, convert that wall time back to an instant. A wall time that occurs
twice (DST fall-back) resolves to the latest occurrence not after the instant; a wall time
that does not exist (spring-forward gap) resolves to the transition instant.

The code works with the equivalent *boundaries*: every instant whose wall clock shows an
aligned wall time (every occurrence of it), plus every transition instant whose
spring-forward gap swallows an aligned wall time. A bucket runs from one boundary to the
next; ``bucket_start`` is the latest boundary at or before the instant, ``next_bucket_start``
the earliest boundary after it. Both walk the zone's constant-offset pieces.

The two readings differ only where the literal one would make buckets overlap: a fall-back
that repeats wall times straddling a boundary which has already been shown. Pacific/Chatham
goes back from 03:45 to 02:45, so 02:50 (second time) would truncate to an HOUR bucket
02:00 that ended at 03:00; America/St_Johns went back from 00:01 to 23:01 until 2011. Here
such instants stay in the bucket that started at that boundary, and buckets always tile time.

Decisions where DESIGN is silent:
- A MONTH anchor is read to the minute (seconds and below are dropped), so an anchor and its
  ``anchor_key`` 'DD HH:MM' always give the same calendar, and every boundary is a whole minute.
- Every occurrence of a repeated boundary wall time is a boundary, for every window (NY's two
  01:00 HOURs; Atlantic/Azores, which falls back from 01:00 to 00:00, has a one-hour DAY
  bucket before a 24-hour one; an anchor at 01:30 on NY's fall-back day makes a one-hour
  MONTH bucket). ``billing_periods`` instead takes the first occurrence: a billing period
  boundary is a single instant.
- ``next_bucket_start(t)`` accepts any instant and returns the end of the bucket holding it.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

SUB_DAY_MINUTES: dict[str, int] = {
    "MINUTE": 1,
    "15MIN": 15,
    "30MIN": 30,
    "HOUR": 60,
    "3HOUR": 180,
    "6HOUR": 360,
    "12HOUR": 720,
}
WINDOW_SIZES: tuple[str, ...] = (*SUB_DAY_MINUTES, "DAY", "WEEK", "MONTH")

PERIOD_MONTHS: dict[str, int] = {"MONTHLY": 1, "QUARTERLY": 3, "HALF_YEARLY": 6, "ANNUAL": 12}
PERIOD_DAYS: dict[str, int] = {"DAILY": 1, "WEEKLY": 7}

_TICK = timedelta(microseconds=1)
_HOUR = timedelta(hours=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)  # a midnight, origin of the sub-day and DAY grids
_NAIVE_MONDAY = datetime(1970, 1, 5)  # a Monday midnight, origin of the WEEK grid
# Offset changes are located by sampling every 12 hours and bisecting to the second. tzdata
# never changes a zone's offset twice within 4 days (checked for 1900-2100), so none is missed.
_PROBE = timedelta(hours=12)


class _Spec(NamedTuple):
    """A window resolved for one zone.

    Fixed-length windows (all but MONTH) are a grid of wall times: `grid` + k * `step`.
    MONTH uses `anchor` (day-of-month, hour, minute), or the 1st at 00:00 when it is None.
    """

    window: str
    zone: ZoneInfo
    step: timedelta | None
    grid: datetime
    anchor: tuple[int, int, int] | None


# --------------------------------------------------------------------------------------------
# Public API


def bucket_start(ts: datetime, window: str, tz: str, anchor: datetime | None = None) -> datetime:
    """Start (UTC) of the `window` bucket of timezone `tz` that contains the instant `ts`.

    `anchor` only matters for MONTH: buckets then start at the anchor's local day-of-month and
    time (clamped to short months) instead of the 1st at 00:00.
    """
    return _bucket_start(_as_utc(ts), _spec(window, tz, anchor))


def next_bucket_start(
    start: datetime, window: str, tz: str, anchor: datetime | None = None
) -> datetime:
    """End (UTC) of the bucket containing `start`, i.e. the first boundary after `start`."""
    return _next_boundary(_as_utc(start), _spec(window, tz, anchor))


def buckets_between(
    start: datetime,
    end: datetime,
    window: str,
    tz: str,
    anchor: datetime | None = None,
) -> list[tuple[datetime, datetime]]:
    """Consecutive buckets [b_start, b_end) intersecting [start, end), in order.

    The first bucket may start before `start` and the last may end after `end`.
    """
    start, end = _as_utc(start), _as_utc(end)
    buckets: list[tuple[datetime, datetime]] = []
    if start >= end:
        return buckets
    spec = _spec(window, tz, anchor)
    current = _bucket_start(start, spec)
    while current < end:
        following = _next_boundary(current, spec)
        buckets.append((current, following))
        current = following
    return buckets


def anchor_key(anchor: datetime | None, tz: str) -> str:
    """'DD HH:MM' of the anchor's local day-of-month and time in `tz`; '' without an anchor."""
    if anchor is None:
        return ""
    day, hour, minute = _anchor_parts(anchor, ZoneInfo(tz))
    return f"{day:02d} {hour:02d}:{minute:02d}"


def anchor_from_key(key: str, tz: str) -> datetime | None:
    """An instant whose local day-of-month and time in `tz` are `key` ('DD HH:MM'); None for ''.

    The result gives the same MONTH buckets as the anchor the key was made from.
    """
    if not key:
        return None
    day, hour, minute = _parse_anchor_key(key)
    zone = ZoneInfo(tz)
    for month in (1, 3, 5, 7, 8, 10, 12):  # 31-day months; one of them is free of DST gaps
        wall = datetime(2001, month, day, hour, minute)
        instants = _occurrences(wall, zone)
        if instants:
            return instants[0]
    raise ValueError(f"anchor key {key!r} does not exist as a local time in {tz}")


def calendar_rows(
    tz: str,
    anchor_key: str,
    windows: list[str] | tuple[str, ...],
    span_start: datetime,
    span_end: datetime,
) -> list[tuple[str, str, str, datetime, datetime, datetime]]:
    """Rows (timezone, anchor_key, window_size, hour_start, bucket_start, bucket_end).

    One row per window (MINUTE excluded), UTC hour in [hour of span_start, span_end) and bucket
    intersecting that hour. `anchor_key` is used and stored for MONTH only ('' elsewhere).
    A minute m lies in the row with hour_start = floor_hour(m) and bucket_start <= m < bucket_end.
    """
    first_hour = _floor_hour(_as_utc(span_start))
    span_end = _as_utc(span_end)
    rows: list[tuple[str, str, str, datetime, datetime, datetime]] = []
    for window in windows:
        name = _window_name(window)
        if name == "MINUTE":
            continue
        key = anchor_key if name == "MONTH" else ""
        anchor = anchor_from_key(key, tz)
        for b_start, b_end in buckets_between(first_hour, span_end, name, tz, anchor):
            hour = max(_floor_hour(b_start), first_hour)
            while hour < b_end and hour < span_end:
                rows.append((tz, key, name, hour, b_start, b_end))
                hour += _HOUR
    return rows


def billing_periods(
    anchor: datetime | None,
    tz: str,
    span_start: datetime,
    span_end: datetime,
    period: str = "MONTHLY",
    count: int = 1,
) -> list[tuple[datetime, datetime]]:
    """Consecutive billing periods [start, end) covering [span_start, span_end), in order.

    Period i starts at the anchor's local wall time advanced by i * count periods (computed
    from the anchor each time, never chained: Jan 31 -> Feb 29 -> Mar 31), the day clamped to
    short months, read to the minute. Without an anchor the series starts at 1970-01-01 00:00
    local (1970-01-05, a Monday, for WEEKLY): calendar months, quarters, half years, years,
    days and ISO weeks. An ambiguous boundary takes its first occurrence; one inside a DST gap
    takes the transition instant, and a period whose whole wall time the zone skipped (a day
    dropped at the date line) is left out.
    """
    span_start, span_end = _as_utc(span_start), _as_utc(span_end)
    if span_start >= span_end:
        return []
    if count < 1:
        raise ValueError(f"billing period count must be >= 1, got {count}")
    zone = ZoneInfo(tz)
    name = _period_name(period)
    origin = _period_origin(anchor, zone, name)

    def start_of(index: int) -> datetime:
        return _first_instant(_period_wall(origin, name, count, index), zone)

    index = _period_index_estimate(origin, name, count, _wall(zone, span_start))
    while start_of(index) > span_start:
        index -= 1
    while start_of(index + 1) <= span_start:
        index += 1
    periods: list[tuple[datetime, datetime]] = []
    while (begin := start_of(index)) < span_end:
        end = start_of(index + 1)
        if end > begin:  # a local day the zone skipped (Apia's 2011-12-30) is no period
            periods.append((begin, end))
        index += 1
    return periods


# --------------------------------------------------------------------------------------------
# Boundaries


def _bucket_start(t: datetime, spec: _Spec) -> datetime:
    """The latest boundary <= the UTC instant `t`."""
    while True:
        local = _wall(spec.zone, t)
        aligned = _floor_wall(local, spec)
        candidate = t - (local - aligned)  # where this offset piece shows `aligned`
        changes = _offset_changes(spec.zone, candidate, t)
        if not changes:
            return candidate
        change = changes[-1]
        if _is_boundary(change, spec):
            return change
        t = change - _TICK  # the boundary lies in an earlier offset piece


def _next_boundary(t: datetime, spec: _Spec) -> datetime:
    """The earliest boundary > the UTC instant `t`."""
    while True:
        local = _wall(spec.zone, t)
        following = _next_wall(_floor_wall(local, spec), spec)  # first aligned wall > local
        candidate = t + (following - local)
        changes = _offset_changes(spec.zone, t, candidate)
        if not changes:
            return candidate
        change = changes[0]
        if _is_boundary(change, spec):
            return change
        t = change  # the offset changed first: continue from the new piece


# --------------------------------------------------------------------------------------------
# Aligned wall times (naive local datetimes)


def _floor_wall(local: datetime, spec: _Spec) -> datetime:
    """The latest aligned wall time <= `local`."""
    if spec.step is not None:
        # sub-day sizes divide a day, so a grid from a midnight (a Monday for WEEK) is
        # aligned to every local midnight: this is hour * 60 + minute floored to the size
        return local - (local - spec.grid) % spec.step
    this_month = _month_wall(local.year, local.month, spec.anchor)
    if local >= this_month:
        return this_month
    year, month = _add_months(local.year, local.month, -1)
    return _month_wall(year, month, spec.anchor)


def _next_wall(aligned: datetime, spec: _Spec) -> datetime:
    """The aligned wall time following the aligned wall time `aligned`."""
    if spec.step is not None:
        return aligned + spec.step
    year, month = _add_months(aligned.year, aligned.month, 1)
    return _month_wall(year, month, spec.anchor)


def _month_wall(year: int, month: int, anchor: tuple[int, int, int] | None) -> datetime:
    """The MONTH bucket start wall time in (year, month): the anchor day clamped, or the 1st."""
    day, hour, minute = anchor or (1, 0, 0)
    return datetime(year, month, min(day, calendar.monthrange(year, month)[1]), hour, minute)


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    years, month_index = divmod(month - 1 + months, 12)
    return year + years, month_index + 1


# --------------------------------------------------------------------------------------------
# Instants, wall clocks and offset changes


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"expected an aware datetime, got naive {value!r}")
    return value.astimezone(UTC)


def _wall(zone: ZoneInfo, t: datetime) -> datetime:
    """The naive local wall time that the UTC instant `t` shows in `zone`."""
    # plain arithmetic: datetime.replace(tzinfo=None) costs twice as much on the hot path
    return _NAIVE_EPOCH + (t - _EPOCH + t.astimezone(zone).utcoffset())


def _floor_hour(t: datetime) -> datetime:
    """The UTC hour containing the UTC instant `t`."""
    return t - (t - _EPOCH) % _HOUR


def _is_boundary(change: datetime, spec: _Spec) -> bool:
    """Whether the offset change at `change` starts a bucket.

    It does when the wall time it jumps to is aligned, or when the wall times it skips
    (a spring-forward gap [before, after)) contain an aligned one.
    """
    after = _wall(spec.zone, change)
    before = _wall(spec.zone, change - _TICK) + _TICK
    return _floor_wall(after, spec) >= min(before, after)


def _offset_changes(zone: ZoneInfo, lo: datetime, hi: datetime) -> list[datetime]:
    """The instants in (lo, hi] at which `zone`'s UTC offset changes, in order."""
    if hi <= lo:
        return []
    if lo.year == hi.year:
        in_year = _offset_changes_in_year(zone.key, lo.year)
        return [t for t in in_year if lo < t <= hi] if in_year else []
    changes: list[datetime] = []
    for year in range(lo.year, hi.year + 1):
        changes.extend(t for t in _offset_changes_in_year(zone.key, year) if lo < t <= hi)
    return changes


@lru_cache(maxsize=8192)
def _offset_changes_in_year(key: str, year: int) -> tuple[datetime, ...]:
    """The offset changes of zone `key` in the UTC calendar year `year` (cached)."""
    if not 1 < year < 9999:
        return ()
    zone = ZoneInfo(key)
    year_start = datetime(year, 1, 1, tzinfo=UTC)
    year_end = datetime(year + 1, 1, 1, tzinfo=UTC)
    changes = []
    probe = year_start - _PROBE
    offset = probe.astimezone(zone).utcoffset()
    while probe < year_end:
        following = probe + _PROBE
        following_offset = following.astimezone(zone).utcoffset()
        if following_offset != offset:
            change = _bisect_change(zone, probe, following)
            if year_start <= change < year_end:
                changes.append(change)
        probe, offset = following, following_offset
    return tuple(changes)


def _bisect_change(zone: ZoneInfo, lo: datetime, hi: datetime) -> datetime:
    """The first whole second in (lo, hi] whose offset differs from lo's (one change inside)."""
    offset = lo.astimezone(zone).utcoffset()
    low = int((lo - _EPOCH).total_seconds())
    high = int((hi - _EPOCH).total_seconds())
    while high - low > 1:
        middle = (low + high) // 2
        if (_EPOCH + timedelta(seconds=middle)).astimezone(zone).utcoffset() == offset:
            low = middle
        else:
            high = middle
    return _EPOCH + timedelta(seconds=high)


def _occurrences(wall: datetime, zone: ZoneInfo) -> list[datetime]:
    """Every instant (UTC, in order) at which `zone` shows the wall time `wall`."""
    found = set()
    for fold in (0, 1):
        instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if _wall(zone, instant) == wall:
            found.add(instant)
    return sorted(found)


def _first_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The first occurrence of `wall`, or the transition instant when it falls in a gap."""
    instants = _occurrences(wall, zone)
    if instants:
        return instants[0]
    # In a gap fold=1 reads the wall with the later offset, landing before the transition,
    # and fold=0 with the earlier offset, landing after it.
    early = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    late = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    return _offset_changes(zone, early, late)[0]


# --------------------------------------------------------------------------------------------
# Names, anchors and billing period helpers


def _window_name(window: str) -> str:
    for name in WINDOW_SIZES:
        if window == name:
            return name
    raise ValueError(f"unknown window size {window!r}; expected one of {', '.join(WINDOW_SIZES)}")


def _period_name(period: str) -> str:
    for name in (*PERIOD_MONTHS, *PERIOD_DAYS):
        if period == name:
            return name
    known = ", ".join((*PERIOD_MONTHS, *PERIOD_DAYS))
    raise ValueError(f"unknown billing period {period!r}; expected one of {known}")


def _spec(window: str, tz: str, anchor: datetime | None) -> _Spec:
    name = _window_name(window)
    zone = ZoneInfo(tz)
    if name in SUB_DAY_MINUTES:
        return _Spec(name, zone, timedelta(minutes=SUB_DAY_MINUTES[name]), _NAIVE_EPOCH, None)
    if name == "DAY":
        return _Spec(name, zone, timedelta(days=1), _NAIVE_EPOCH, None)
    if name == "WEEK":
        return _Spec(name, zone, timedelta(days=7), _NAIVE_MONDAY, None)
    parts = _anchor_parts(anchor, zone) if anchor is not None else None
    return _Spec(name, zone, None, _NAIVE_EPOCH, parts)


def _anchor_parts(anchor: datetime, zone: ZoneInfo) -> tuple[int, int, int]:
    """(day-of-month, hour, minute) of the anchor read in `zone`."""
    local = _as_utc(anchor).astimezone(zone)
    return local.day, local.hour, local.minute


def _parse_anchor_key(key: str) -> tuple[int, int, int]:
    try:
        day_text, time_text = key.split(" ")
        hour_text, minute_text = time_text.split(":")
        day, hour, minute = int(day_text), int(hour_text), int(minute_text)
    except ValueError:
        raise ValueError(f"anchor key {key!r} is not 'DD HH:MM'") from None
    if not (1 <= day <= 31 and 0 <= hour < 24 and 0 <= minute < 60):
        raise ValueError(f"anchor key {key!r} is out of range")
    return day, hour, minute


def _period_origin(anchor: datetime | None, zone: ZoneInfo, period: str) -> datetime:
    """The wall time of period 0: the anchor's local time to the minute, or the default start."""
    if anchor is not None:
        return _wall(zone, _as_utc(anchor)).replace(second=0, microsecond=0)
    if period == "WEEKLY":
        return datetime(1970, 1, 5)  # a Monday: ISO weeks
    return datetime(1970, 1, 1)


def _period_wall(origin: datetime, period: str, count: int, index: int) -> datetime:
    """The wall time at which period `index` starts (negative indexes precede the origin)."""
    if period in PERIOD_DAYS:
        return origin + timedelta(days=PERIOD_DAYS[period] * count * index)
    year, month = _add_months(origin.year, origin.month, PERIOD_MONTHS[period] * count * index)
    last_day = calendar.monthrange(year, month)[1]
    return origin.replace(year=year, month=month, day=min(origin.day, last_day))


def _period_index_estimate(origin: datetime, period: str, count: int, local: datetime) -> int:
    """An index whose period starts near the wall time `local` (refined by the caller)."""
    if period in PERIOD_DAYS:
        days = (local.date() - origin.date()).days
        return days // (PERIOD_DAYS[period] * count)
    months = (local.year - origin.year) * 12 + (local.month - origin.month)
    return months // (PERIOD_MONTHS[period] * count)


__all__ = [
    "PERIOD_DAYS",
    "PERIOD_MONTHS",
    "SUB_DAY_MINUTES",
    "WINDOW_SIZES",
    "anchor_from_key",
    "anchor_key",
    "billing_periods",
    "bucket_start",
    "buckets_between",
    "calendar_rows",
    "next_bucket_start",
]
