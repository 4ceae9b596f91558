"""The incremental workload: 1% new events landing after a full build (issue 6).

`write_increment` samples `fraction` of the distinct events already in `raw_events` (their
names, customers, sources and properties, so the mix and the customers' skew stay realistic),
gives them fresh ids and new timestamps, and writes them as one Parquet landing file per tenant
environment, in the folder of the day after the workload's last day — so the files sort after
every earlier landing file, as a new arrival does (DESIGN 3b.9):

- half arrive on time: timestamps within that new day;
- half arrive late: timestamps spread uniformly over the 30 days before it (the issue's "half
  of them late, spread over the last 30 days"; over all the days of a shorter workload).

Everything is derived from hashes of (seed, tenant, environment, event_id), so the same
warehouse and seed always give byte-identical files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, timedelta
from pathlib import Path

import duckdb

MICROS_PER_DAY = 86_400_000_000
LATE_DAYS = 30
FILE_NAME = "increment-000.parquet"


@dataclass(frozen=True)
class Increment:
    events: int
    late_events: int
    on_time_events: int
    arrival_day: str
    files: tuple[str, ...]
    earliest_late_timestamp: str | None

    def as_dict(self) -> dict:
        return {"events": self.events, "late_events": self.late_events,
                "on_time_events": self.on_time_events, "arrival_day": self.arrival_day,
                "files": list(self.files),
                "earliest_late_timestamp": self.earliest_late_timestamp}


def write_increment(warehouse: Path, landing_dir: Path, fraction: float = 0.01,
                    seed: int = 7) -> Increment:
    """Write the new events' landing files; the warehouse is only read."""
    if not 0 < fraction <= 1:
        raise ValueError("fraction must be within (0, 1]")
    con = duckdb.connect()
    try:
        con.execute("set TimeZone = 'UTC'; set enable_progress_bar = false")
        con.execute(f"attach '{warehouse}' as wh (read_only)")
        # the latest version of each distinct event, and the day after the last event
        con.execute("""
            create temp table latest as
            select * from wh.main.raw_events
            qualify row_number() over (
                partition by tenant_id, environment_id, event_id order by ingest_seq desc) = 1
        """)
        distinct, first, last = con.execute(
            "select count(*), min(event_timestamp), max(event_timestamp) from latest"
        ).fetchone()
        if not distinct:
            raise ValueError("raw_events is empty: nothing to sample the increment from")
        wanted = max(1, round(distinct * fraction))
        arrival = (last.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
                   + timedelta(days=1))
        arrival_us = int(arrival.timestamp() * 1_000_000)
        # late events go back 30 days, or to the first day of the data when it is shorter
        first_day = first.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        late_span_us = min(LATE_DAYS * MICROS_PER_DAY,
                           int((arrival - first_day).total_seconds()) * 1_000_000)
        con.execute(f"""
            create temp table increment as
            with picked as (
                select *, hash({seed}, tenant_id, environment_id, event_id) as h
                from latest
                order by h, tenant_id, environment_id, event_id
                limit {wanted}
            ),
            timed as (
                select *,
                    row_number() over (order by h, tenant_id, environment_id, event_id) as n,
                    hash(h, 'timestamp') % {MICROS_PER_DAY} as within_day,
                    hash(h, 'late') % {late_span_us} as before_arrival
                from picked
            )
            select
                tenant_id, environment_id,
                'evt_inc_' || lpad(n::varchar, 12, '0') as event_id,
                event_name, external_customer_id, customer_id, source,
                n % 2 = 0 as late,
                make_timestamptz({arrival_us}::bigint
                    + case when n % 2 = 0 then -1 - before_arrival::bigint
                           else within_day::bigint end) as event_timestamp,
                properties
            from timed
        """)
        folder_day = arrival.strftime("%Y/%m/%d")
        files = []
        for tenant, environment in con.execute(
                "select distinct tenant_id, environment_id from increment order by all"
        ).fetchall():
            folder = Path(landing_dir) / tenant / environment / folder_day
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / FILE_NAME
            con.execute(f"""
                copy (
                    select event_id, event_name, external_customer_id, customer_id, source,
                        strftime(event_timestamp, '%Y-%m-%dT%H:%M:%S.%fZ') as timestamp,
                        properties
                    from increment
                    where tenant_id = ? and environment_id = ?
                    order by event_timestamp, event_id
                ) to '{path}' (format parquet)
            """, [tenant, environment])
            files.append(str(path))
        events, late, earliest = con.execute("""
            select count(*), count(*) filter (where late),
                min(event_timestamp) filter (where late)
            from increment
        """).fetchone()
    finally:
        con.close()
    return Increment(
        events=events, late_events=late, on_time_events=events - late,
        arrival_day=arrival.date().isoformat(), files=tuple(files),
        earliest_late_timestamp=earliest.astimezone(UTC).isoformat() if earliest else None,
    )

