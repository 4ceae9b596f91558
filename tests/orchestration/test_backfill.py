"""A backfill of one event day recomputes that day's events and rewrites only the windows
that contain them; the tables stay equal to what the full build gave."""

from datetime import UTC, datetime

import dagster as dg
import pytest

from orchestration.cli import run_pipeline
from orchestration.definitions import build_definitions
from orchestration.generate import generate_dataset
from orchestration.resources import MeterhouseResource
from orchestration.warehouse import Warehouse

pytestmark = pytest.mark.slow

DAY_START = datetime(2026, 10, 2, tzinfo=UTC)
DAY_END = datetime(2026, 10, 3, tzinfo=UTC)


def _usage(warehouse: Warehouse) -> list[tuple]:
    return warehouse.query(
        f"select * from {warehouse.table('fct_meter_usage')} order by tenant_id, "
        "environment_id, meter_id, external_customer_id, window_size, window_start")


def test_one_partition_rewrites_only_its_windows(duckdb_config, tmp_path, monkeypatch):
    for key, value in duckdb_config.dbt_env().items():
        monkeypatch.setenv(key, value)
    data = generate_dataset(tmp_path / "data", events=900, days=3, customers=8, seed=3)
    assert run_pipeline(data.catalog_dir, data.landing_dir, "duckdb", duckdb_config.duckdb_path)
    with Warehouse(duckdb_config) as warehouse:
        before = _usage(warehouse)
        day_events = warehouse.query(
            f"select count(distinct event_id) from {warehouse.table('raw_events')} "
            "where event_timestamp >= ? and event_timestamp < ?", [DAY_START, DAY_END])[0][0]

    resource = MeterhouseResource(catalog_dir=str(data.catalog_dir),
                                  landing_dir=str(data.landing_dir), target="duckdb",
                                  duckdb_path=duckdb_config.duckdb_path)
    job = build_definitions(resource).resolve_job_def("rebuild_event_days")
    result = job.execute_in_process(partition_key="2026-10-02",
                                    instance=dg.DagsterInstance.ephemeral())
    assert result.success

    with Warehouse(duckdb_config) as warehouse:
        changed_ids = warehouse.query(
            f"select count(distinct event_id) from {warehouse.table('int_event_changes')}")[0][0]
        windows = warehouse.query(
            f"select window_size, min(window_start), max(window_end), count(*) "
            f"from {warehouse.table('int_changed_windows')} group by 1")
        after = _usage(warehouse)
    assert day_events > 100 and changed_ids == day_events
    sizes = {size for size, *_ in windows}
    assert {"MINUTE", "HOUR", "DAY", "MONTH"} <= sizes
    for size, first_start, last_end, _ in windows:
        assert last_end > DAY_START and first_start < DAY_END, size  # every window meets the day
        if size in {"MINUTE", "15MIN", "30MIN", "HOUR"}:
            assert first_start >= DAY_START and last_end <= DAY_END, size
    assert after == before  # recomputing the day changes no number
