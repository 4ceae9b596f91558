"""The whole pipeline through Dagster, end to end, twice: re-running changes nothing.

Generated sample data (every aggregation type, three formats, duplicates, malformed lines)
goes through `meterhouse run`'s job on DuckDB and on Postgres; the reconciliation checks pass
and a second run ingests nothing and leaves every table identical.
"""

import pytest

from orchestration.cli import main, run_pipeline
from orchestration.generate import generate_dataset
from orchestration.reconcile import (
    additive_totals_mismatches,
    events_not_accounted_for,
    ingest_count_mismatches,
)
from orchestration.warehouse import Warehouse

pytestmark = pytest.mark.slow

TABLES = ("raw_events", "raw_event_rejects", "int_events_deduplicated", "int_meter_events",
          "fct_meter_usage_minutely", "fct_meter_usage", "fct_unmatched_events",
          "fct_meter_event_errors")


def _fingerprint(warehouse: Warehouse) -> dict[str, tuple]:
    prints = {}
    for table in TABLES:
        prints[table] = warehouse.query(f"select count(*) from {warehouse.table(table)}")[0]
    prints["usage"] = warehouse.query(
        f"select window_size, count(*), sum(value), sum(event_count) "
        f"from {warehouse.table('fct_meter_usage')} group by 1 order by 1")
    return prints


def _run_twice(config, tmp_path, monkeypatch):
    data = generate_dataset(tmp_path / "data", events=3000, days=3, customers=20)
    for key, value in config.dbt_env().items():
        monkeypatch.setenv(key, value)
    ok = run_pipeline(data.catalog_dir, data.landing_dir, config.target,
                      config.duckdb_path)
    assert ok
    with Warehouse(config) as warehouse:
        first = _fingerprint(warehouse)
        assert ingest_count_mismatches(warehouse) == []
        assert events_not_accounted_for(warehouse) == 0
        assert additive_totals_mismatches(warehouse) == []
        accepted, rejected = warehouse.query(
            "select sum(rows_accepted), sum(rows_rejected) "
            f"from {warehouse.table('raw_ingested_files')}")[0]
        assert accepted + rejected == data.rows_written
        assert rejected == data.malformed_written
        distinct = warehouse.query(
            f"select count(*) from {warehouse.table('int_events_deduplicated')}")[0][0]
        assert distinct == data.events_written
    assert run_pipeline(data.catalog_dir, data.landing_dir, config.target, config.duckdb_path)
    with Warehouse(config) as warehouse:
        assert _fingerprint(warehouse) == first
        files = warehouse.query(
            f"select count(*) from {warehouse.table('raw_ingested_files')}")[0][0]
        assert files == len(data.files)  # the second run ingested no file again


def test_pipeline_twice_on_duckdb(duckdb_config, tmp_path, monkeypatch):
    _run_twice(duckdb_config, tmp_path, monkeypatch)


@pytest.mark.postgres
def test_pipeline_twice_on_postgres(pg_config, tmp_path, monkeypatch):
    _run_twice(pg_config, tmp_path, monkeypatch)


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["catalog", "validate", str(tmp_path / "missing")]) != 0
    assert main(["run", "--catalog", str(tmp_path / "nope"), "--landing", str(tmp_path)]) == 3
    assert "catalog folder" in capsys.readouterr().err
