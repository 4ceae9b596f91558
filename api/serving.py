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

After a batch build (incremental), copying every table again would cost as much as the first
time. When the current snapshot holds exactly the build before the batch, the new one starts
as a copy of that file, and the tables the batch rewrote only in part are patched: the rows in
the batch's changed scope are deleted and copied again from the warehouse (the same scopes the
dbt models deleted and rewrote, from the same change tables); every other table is copied
whole. Patched rows sit after the sorted ones, so every MAX_PATCHES publishes the copy is made
whole and sorted again.

Without any snapshot the API falls back to opening the warehouse file read-only per request
and answers 503 while a build holds it. Postgres needs none of this: readers see committed
tables (MVCC) and dbt replaces each table inside one transaction.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from orchestration.warehouse import WarehouseConfig, duckdb_memory_limit

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
# Tables a batch build rewrites only in part, and the scopes of the rows it rewrites: the
# `mh_delete_changed` pre-hooks of their dbt models (tests/api/test_serving.py checks that they
# agree). A scope is (change table, columns matched, condition on the row).
PATCH_SCOPES = {
    "fct_meter_usage": ("window", "meter", "weighted_customer"),
    "fct_meter_usage_minutely": ("minute", "meter"),
    "fct_meter_distinct_values_minutely": ("minute", "meter"),
    "serving_meter_event_values": ("event", "meter"),
}
_SCOPES = {
    "meter": ("int_changed_meters", ("tenant_id", "environment_id", "meter_id"), ""),
    "event": ("int_event_changes", ("tenant_id", "environment_id", "event_id"), ""),
    "minute": ("int_event_changes",
               ("tenant_id", "environment_id", "external_customer_id", "minute_start"), ""),
    "window": ("int_changed_windows", ("tenant_id", "environment_id", "external_customer_id",
                                       "window_size", "window_start"), ""),
    "weighted_customer": ("int_event_changes",
                          ("tenant_id", "environment_id", "external_customer_id"),
                          "served.aggregation_type = 'WEIGHTED_SUM' and "),
}
MAX_PATCHES = 20
BUILD_STATE_PREFIX = "state_"
# Copies are sorted by the columns requests look rows up by (those of these a table has), so
# the row groups whose min/max statistics hold a series are few, in DuckDB's default row
# groups: at 10M events smaller ones cost more per lookup than they save (8,192 rows: 32 ms
# for one series of fct_meter_usage; 122,880: 7 ms).
LOOKUP_ORDER = ("tenant_id", "environment_id", "meter_id", "external_customer_id",
                "window_size", "window_start", "minute_start")
