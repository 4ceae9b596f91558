"""What the last completed build covered, and what the next one must do (incremental builds).

After every successful dbt build the orchestrator records, in the warehouse:

- `build_state`: one row, the largest `ingest_seq` the build covered, a fingerprint of the
  dbt project's SQL (new SQL forces a full rebuild) and, for a batch run, the sequence its
  batch started after;
- `build_calendars`: the customers' calendars (timezone and MONTH anchor) the build used. A
  customer whose calendar changed, or who is gone, forces a full rebuild (its windows move);
  a new customer does not (it has no windows yet: its events are new);
- `build_meters`: the definition hash of every meter the build used.

The next build is then a *batch run*: dbt gets `mh_batch_from` (the recorded sequence) and
`mh_batch_to` (the largest sequence now) and every incremental model rewrites only what the
new events and changed meters touch (dbt_project/macros/incremental/incremental.sql). When
nothing is recorded, or the fingerprint changed, the build is full (`--full-refresh`).

The record is written only after dbt succeeded, so a build that dies half-way leaves the
previous record and the next run repeats the same batch; every model's delete-and-insert is
idempotent, so the tables converge to what a clean build gives.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from orchestration.warehouse import Warehouse

BUILD_STATE = "build_state"
BUILD_METERS = "build_meters"
BUILD_CALENDARS = "build_calendars"
BUILD_TABLES = {
    BUILD_STATE: "through_seq bigint, fingerprint varchar, built_at timestamptz, "
    "batch_from bigint",
    BUILD_METERS: "tenant_id varchar, environment_id varchar, meter_id varchar, "
    "definition_hash varchar",
    BUILD_CALENDARS: "tenant_id varchar, environment_id varchar, external_customer_id varchar, "
    "timezone varchar, month_anchor_key varchar",
}
DBT_MODELS_DIR = Path(__file__).resolve().parent.parent / "dbt_project"


@dataclass(frozen=True)
class BuildPlan:
    """What a build covers: a full build, or the batch of sequences (batch_from, batch_to]."""

    batch_to: int
    fingerprint: str
    batch_from: int | None = None
    rebuild: tuple[datetime, datetime] | None = None
    reason: str = ""
    meters: list[tuple[str, str, str, str]] = field(default_factory=list)
    calendars: list[tuple] = field(default_factory=list)

    @property
    def full(self) -> bool:
        return self.batch_from is None

    def dbt_vars(self) -> dict[str, object]:
        if self.full:
            return {}
        dbt_vars: dict[str, object] = {"mh_batch_from": self.batch_from,
                                       "mh_batch_to": self.batch_to}
        if self.rebuild:
            dbt_vars["mh_rebuild_from"] = self.rebuild[0].isoformat()
            dbt_vars["mh_rebuild_to"] = self.rebuild[1].isoformat()
        return dbt_vars

    def dbt_args(self) -> list[str]:
        """Arguments to add to `dbt build`."""
        import json

        if self.full:
            return ["--full-refresh"]
        # A batch run builds with the SQL of the recorded build (same fingerprint), whose
        # unit tests passed then: running them again would only add start-up time.
        return ["--vars", json.dumps(self.dbt_vars()), "--exclude-resource-type", "unit_test"]

    def describe(self) -> str:
        if self.full:
            return f"full build through ingest_seq {self.batch_to} ({self.reason})"
        text = f"batch run of ingest_seq ({self.batch_from}, {self.batch_to}]"
        if self.rebuild:
            start, end = self.rebuild
            text += f" and events from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}"
        return text


def ensure_build_tables(warehouse: Warehouse) -> None:
    for name, ddl in BUILD_TABLES.items():
        warehouse.execute(f"create table if not exists {warehouse.table(name)} ({ddl})")
    if not warehouse.is_spark:  # (Spark replaces the table on every record)
        # warehouses built before batch_from was recorded
        warehouse.execute(f"alter table {warehouse.table(BUILD_STATE)} "
                          "add column if not exists batch_from bigint")
    warehouse.commit()


def project_fingerprint() -> str:
    """A hash of the dbt project's models and macros: new SQL means a full rebuild."""
    digest = hashlib.sha256()
    paths = [path for folder in ("models", "macros")
             for path in (DBT_MODELS_DIR / folder).rglob("*")]
    for path in sorted(paths):
        if path.is_file() and path.suffix in {".sql", ".yml"}:
            digest.update(str(path.relative_to(DBT_MODELS_DIR)).encode())
            digest.update(path.read_bytes())
    digest.update((DBT_MODELS_DIR / "dbt_project.yml").read_bytes())
    return digest.hexdigest()


CALENDAR_KEYS = ("tenant_id", "environment_id", "external_customer_id")
CALENDAR_COLUMNS = (*CALENDAR_KEYS, "timezone", "month_anchor_key")


