"""The whole benchmark on a tiny workload (2,000 events): every phase runs in its child
process, both baselines agree with fct_meter_usage row by row, the read API answers the query
mix without an error, the incremental run stores every new event and its tables still agree
with a baseline over all events — and the agreement check does catch a wrong answer.

No timing is asserted anywhere: timings are measured by `make bench`, never tested.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from bench.agreement import compare
from bench.baselines import plan_from_catalog
from bench.run import main
from models.catalog import load_catalog_dir

pytestmark = pytest.mark.slow  # builds the dbt project

HAS_CHDB = importlib.util.find_spec("chdb") is not None


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("bench")
    code = main(["--events", "2000", "--days", "2", "--customers", "12", "--tenants", "1",
                 "--out", str(root / "work"), "--results", str(root / "results"), "--keep",
                 "--api-rate", "20", "--api-seconds", "1"])
    report = json.loads((root / "results" / "latest.json").read_text())
    return {"code": code, "report": report, "root": root}


def test_every_phase_runs_and_the_run_is_valid(bench_run: dict) -> None:
    report = bench_run["report"]
    assert bench_run["code"] == 0, report["problems"]
    assert report["valid"] and report["problems"] == []
    for phase in ("generate", "ingest", "build", "export"):
        assert report["phases"][phase]["ok"], report["phases"][phase].get("error")
    build = report["phases"]["build"]
    assert build["dbt_success"] and build["fct_meter_usage_rows"] > 0
    assert build["peak_rss_bytes"] > 0 and build["cpu_seconds"] > 0
    assert report["profile"]["available"] and report["profile"]["top_models"]
    stamped = sorted((bench_run["root"] / "results").glob("bench-*-2000.json"))
    assert len(stamped) == 1


def test_the_read_api_answers_the_mix_without_errors(bench_run: dict) -> None:
    api = bench_run["report"]["phases"]["api_load"]
    assert api["ok"] and api["server_alive_after_load"]
    assert api["errors"] == 0 and api["requests"] > 0
    assert set(api["by_kind"]) == {"usage_30d_day", "usage_1d_hour", "events_group_by"}
    assert api["one_at_a_time"]["errors"] == 0 and api["one_at_a_time"]["requests"] > 0
    assert any(t["target"].startswith("read API") for t in bench_run["report"]["results"][
        "targets"])


def test_the_incremental_run_stores_every_new_event_and_still_agrees(bench_run: dict) -> None:
    report = bench_run["report"]
    incremental = report["phases"]["incremental"]
    assert incremental["ok"] and incremental["exit_status"] == 0
    increment = incremental["increment"]
    versions = report["phases"]["build"]["raw_event_rows"]  # distinct events + corrections
    assert 0.0095 * versions <= increment["events"] <= 0.01 * versions + 1
    assert increment["late_events"] == increment["events"] // 2
    assert incremental["new_raw_event_rows"] == increment["events"]
    assert incremental["incremental_models"] is not None  # read from dbt's manifest
    # the build before it was recorded, so this was a batch run, not a second full build
    dbt_args = json.loads(Path(incremental["run_results"]).read_text())["args"]
    assert "mh_batch_from" in str(dbt_args.get("vars")), dbt_args.get("vars")
    after = report["after_incremental"]["agreement_duckdb"]
    assert after["agrees"], after
    assert after["rows_ours"] > report["agreement"]["duckdb"]["rows_ours"]
    assert report["results"]["incremental_agrees"] is True
    assert "incremental_share_of_full_build" in report["results"]


def test_the_workload_has_a_cel_meter_the_baselines_leave_out(bench_run: dict) -> None:
    report = bench_run["report"]
    assert report["phases"]["generate"]["bench_meters_added_to"]
    skipped = {(m[2], m[3]) for m in report["phases"]["export"]["skipped_meters"]}
    assert ("mtr_compute_units", "CEL expression is not in the baselines") in skipped
    con = duckdb.connect(str(bench_run["root"] / "work" / "warehouse.duckdb"), read_only=True)
    try:
        rows = con.execute("select count(*) from fct_meter_usage "
                           "where meter_id = 'mtr_compute_units'").fetchone()[0]
    finally:
        con.close()
    assert rows > 0


def test_meterhouse_bench_is_the_benchmark(capsys: pytest.CaptureFixture) -> None:
    from orchestration.cli import main as meterhouse

    with pytest.raises(SystemExit) as exit_info:
        meterhouse(["bench", "--help"])
    assert exit_info.value.code == 0
    assert "usage: meterhouse bench" in capsys.readouterr().out


def test_duckdb_baseline_agrees_with_our_tables(bench_run: dict) -> None:
    report = bench_run["report"]
    agreement = report["agreement"]["duckdb"]
    assert agreement["agrees"], agreement
    assert agreement["rows_ours"] == agreement["rows_baseline"] > 0
    windows = {row["window_size"] for row in agreement["by_window_and_type"]}
    assert len(windows) == 10
    assert "duckdb" in report["results"]["ratios"]


def test_chdb_baseline_agrees_with_our_tables(bench_run: dict) -> None:
    report = bench_run["report"]
    if not HAS_CHDB:
        assert report["baselines"]["chdb"]["skipped"]
        pytest.skip("chdb is not installed (pip install chdb): the chDB baseline was skipped")
    agreement = report["agreement"]["chdb"]
    assert agreement["agrees"], agreement
    assert agreement["rows_ours"] == agreement["rows_baseline"] > 0
    assert "chdb" in report["results"]["ratios"]


def test_the_agreement_check_catches_a_wrong_answer(bench_run: dict, tmp_path: Path) -> None:
    work = bench_run["root"] / "work"
    plan = plan_from_catalog(load_catalog_dir(work / "data" / "catalog"))
    tampered = tmp_path / "out"
    # the warehouse now holds the incremental run too: tamper with the baseline of all events
    shutil.copytree(work / "baseline_after_incremental" / "out_duckdb", tampered)
    hour = tampered / "HOUR.parquet"
    # the first valued row one unit off, the second missing
    duckdb.sql(f"""
        copy (
            select * exclude (position)
                replace (case when position = 1 then value + 1 else value end as value)
            from (
                select *, row_number() over (order by value is null, meter_id,
                    external_customer_id, window_start_epoch) as position
                from read_parquet('{hour}')
            )
            where position != 2
        ) to '{tmp_path / "hour.parquet"}' (format parquet)
    """)
    shutil.move(tmp_path / "hour.parquet", hour)

    result = compare(work / "warehouse.duckdb", "tampered", tampered, plan)

    assert not result.agrees
    assert result.value_mismatches == 1
    assert result.only_ours == 1 and result.only_baseline == 0
    assert "DISAGREES" in result.summary()


def test_the_expression_meter_is_measured_next_to_a_field_meter(bench_run: dict) -> None:
    expression = bench_run["report"]["phases"]["expression"]
    assert expression["ok"], expression.get("error")
    # both meters pair with the same api_request events
    assert expression["expression"]["pairs"] == expression["field"]["pairs"] > 0
    assert expression["expression"]["quantities"] > 0 and expression["ratio"] > 0
    assert any(t["target"].startswith("CEL expression meter")
               for t in bench_run["report"]["results"]["targets"])
