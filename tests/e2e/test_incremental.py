"""Incremental builds converge to a clean build (issue: incremental builds and late events).

A history of many small batches goes through the real Dagster job — landing files arriving
in chunks, late events spread over the past, exact duplicates, corrections of ids sent in
earlier batches, a meter whose definition changes half-way, a meter added later, and a build
that dies after some models committed — and every table must then equal a single full build
of the same raw events, row for row, on DuckDB and on Postgres.
"""

import json
import os
import random
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import yaml

from api.serving import (
    PATCH_SCOPES,
    SERIES_ROWS,
    _series_ranges,
    current_snapshot,
    publish_snapshot,
    serving_dir_for,
)
from orchestration.build_state import build_models, plan_build
from orchestration.cli import run_pipeline
from orchestration.defs.dbt.project import DBT_PROJECT_DIR, dbt_environment, target_path_for
from orchestration.generate import generate_dataset
from orchestration.warehouse import Warehouse

pytestmark = pytest.mark.slow

COMPARED = {
    "int_events_deduplicated": "tenant_id, environment_id, event_id",
    "int_meter_events": "tenant_id, environment_id, meter_id, event_id",
    "fct_meter_usage_minutely": "tenant_id, environment_id, meter_id, external_customer_id, "
                                "group_value, minute_start",
    "fct_meter_distinct_values_minutely": "tenant_id, environment_id, meter_id, "
                                          "external_customer_id, minute_start, value_text",
    "fct_meter_usage": "tenant_id, environment_id, meter_id, external_customer_id, "
                       "window_size, window_start",
    "serving_meter_event_values": "tenant_id, environment_id, meter_id, event_id",
    "fct_priced_usage": "tenant_id, environment_id, subscription_id, price_id, period_index",
    "fct_unmatched_events": "tenant_id, environment_id, event_id",
}


def _tables(warehouse: Warehouse) -> dict[str, list[tuple]]:
    return {table: [tuple(map(str, row)) for row in warehouse.query(
        f"select * from {warehouse.table(table)} order by {keys}")]
        for table, keys in COMPARED.items()}


