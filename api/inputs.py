"""Checks every range, timezone and name from a request before it reaches a query.

Each failure is a 400 whose message says what to fix. Limits come from `Settings`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import available_timezones

from api.errors import bad_request
from api.settings import Settings
from api.usage import PROPERTY_NAME
from models.windows import SUB_DAY_MINUTES

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
# The shortest length of a bucket of each window (MONTH: February), to bound point counts.
_BUCKET_MINUTES = {**SUB_DAY_MINUTES, "DAY": 1440, "WEEK": 7 * 1440, "MONTH": 28 * 1440}
_NON_PORTABLE_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones()) - _NON_PORTABLE_ZONES


def check_timezone(name: str, param: str = "timezone") -> str:
    if name not in _timezones():
        raise bad_request(f"{param}: unknown timezone {name!r}; use an IANA name such as "
                          "America/New_York or UTC", param)
    return name


def check_property_name(name: str, param: str) -> str:
    if not PROPERTY_NAME.fullmatch(name):
        raise bad_request(
            f"{param}: {name!r} is not a valid property name (1-64 characters: letters, "
            "digits, '_', '.', ':' and '-', starting with a letter, digit or '_')", param)
    return name


def utc_instant(value: datetime, param: str) -> datetime:
    """`value` as a UTC instant between 1970 and 2100, else a 400 (also when its offset pushes
    it out of Python's datetime range: 0001-01-01T00:00:00+00:01 must not be a 500)."""
    try:
        instant = value.astimezone(UTC)
    except OverflowError:
        instant = None
    if instant is None or not EARLIEST <= instant <= LATEST:
        raise bad_request(f"{param} must be between 1970 and 2100", param)
    return instant


def check_range(start: datetime, end: datetime, window: str | None, settings: Settings,
                start_param: str = "start_time", end_param: str = "end_time",
                window_param: str = "window_size") -> tuple[datetime, datetime]:
    """[start, end) as UTC instants, minute-aligned, ordered and within the limits."""
    start, end = utc_instant(start, start_param), utc_instant(end, end_param)
    for value, param in ((start, start_param), (end, end_param)):
        if value.second or value.microsecond:
            raise bad_request(f"{param} must be aligned to a whole minute (seconds and "
                              f"fractions 0), got {value.isoformat()}", param)
    if end <= start:
        raise bad_request(f"{end_param} must be after {start_param}", end_param)
    if end - start > timedelta(days=settings.max_range_days):
        raise bad_request(f"the range from {start_param} to {end_param} may span at most "
                          f"{settings.max_range_days} days", end_param)
    if window is not None:
        minutes = (end - start) // timedelta(minutes=1)
        buckets = -(-minutes // _BUCKET_MINUTES[window])
        if buckets > settings.max_points:
            longest = timedelta(minutes=settings.max_points * _BUCKET_MINUTES[window])
            raise bad_request(
                f"{window_param} {window} from {start_param} to {end_param} makes up to "
                f"{buckets} points; at most {settings.max_points} are allowed (about "
                f"{longest.days} days at {window}): use a larger window size or a shorter "
                "range", end_param)
    return start, end


def unix_seconds(text: str | None, param: str, required: bool = True) -> datetime | None:
    """A Stripe timestamp parameter: integer seconds since the epoch, minute-aligned."""
    if text is None or text == "":
        if required:
            raise bad_request(f"missing required parameter: {param}", param)
        return None
    try:
        seconds = int(text)
    except ValueError:
        raise bad_request(f"{param} must be a Unix timestamp in seconds, got {text!r}",
                          param) from None
    if seconds % 60:
        raise bad_request(f"{param} must be aligned with minute boundaries (a multiple of 60 "
                          f"seconds), got {seconds}", param)
    if not EARLIEST.timestamp() <= seconds <= LATEST.timestamp():
        raise bad_request(f"{param} must be between 1970 and 2100", param)
    return datetime.fromtimestamp(seconds, UTC)
