"""A batch run's data tests check the rows the run rewrote, not whole tables (issue:
incremental builds): at 10 million events the grain tests of the incremental models scan tens
of millions of rows, which is most of a small batch's time. A duplicate inside the rewritten
scope still fails the batch's test; one outside it is left to the full build's tests (the
build that wrote it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestration.build_state import plan_build
from orchestration.cli import run_pipeline
from orchestration.defs.dbt.project import run_dbt
from orchestration.generate import generate_dataset
from orchestration.warehouse import Warehouse

pytestmark = pytest.mark.slow

KEYS = "tenant_id, environment_id, meter_id, external_customer_id, window_size, window_start"
IN_CHANGED_WINDOW = """exists (select 1 from int_changed_windows as c
    where c.tenant_id = u.tenant_id and c.environment_id = u.environment_id
    and c.external_customer_id = u.external_customer_id and c.window_size = u.window_size
    and c.window_start = u.window_start)"""


def _late_event(landing: Path) -> None:
    """One new event for an existing customer, a day before the newest data."""
    source = next(p for p in sorted(landing.rglob("*.jsonl")) if "late" not in p.parts)
    event = json.loads(source.read_text().splitlines()[0])
    event["event_id"] = "late_batch_test"
    late = source.parent / "late" / "one.jsonl"
    late.parent.mkdir(parents=True, exist_ok=True)
    late.write_text(json.dumps(event) + "\n")


def _failing_tests(config, dbt_vars: dict | None) -> set[str]:
    run = run_dbt(["test", "--select", "fct_meter_usage", "--exclude-resource-type", "unit_test"],
                  config, dbt_vars=dbt_vars, raise_on_failure=False)
    assert run.results, "no data test ran"
    return {node.split(".")[2].split("_fct_meter_usage")[0] for node, status, _ in run.results
            if status != "pass"}


def _duplicate_one(config, where: str) -> None:
    with Warehouse(config) as warehouse:
        warehouse.execute(f"insert into fct_meter_usage select * from fct_meter_usage as u "
                          f"where {where} order by {KEYS} limit 1")
        warehouse.commit()


def test_a_batch_run_tests_only_the_rows_it_rewrote(duckdb_config, tmp_path, monkeypatch):
    for key, value in duckdb_config.dbt_env().items():
        monkeypatch.setenv(key, value)
    data = generate_dataset(tmp_path / "data", events=400, days=2, customers=4, seed=3)
    assert run_pipeline(data.catalog_dir, data.landing_dir, "duckdb", duckdb_config.duckdb_path)
    _late_event(data.landing_dir)
    assert run_pipeline(data.catalog_dir, data.landing_dir, "duckdb", duckdb_config.duckdb_path)
    with Warehouse(duckdb_config) as warehouse:
        batch = plan_build(warehouse).dbt_vars()  # the change tables hold the last batch
        rewritten = warehouse.query(f"select count(*) from fct_meter_usage as u "
                                    f"where {IN_CHANGED_WINDOW}")[0][0]
    assert 0 < rewritten
    assert _failing_tests(duckdb_config, batch) == set()

    _duplicate_one(duckdb_config, f"not {IN_CHANGED_WINDOW}")  # a row the batch did not write
    assert _failing_tests(duckdb_config, batch) == set()
    assert _failing_tests(duckdb_config, None) == {"mh_unique_combination"}  # a full check

    _duplicate_one(duckdb_config, IN_CHANGED_WINDOW)  # a row the batch wrote
    assert _failing_tests(duckdb_config, batch) == {"mh_unique_combination"}
