"""Serving copies of a DuckDB warehouse: what the read API reads while a build writes.

DuckDB lets one process write a database file, and while it does no other process can open
that file, not even to read. So the API does not read the warehouse file itself: after each
successful build, `publish_snapshot` copies the tables the API reads into a new file in the
serving folder (`<warehouse>.serving/` by default) and then switches the folder's `CURRENT`
pointer to it with an atomic rename. The API reads whichever snapshot `CURRENT` names,
through read-only connections, so

- a running build never blocks the API and the API never blocks a build (they use
  different files);
- new data appears atomically, all tables at once, when `CURRENT` is renamed;
- requests already running finish on the snapshot they started with (an unlinked file stays
  readable while it is open), and the oldest snapshots are removed after a few publishes.

Without any snapshot the API falls back to opening the warehouse file read-only per request
and answers 503 while a build holds it. Postgres needs none of this: readers see committed
tables (MVCC) and dbt replaces each table inside one transaction.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from orchestration.warehouse import WarehouseConfig

CURRENT = "CURRENT"
SNAPSHOT_INFO = "serving_snapshot_info"
# Tables the API reads, besides every `catalog_*` and `serving_*` table (pricing's included).
SERVING_TABLES = (
    "customer_usage_calendars",
    "customer_billing_periods",
    "subscription_billing_periods",
    "fct_meter_usage",
    "fct_meter_usage_minutely",
    "fct_meter_distinct_values_minutely",
)
SERVING_PREFIXES = ("catalog_", "serving_")
# Without these nothing can be answered (not even authenticated): never publish a copy
# that lacks them, whatever schema the configuration names.
REQUIRED_TABLES = ("catalog_api_keys", "catalog_meters", "fct_meter_usage_minutely")


class NothingToServe(RuntimeError):
    """The warehouse (in the configured schema) lacks the tables the API needs."""
KEEP_SNAPSHOTS = 3
BUILD_STATE_PREFIX = "state_"
# Copies are sorted by the columns requests look rows up by (those of these a table has), in
# small row groups: a request then reads the few row groups whose min/max statistics hold its
# series instead of scanning the table (~1 ms instead of ~15 ms per lookup at 4M rows).
LOOKUP_ORDER = ("tenant_id", "environment_id", "meter_id", "external_customer_id",
                "window_size", "window_start", "minute_start")
SNAPSHOT_ROW_GROUP_SIZE = 8192


def serving_dir_for(config: WarehouseConfig, serving_dir: str | Path = "") -> Path:
    """The folder of a DuckDB warehouse's serving copies."""
    if serving_dir:
        return Path(serving_dir)
    return Path(f"{Path(config.duckdb_path).resolve()}.serving")