# Per table, the first and last row id of each series (tenant environment, meter, customer):
# a lookup bounded by them reads the series' rows alone (~1 ms), `api.usage.series_rows`.
# Written after every other table, then checked against the tables once more (row ids are
# positions, which a checkpoint that vacuums deleted rows may move): left out if they differ.
SERIES_ROWS = "serving_series_rows"
SERIES_KEY = LOOKUP_ORDER[:4]  # tenant_id, environment_id, meter_id, external_customer_id


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
                     keep: int = KEEP_SNAPSHOTS, patch: bool = True) -> Path:
    """Copy the tables the API reads into a new snapshot and make it current; its path.

    Run it when no other process writes the warehouse: at the end of a pipeline run (the
    process that built holds no connection by then). Readers switch atomically. With `patch`,
    a snapshot of the build before a batch run is patched instead of copied whole (module
    docstring).
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
    # the sorted copies of 45M-row tables spill beyond this (unbounded, they took 9 GB)
    conn.execute("set memory_limit = ?", [duckdb_memory_limit()])
    try:
        schema = config.schema_name
        tables = [
            row[0] for row in conn.execute(
                "select table_name from information_schema.tables "
                "where table_catalog = current_database() and table_schema = ? "
                "and table_type = 'BASE TABLE' order by table_name", [schema]).fetchall()
        ]
        served = [table for table in tables
                  if table in SERVING_TABLES or table.startswith(SERVING_PREFIXES)]
        missing = [table for table in REQUIRED_TABLES if table not in served]
        if missing:
            raise NothingToServe(
                f"schema {schema!r} of {warehouse} has no {', '.join(missing)}: "
                "nothing to serve (has the pipeline run, and is MH_SCHEMA right?)")
        build = _build_record(conn, schema, tables)
        base = _patchable(current_snapshot(folder), build, tables) if patch else None
        if base is not None:
            shutil.copyfile(base.path, scratch)
        conn.execute(f"attach {_literal(str(scratch))} as snapshot (read_write)")
        patched = []
        for table in served:
            if base is not None and table in PATCH_SCOPES and table in base.tables:
                _patch_table(conn, schema, table)
                patched.append(table)
            else:
                _copy_table(conn, schema, table)
        if base is not None:
            for table in base.tables - set(served) - {SNAPSHOT_INFO}:
                conn.execute(f"drop table snapshot.main.{_quote(table)}")
        conn.execute(f"create or replace table snapshot.main.{SNAPSHOT_INFO} as select "
                     "cast(? as timestamptz) as published_at, ? as warehouse_path, "
                     "? as tables, cast(? as bigint) as through_seq, ? as fingerprint, "
                     "? as patches, ? as patched_tables",
                     [stamp, str(warehouse), len(served), build.through_seq if build else None,
                      build.fingerprint if build else None,
                      base.patches + 1 if base is not None else 0, ", ".join(patched)])
        conn.execute("detach snapshot")
        _write_series_rows(conn, scratch)
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


@dataclass(frozen=True)
class _Build:
    """The warehouse's last completed build (orchestration/build_state.py)."""

    through_seq: int
    fingerprint: str
    batch_from: int | None


@dataclass(frozen=True)
class _Base:
    """A snapshot a new one can start from."""

    path: Path
    tables: frozenset[str]
    patches: int


def _build_record(conn, schema: str, tables: list[str]) -> _Build | None:
    """The last build's record, when the warehouse has one and its change tables."""
    if "build_state" not in tables:
        return None
    columns = {row[0] for row in conn.execute(
        "select column_name from information_schema.columns where table_catalog = "
        "current_database() and table_schema = ? and table_name = 'build_state'",
        [schema]).fetchall()}
    if "batch_from" not in columns:
        return None
    rows = conn.execute(f"select through_seq, fingerprint, batch_from "
                        f"from {_quote(schema)}.build_state").fetchall()
    if len(rows) != 1:
        return None
    through_seq, fingerprint, batch_from = rows[0]
    if any(table not in tables for table, _, _ in _SCOPES.values()):
        batch_from = None  # no change tables to patch from
    return _Build(through_seq, fingerprint, batch_from)


def _patchable(current: Path | None, build: _Build | None, tables: list[str]) -> _Base | None:
    """The current snapshot when it holds exactly the build before the last batch run."""
    import duckdb

    if current is None or build is None or build.batch_from is None:
        return None
    try:
        with duckdb.connect(str(current), read_only=True) as snapshot:
            info = snapshot.execute(
                f"select through_seq, fingerprint, patches from {SNAPSHOT_INFO}").fetchall()
            names = frozenset(row[0] for row in snapshot.execute(
                "select table_name from information_schema.tables "
                "where table_schema = 'main'").fetchall())
    except duckdb.Error:
        return None  # an older snapshot without these columns, or unreadable: copy whole
    if len(info) != 1:
        return None
    through_seq, fingerprint, patches = info[0]
    if (through_seq != build.batch_from or fingerprint != build.fingerprint
            or patches is None or patches + 1 >= MAX_PATCHES):
        return None
    return _Base(current, names, patches)