def _late_file(path: Path, rng: random.Random, sent: list[dict], now: datetime) -> int:
    """Late events over the past days, exact re-sends and corrections of earlier ids."""
    lines = []
    for event in rng.sample(sent, min(len(sent), 40)):
        late = dict(event, event_id=f"late_{rng.getrandbits(48):012x}")
        late["timestamp"] = (now - timedelta(days=rng.uniform(0, 2.5))).isoformat()
        lines.append(late)
    for event in rng.sample(sent, min(len(sent), 15)):
        lines.append(event)  # an identical re-send
    for event in rng.sample(sent, min(len(sent), 15)):
        corrected = json.loads(json.dumps(event))
        for key, value in corrected.get("properties", {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                corrected["properties"][key] = value * 2 + 1
        corrected["timestamp"] = (now - timedelta(days=rng.uniform(0, 2.5))).isoformat()
        lines.append(corrected)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return len(lines)


def _sent_events(source: Path, files: list[Path]) -> list[tuple[tuple[str, ...], dict]]:
    """(tenant and environment, event) of every well-formed JSONL line of `files`."""
    events = []
    for file in files:
        tenant_env = file.relative_to(source).parts[:2]
        if file.suffix == ".jsonl":
            for line in file.read_text().splitlines():
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(event, dict) and isinstance(event.get("event_id"), str):
                    events.append((tenant_env, event))
    return events


def _dbt_in_a_process(args: list[str], config) -> None:
    """dbt as its own process, as the Dagster job runs it (an in-process dbt would keep the
    DuckDB file locked for the job that follows)."""
    environment = {**os.environ, **dbt_environment(config)}
    command = [str(Path(sys.executable).parent / "dbt"), *args, "--project-dir",
               str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR), "--target",
               config.target, "--target-path", str(target_path_for(config))]
    subprocess.run(command, env=environment, check=True, capture_output=True)


def _change_meters(catalog_dir: Path, step: int) -> None:
    """Step 1: narrow a meter's filter (its history is recomputed). Step 2: add a meter
    (its history is backfilled). Step 3: remove it again (its rows go)."""
    path = catalog_dir / "acme_production.yaml"
    catalog = yaml.safe_load(path.read_text())
    if step == 1:
        meter = next(m for m in catalog["meters"] if m["id"] == "mtr_api_calls")
        meter["filters"] = [{"key": "method", "values": ["GET"]}]
    elif step == 3:
        catalog["meters"] = [m for m in catalog["meters"] if m["id"] != "mtr_put_calls"]
    else:
        catalog["meters"].append({
            "id": "mtr_put_calls", "name": "PUT calls", "event_name": "api_request",
            "aggregation": {"type": "COUNT"}, "filters": [{"key": "method", "values": ["PUT"]}],
            "reset_usage": "BILLING_PERIOD"})
    path.write_text(yaml.safe_dump(catalog, sort_keys=False))


def _incremental_history_equals_full_build(config, tmp_path, monkeypatch):
    for key, value in config.dbt_env().items():
        monkeypatch.setenv(key, value)
    data = generate_dataset(tmp_path / "data", events=2400, days=3, customers=12, seed=11)
    source = data.landing_dir
    landing = tmp_path / "landing"
    landing.mkdir()
    files = sorted(p for p in source.rglob("*") if p.is_file())
    chunks = [files[i::4] for i in range(4)]  # every chunk spans every tenant and day
    rng = random.Random(5)
    now = datetime(2026, 10, 1, tzinfo=UTC) + timedelta(days=3)
    sent: list[tuple[tuple[str, ...], dict]] = []
    plans = []
    for index, chunk in enumerate(chunks):
        for file in chunk:
            target = landing / file.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(file, target)
        if index > 0:
            for tenant_env in sorted({where for where, _ in sent}):
                _late_file(landing.joinpath(*tenant_env, "late", f"batch-{index}.jsonl"), rng,
                           [event for where, event in sent if where == tenant_env], now)
        if index in (1, 2, 3):
            _change_meters(data.catalog_dir, index)
        if index == 3:
            # A build that dies after the first models committed: dbt runs the batch for
            # a few models and the build is never recorded.
            assert run_pipeline(data.catalog_dir, landing, config.target, config.duckdb_path)
            extra = landing / "acme" / "production" / "late" / "batch-crash.jsonl"
            _late_file(extra, rng, [event for where, event in sent
                                    if where == ("acme", "production")], now)
            from orchestration.ingest import ingest_landing
            with Warehouse(config) as warehouse:
                ingest_landing(warehouse, landing)
                plan = plan_build(warehouse)
            assert not plan.full
            _dbt_in_a_process(["build", "--select", "+int_meter_events", *plan.dbt_args()],
                              config)
        assert run_pipeline(data.catalog_dir, landing, config.target, config.duckdb_path)
        with Warehouse(config) as warehouse:
            plans.append(plan_build(warehouse))
        sent += _sent_events(source, chunk)

    with Warehouse(config) as warehouse:
        incremental = _tables(warehouse)
        late = warehouse.query(
            f"select count(*) from {warehouse.table('raw_events')} where event_id like 'late_%'")
    assert late[0][0] > 100
    assert all(not plan.full for plan in plans)  # every build after the first was a batch run
    if config.target == "duckdb":
        _patched_snapshot_equals_a_whole_copy(config, tmp_path)
    full = build_models(config, full=True)
    assert full.full
    with Warehouse(config) as warehouse:
        rebuilt = _tables(warehouse)
    for table in COMPARED:
        assert len(incremental[table]) == len(rebuilt[table]), table
        only_incremental = sorted(set(incremental[table]) - set(rebuilt[table]), key=str)[:5]
        only_rebuilt = sorted(set(rebuilt[table]) - set(incremental[table]), key=str)[:5]
        assert incremental[table] == rebuilt[table], (table, only_incremental, only_rebuilt)
    assert len(rebuilt["fct_meter_usage"]) > 1000
    with Warehouse(config) as warehouse:  # the lookup index is Postgres's (DuckDB: zone maps)
        indexes = warehouse.query(
            "select count(*) from pg_indexes where tablename = 'serving_meter_event_values'"
            if config.target == "postgres" else "select count(*) from duckdb_indexes()")[0][0]
    assert indexes == (1 if config.target == "postgres" else 0)


def _patched_snapshot_equals_a_whole_copy(config, tmp_path: Path) -> None:
    """Each batch run's serving snapshot was patched from the previous one: table for table,
    it holds what a whole copy of the warehouse holds."""
    patched = current_snapshot(serving_dir_for(config))
    whole = publish_snapshot(config, tmp_path / "whole", patch=False)
    with duckdb.connect(str(patched), read_only=True) as conn:
        patches, patched_tables = conn.execute(
            "select patches, patched_tables from serving_snapshot_info").fetchone()
        assert patches == 4 and "fct_meter_usage" in patched_tables  # every batch run
        conn.execute(f"attach '{whole}' as whole (read_only)")
        tables = [row[0] for row in conn.execute(
            "select table_name from information_schema.tables where table_catalog = 'whole' "
            "and table_name not in ('serving_snapshot_info', ?)", [SERIES_ROWS]).fetchall()]
        assert set(PATCH_SCOPES) <= set(tables)
        for table in tables:
            differing = conn.execute(
                f"(select * from main.{table} except all select * from whole.{table}) union all "
                f"(select * from whole.{table} except all select * from main.{table})"
            ).fetchall()
            assert not differing, (table, differing[:5])
        # row ids differ between the two; each lists the row ranges of its own series exactly
        for database in ("main", "whole"):
            listed = set(conn.execute(f"select * from {database}.{SERIES_ROWS}").fetchall())
            catalog = conn.execute("select current_database()").fetchone()[0] \
                if database == "main" else database
            assert listed == set(conn.execute(_series_ranges(conn, catalog)).fetchall())


def test_incremental_history_equals_a_full_build_on_duckdb(duckdb_config, tmp_path,
                                                            monkeypatch):
    _incremental_history_equals_full_build(duckdb_config, tmp_path, monkeypatch)


@pytest.mark.postgres
def test_incremental_history_equals_a_full_build_on_postgres(pg_config, tmp_path, monkeypatch):
    _incremental_history_equals_full_build(pg_config, tmp_path, monkeypatch)