def current_snapshot(folder: Path) -> Path | None:
    """The snapshot `CURRENT` names, or None when nothing was published (or it is gone)."""
    try:
        name = (folder / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    path = folder / name
    return path if name and path.exists() else None


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def publish_snapshot(config: WarehouseConfig, serving_dir: str | Path = "",
                     keep: int = KEEP_SNAPSHOTS) -> Path:
    """Copy the tables the API reads into a new snapshot and make it current; its path.

    Run it when no other process writes the warehouse: at the end of a pipeline run (the
    process that built holds no connection by then). Readers switch atomically.
    """
    import duckdb

    if config.target != "duckdb":
        raise ValueError("serving snapshots are for DuckDB warehouses; Postgres serves directly")
    warehouse = Path(config.duckdb_path).resolve()
    if not warehouse.exists():
        raise FileNotFoundError(f"warehouse {warehouse} does not exist; run the pipeline first")
    folder = serving_dir_for(config, serving_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC)
    name = f"snapshot-{stamp:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.duckdb"
    scratch = folder / f".{name}.tmp"
    # Open the warehouse read-only and attach the new file to copy into. A build that just
    # ran in this process may still hold the warehouse read-write: share that instance then.
    try:
        conn = duckdb.connect(str(warehouse), read_only=True)
    except duckdb.ConnectionException:
        conn = duckdb.connect(str(warehouse))
    try:
        conn.execute(f"attach {_literal(str(scratch))} as snapshot "
                     f"(read_write, row_group_size {SNAPSHOT_ROW_GROUP_SIZE})")
        tables = [
            row[0] for row in conn.execute(
                "select table_name from information_schema.tables "
                "where table_catalog = current_database() and table_schema = ? "
                "and table_type = 'BASE TABLE' order by table_name",
                [config.schema_name],
            ).fetchall()
            if row[0] in SERVING_TABLES or row[0].startswith(SERVING_PREFIXES)
        ]
        missing = [table for table in REQUIRED_TABLES if table not in tables]
        if missing:
            raise NothingToServe(
                f"schema {config.schema_name!r} of {warehouse} has no {', '.join(missing)}: "
                "nothing to serve (has the pipeline run, and is MH_SCHEMA right?)")
        source_schema = _quote(config.schema_name)
        for table in tables:
            columns = {row[0] for row in conn.execute(
                "select column_name from information_schema.columns "
                "where table_catalog = current_database() and table_schema = ? "
                "and table_name = ?", [config.schema_name, table]).fetchall()}
            order = [_quote(c) for c in LOOKUP_ORDER if c in columns]
            # fct_meter_usage's mergeable states are for batch builds, not for requests
            states = sorted(c for c in columns if c.startswith(BUILD_STATE_PREFIX))
            exclude = f" exclude ({', '.join(map(_quote, states))})" if states else ""
            conn.execute(f"create table snapshot.main.{_quote(table)} as "
                         f"select *{exclude} from {source_schema}.{_quote(table)}"
                         + (f" order by {', '.join(order)}" if order else ""))
        conn.execute(f"create table snapshot.main.{SNAPSHOT_INFO} as select "
                     "cast(? as timestamptz) as published_at, ? as warehouse_path, "
                     "? as tables", [stamp, str(warehouse), len(tables)])
        conn.execute("detach snapshot")
    except BaseException:
        conn.close()
        scratch.unlink(missing_ok=True)
        raise
    conn.close()
    snapshot = folder / name
    os.replace(scratch, snapshot)
    pointer = folder / f".{CURRENT}.{uuid.uuid4().hex[:8]}.tmp"
    pointer.write_text(name + "\n")
    os.replace(pointer, folder / CURRENT)
    _prune(folder, snapshot, keep)
    return snapshot


def _prune(folder: Path, current: Path, keep: int) -> None:
    """Remove all but the `keep` newest snapshots (never the current one) and stale scratch.

    Readers holding an older snapshot open keep reading it: an unlinked file lives on until
    its last connection closes.
    """
    snapshots = sorted(folder.glob("snapshot-*.duckdb"), reverse=True)
    for old in snapshots[max(keep, 1):]:
        if old != current:
            old.unlink(missing_ok=True)
            Path(f"{old}.wal").unlink(missing_ok=True)
    for scratch in folder.glob(".snapshot-*.tmp"):
        if time.time() - scratch.stat().st_mtime > 3600:  # a publish that died long ago
            scratch.unlink(missing_ok=True)


def _modified(path: Path) -> float:
    """Last change of a DuckDB file, its write-ahead log included."""
    times = [p.stat().st_mtime for p in (path, Path(f"{path}.wal")) if p.exists()]
    return max(times, default=0.0)


def publish_if_stale(config: WarehouseConfig, serving_dir: str | Path = "") -> str:
    """Publish a snapshot unless the current one is newer than the warehouse; what happened.

    For `meterhouse serve` start-up. It opens the warehouse only when the snapshot is stale,
    and a build holding the warehouse makes it keep the previous snapshot.
    """
    import duckdb

    warehouse = Path(config.duckdb_path).resolve()
    folder = serving_dir_for(config, serving_dir)
    current = current_snapshot(folder)
    if not warehouse.exists():
        return f"no warehouse at {warehouse} yet: requests get 503 until the pipeline has run"
    if current is not None and _modified(current) >= _modified(warehouse):
        return f"serving snapshot {current.name} (up to date)"
    try:
        snapshot = publish_snapshot(config, serving_dir)
    except NothingToServe as exc:
        if current is not None:
            return f"{exc}; serving the previous snapshot {current.name}"
        return f"{exc}; requests get 503 until it is built"
    except (duckdb.IOException, duckdb.ConnectionException) as exc:
        if current is not None:
            return f"warehouse busy ({exc}); serving the previous snapshot {current.name}"
        return (f"warehouse busy ({exc}); no snapshot yet, requests read the warehouse "
                "directly and get 503 while it is written")
    return f"published serving snapshot {snapshot.name}"