def _served_columns(conn, schema: str, table: str) -> tuple[str, list[str]]:
    """`served.*` less the build's merge states, and the table's lookup columns."""
    columns = {row[0] for row in conn.execute(
        "select column_name from information_schema.columns "
        "where table_catalog = current_database() and table_schema = ? "
        "and table_name = ?", [schema, table]).fetchall()}
    # fct_meter_usage's mergeable states are for batch builds, not for requests
    states = sorted(c for c in columns if c.startswith(BUILD_STATE_PREFIX))
    exclude = f" exclude ({', '.join(map(_quote, states))})" if states else ""
    return f"served.*{exclude}", [_quote(c) for c in LOOKUP_ORDER if c in columns]


def _copy_table(conn, schema: str, table: str) -> None:
    """The table whole, sorted by the lookup columns, without the build's merge states."""
    select, order = _served_columns(conn, schema, table)
    conn.execute(f"create or replace table snapshot.main.{_quote(table)} as "
                 f"select {select} from {_quote(schema)}.{_quote(table)} as served"
                 + (f" order by {', '.join(order)}" if order else ""))


def _in_scope(schema: str, table: str) -> str:
    """SQL: the row `served` of `table` lies in the last batch's changed scope."""
    tests = []
    for scope in PATCH_SCOPES[table]:
        changes, keys, condition = _SCOPES[scope]
        match = " and ".join(f"changed.{key} = served.{key}" for key in keys)
        tests.append(f"({condition}exists (select 1 from {_quote(schema)}.{changes} as changed "
                     f"where {match}))")
    return " or ".join(tests)


def _patch_table(conn, schema: str, table: str) -> None:
    """Rewrite the rows of the changed scope from the warehouse (the rest is unchanged),
    appended in lookup order."""
    scope = _in_scope(schema, table)
    select, order = _served_columns(conn, schema, table)
    conn.execute(f"delete from snapshot.main.{_quote(table)} as served where {scope}")
    conn.execute(f"insert into snapshot.main.{_quote(table)} by name "
                 f"select {select} from {_quote(schema)}.{_quote(table)} as served where {scope}"
                 + (f" order by {', '.join(order)}" if order else ""))


def _series_ranges(conn, database: str) -> str | None:
    """SQL: (table_name, series key, first_row, last_row) of every table of `database` that
    has the series columns; None when none has."""
    keyed = [row[0] for row in conn.execute(
        "select table_name from information_schema.columns where table_catalog = ? "
        "and table_schema = 'main' and list_contains(?, column_name) group by table_name "
        "having count(*) = ? order by table_name",
        [database, list(SERIES_KEY), len(SERIES_KEY)]).fetchall() if row[0] != SERIES_ROWS]
    if not keyed:
        return None
    key = ", ".join(SERIES_KEY)
    return " union all ".join(
        f"select {_literal(table)} as table_name, {key}, min(rowid) as first_row, "
        f"max(rowid) as last_row from {_quote(database)}.main.{_quote(table)} group by {key}"
        for table in keyed)


def _write_series_rows(conn, scratch: Path) -> None:
    """Add `SERIES_ROWS` to the finished copy at `scratch`, then check it against the copy as
    it lies on disk; a range that does not hold is never served (the table is dropped)."""
    conn.execute(f"attach {_literal(str(scratch))} as snapshot (read_write)")
    ranges = _series_ranges(conn, "snapshot")
    if ranges is None:
        conn.execute("detach snapshot")
        return
    conn.execute(f"create or replace table snapshot.main.{SERIES_ROWS} as {ranges} "
                 f"order by table_name, {', '.join(SERIES_KEY)}")
    conn.execute("detach snapshot")
    conn.execute(f"attach {_literal(str(scratch))} as snapshot (read_only)")
    ranges = _series_ranges(conn, "snapshot")  # as the file holds them now
    differ = conn.execute(
        f"select count(*) from ((from snapshot.main.{SERIES_ROWS} except all ({ranges})) "
        f"union all (({ranges}) except all from snapshot.main.{SERIES_ROWS}))").fetchone()[0]
    conn.execute("detach snapshot")
    if differ:
        conn.execute(f"attach {_literal(str(scratch))} as snapshot (read_write)")
        conn.execute(f"drop table snapshot.main.{SERIES_ROWS}")
        conn.execute("detach snapshot")


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
