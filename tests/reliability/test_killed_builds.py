"""A build killed at random points and run again converges to the tables of a clean build.

`meterhouse run` runs as a real process (Dagster in process, dbt as its child). It is killed
with SIGKILL, process group and all, at random moments of ingest, dbt models, the build
record and the snapshot publish, several times in a row; a final run to completion must then
leave every table equal to a full build of the same raw events, and every landing row counted
exactly once.
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestration.build_state import build_models
from orchestration.generate import generate_dataset
from orchestration.warehouse import Warehouse, WarehouseConfig

pytestmark = pytest.mark.slow

TABLES = {
    "raw_events": "tenant_id, environment_id, ingest_seq",
    "int_events_deduplicated": "tenant_id, environment_id, event_id",
    "int_meter_events": "tenant_id, environment_id, meter_id, event_id",
    "fct_meter_usage_minutely": "tenant_id, environment_id, meter_id, external_customer_id, "
                                "group_value, minute_start",
    "fct_meter_usage": "tenant_id, environment_id, meter_id, external_customer_id, "
                       "window_size, window_start",
    "fct_priced_usage": "tenant_id, environment_id, subscription_id, price_id, period_index",
}


def _meterhouse_run(config: WarehouseConfig, catalog: Path, landing: Path,
                    kill_after: float | None) -> int | None:
    """Run `meterhouse run`; kill it (and dbt under it) after `kill_after` seconds."""
    command = [str(Path(sys.executable).parent / "meterhouse"), "run", "--catalog",
               str(catalog), "--landing", str(landing), "--warehouse", config.duckdb_path]
    environment = {**os.environ, **config.dbt_env(), "DO_NOT_TRACK": "1"}
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        return process.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return None


def _tables(warehouse: Warehouse) -> dict[str, list[tuple]]:
    return {table: [tuple(map(str, row)) for row in warehouse.query(
        f"select * from {warehouse.table(table)} order by {keys}")]
        for table, keys in TABLES.items()}


def test_builds_killed_at_random_points_converge(tmp_path):
    config = WarehouseConfig(target="duckdb", duckdb_path=str(tmp_path / "warehouse.duckdb"))
    data = generate_dataset(tmp_path / "data", events=1500, days=3, customers=10, seed=21,
                            late_fraction=0.1)
    landing = tmp_path / "landing"
    files = sorted(p for p in data.landing_dir.rglob("*") if p.is_file())
    first, later = files[: len(files) // 2], files[len(files) // 2:]

    def arrive(batch: list[Path]) -> None:
        for file in batch:
            target = landing / file.relative_to(data.landing_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(file, target)

    arrive(first)
    started = time.monotonic()
    assert _meterhouse_run(config, data.catalog_dir, landing, kill_after=None) == 0
    duration = time.monotonic() - started

    arrive(later)
    rng = random.Random(8)
    killed = 0
    for _ in range(4):  # killed at random moments of the run (ingest, dbt, record, publish)
        if _meterhouse_run(config, data.catalog_dir, landing,
                           kill_after=rng.uniform(0.5, duration)) is None:
            killed += 1
    assert killed >= 2
    assert _meterhouse_run(config, data.catalog_dir, landing, kill_after=None) == 0

    with Warehouse(config) as warehouse:
        after_kills = _tables(warehouse)
        accepted, rejected = warehouse.query(
            "select sum(rows_accepted), sum(rows_rejected) "
            f"from {warehouse.table('raw_ingested_files')}")[0]
    assert accepted + rejected == data.rows_written  # every landing row counted once
    build_models(config, full=True)
    with Warehouse(config) as warehouse:
        clean = _tables(warehouse)
    for table in TABLES:
        assert after_kills[table] == clean[table], table
