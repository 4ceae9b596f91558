"""The baselines' hand-written local bucketing agrees with the reference (models.windows) on
the days that break naive SQL: DST fall-backs (repeated wall times), spring-forward gaps
(New York's whole hour, Lord Howe's half hour), half-hour and 45-minute offsets, and MONTH
anchors clamped to short months — in DuckDB and, when installed, in chDB.
"""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from functools import cache

import pyarrow as pa
import pytest

from bench.baselines import BaselinePlan, _bucket_start_columns, _offset
from models import windows

TIMEZONES = ("UTC", "America/New_York", "Australia/Lord_Howe", "Europe/Berlin",
             "Asia/Kathmandu")
TRANSITIONS = (  # instants near which the offsets of the zones above change (2026)
    datetime(2026, 3, 8, 7, 0, tzinfo=UTC),      # New York springs forward 02:00 -> 03:00
    datetime(2026, 11, 1, 6, 0, tzinfo=UTC),     # New York falls back 02:00 -> 01:00
    datetime(2026, 4, 4, 15, 0, tzinfo=UTC),     # Lord Howe falls back 02:00 -> 01:30
    datetime(2026, 10, 3, 15, 30, tzinfo=UTC),   # Lord Howe springs forward 02:00 -> 02:30
    datetime(2026, 10, 25, 1, 0, tzinfo=UTC),    # Berlin falls back 03:00 -> 02:00
    datetime(2026, 3, 1, 0, 0, tzinfo=UTC),      # month ends: anchors clamped to Feb 28
)
ANCHORS = ((1, 0, 0), (31, 0, 0), (15, 9, 30), (30, 2, 15))


def _cases() -> list[dict]:
    """Every 17th minute from 20 hours before to 20 hours after each transition, and the
    minutes around it."""
    minutes = set()
    for transition in TRANSITIONS:
        minutes.update(transition + timedelta(minutes=m) for m in (-61, -60, -31, -30, -1, 0, 1))
        minute = transition - timedelta(hours=20)
        while minute < transition + timedelta(hours=20):
            minutes.add(minute)
            minute += timedelta(minutes=17)
    return [
        {"t": int(minute.timestamp()), "tz_id": tz_id, "anchor_day": day, "anchor_hour": hour,
         "anchor_minute": minute_of_hour}
        for minute in sorted(minutes)
        for tz_id in range(len(TIMEZONES))
        for day, hour, minute_of_hour in ANCHORS
    ]


@cache
def _expected(t: int, tz_id: int, anchor: tuple[int, int, int] | None, window: str) -> int:
    tz = TIMEZONES[tz_id]
    anchor_at = windows.anchor_from_key(f"{anchor[0]:02d} {anchor[1]:02d}:{anchor[2]:02d}", tz)
    instant = datetime.fromtimestamp(t, UTC)
    return int(windows.bucket_start(instant, window, tz, anchor_at).timestamp())


def _plan() -> BaselinePlan:
    return BaselinePlan((), (), (), TIMEZONES, pa.table({}))


def _query(engine: str, window: str) -> str:
    plan = _plan()
    return (f"select t, tz_id, anchor_day, anchor_hour, anchor_minute, "
            f"{_bucket_start_columns(plan, window, engine)} "
            f"from (select *, {_offset(plan, engine, 't')} as off_t from cases) "
            f"order by t, tz_id, anchor_day, anchor_hour, anchor_minute")


def _check(rows: list[tuple], window: str) -> None:
    wrong = []
    for row in rows:
        t, tz_id, *anchor = row[:5]
        # only MONTH depends on the anchor
        expected = _expected(t, tz_id, tuple(anchor) if window == "MONTH" else (1, 0, 0),
                             window)
        if row[-1] != expected:
            wrong.append((TIMEZONES[tz_id], datetime.fromtimestamp(t, UTC).isoformat(),
                          tuple(anchor), row[-1], expected))
    assert not wrong, f"{len(wrong)} of {len(rows)} {window} buckets differ, e.g. {wrong[:3]}"


@pytest.fixture(scope="module")
def cases() -> pa.Table:
    return pa.Table.from_pylist(_cases())


@pytest.mark.parametrize("window", windows.WINDOW_SIZES)
def test_duckdb_buckets_match_the_reference(cases: pa.Table, window: str) -> None:
    import duckdb

    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.register("cases", cases)
    rows = [r[:5] + (r[-1],) for r in con.execute(_query("duckdb", window)).fetchall()]
    _check(rows, window)


@pytest.mark.parametrize("window", windows.WINDOW_SIZES)
def test_chdb_buckets_match_the_reference(cases: pa.Table, window: str, tmp_path) -> None:
    if importlib.util.find_spec("chdb") is None:
        pytest.skip("chdb is not installed (pip install chdb): the chDB baseline is not tested")
    import pyarrow.parquet as pq
    from chdb import session


    path = tmp_path / "cases.parquet"
    pq.write_table(cases, path)
    conn = session.Session()
    try:
        sql = _query("clickhouse", window).replace("from cases", f"from file('{path}', Parquet)")
        text = str(conn.query(sql, "CSV"))
    finally:
        conn.close()
    rows = [tuple(int(v) for v in line.split(",")) for line in text.split()]
    rows = [r[:5] + (r[-1],) for r in rows]
    _check(rows, window)