def _current_calendars(warehouse: Warehouse) -> list[tuple]:
    if not warehouse.table_exists("customer_usage_calendars"):
        return []
    return [tuple(row) for row in warehouse.query(
        f"select {', '.join(CALENDAR_COLUMNS)} "
        f"from {warehouse.table('customer_usage_calendars')}")]


def _moved_calendars(warehouse: Warehouse, calendars: list[tuple]) -> list[tuple]:
    """Customers of the last build whose calendar changed or who are gone."""
    recorded = warehouse.query(f"select {', '.join(CALENDAR_COLUMNS)} "
                               f"from {warehouse.table(BUILD_CALENDARS)}")
    current = {row[:3]: row for row in calendars}
    return [tuple(row) for row in recorded if current.get(tuple(row[:3])) != tuple(row)]


def plan_build(warehouse: Warehouse, full: bool = False,
               rebuild: tuple[datetime, datetime] | None = None) -> BuildPlan:
    """The plan of the next build from what the last completed build recorded."""
    ensure_build_tables(warehouse)
    batch_to = warehouse.query(
        f"select coalesce(max(ingest_seq), 0) from {warehouse.table('raw_events')}")[0][0]
    fingerprint = project_fingerprint()
    calendars = _current_calendars(warehouse)
    meters = [tuple(row) for row in warehouse.query(
        "select tenant_id, environment_id, meter_id, definition_hash "
        f"from {warehouse.table('catalog_meters')}")] if warehouse.table_exists(
        "catalog_meters") else []
    recorded = warehouse.query(
        f"select through_seq, fingerprint from {warehouse.table(BUILD_STATE)}")

    def full_plan(reason: str) -> BuildPlan:
        return BuildPlan(batch_to=int(batch_to), fingerprint=fingerprint, reason=reason,
                         meters=meters, calendars=calendars)

    if full:
        return full_plan("asked for")
    if not recorded:
        return full_plan("no completed build recorded")
    through_seq, recorded_fingerprint = recorded[0]
    if recorded_fingerprint != fingerprint:
        return full_plan("the dbt project changed")
    moved = _moved_calendars(warehouse, calendars)
    if moved:
        return full_plan(f"{len(moved)} customer calendar(s) changed, e.g. "
                         f"{'/'.join(moved[0][:3])}")
    return BuildPlan(batch_to=max(int(batch_to), int(through_seq)), fingerprint=fingerprint,
                     batch_from=int(through_seq), rebuild=rebuild, meters=meters,
                     calendars=calendars)


def record_build(warehouse: Warehouse, plan: BuildPlan, built_at: datetime) -> None:
    """Record a completed build (call only after dbt succeeded)."""
    ensure_build_tables(warehouse)
    state = pa.table({
        "through_seq": pa.array([plan.batch_to], pa.int64()),
        "fingerprint": pa.array([plan.fingerprint], pa.string()),
        "built_at": pa.array([built_at], pa.timestamp("us", tz="UTC")),
        # where the build's batch started (null: a full build); the serving snapshot patches
        # the previous one only when it holds exactly the build before this batch
        "batch_from": pa.array([plan.batch_from], pa.int64()),
    })
    columns = list(zip(*plan.meters, strict=True)) if plan.meters else [[], [], [], []]
    meters = pa.table({name: pa.array(values, pa.string()) for name, values in zip(
        ("tenant_id", "environment_id", "meter_id", "definition_hash"), columns, strict=True)})
    columns = (list(zip(*plan.calendars, strict=True)) if plan.calendars
               else [[] for _ in CALENDAR_COLUMNS])
    calendars = pa.table({name: pa.array(values, pa.string())
                          for name, values in zip(CALENDAR_COLUMNS, columns, strict=True)})
    with warehouse.transaction():
        warehouse.replace_arrow(BUILD_STATE, state, BUILD_TABLES[BUILD_STATE])
        warehouse.replace_arrow(BUILD_METERS, meters, BUILD_TABLES[BUILD_METERS])
        warehouse.replace_arrow(BUILD_CALENDARS, calendars, BUILD_TABLES[BUILD_CALENDARS])


def build_models(config, full: bool = False,
                 rebuild: tuple[datetime, datetime] | None = None) -> BuildPlan:
    """Plan, run `dbt build` in this process and record it (what tests and scripts call; the
    Dagster asset does the same through dagster-dbt)."""
    from datetime import UTC

    from orchestration.defs.dbt.project import run_dbt

    with Warehouse(config) as warehouse:
        plan = plan_build(warehouse, full=full, rebuild=rebuild)
    run_dbt(["build", *plan.dbt_args()], config)
    with Warehouse(config) as warehouse:
        record_build(warehouse, plan, datetime.now(UTC))
    return plan
