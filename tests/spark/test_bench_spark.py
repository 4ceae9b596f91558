"""The benchmark's Spark step: the same workload through `meterhouse run --target spark`,
timed for the record, and its fct_meter_usage equal to DuckDB's per window size."""

from __future__ import annotations

import json
import os

import pytest

from bench.run import main
from orchestration.spark import spark_missing

pytestmark = pytest.mark.slow


def test_the_benchmark_reports_spark_beside_duckdb(tmp_path):
    reason = spark_missing()
    if reason:
        if os.environ.get("MH_REQUIRE_SPARK") == "1":
            pytest.fail(f"Spark cannot run here: {reason} (MH_REQUIRE_SPARK=1)", pytrace=False)
        pytest.skip(f"Spark cannot run here: {reason}")
    code = main(["--events", "1500", "--days", "2", "--customers", "8", "--tenants", "1",
                 "--out", str(tmp_path / "work"), "--results", str(tmp_path / "results"),
                 "--skip-baselines", "--skip-api", "--skip-incremental", "--spark"])
    report = json.loads((tmp_path / "results" / "latest.json").read_text())
    spark = report["phases"]["spark_build"]
    assert spark["ok"], spark.get("error")
    assert spark["agrees_with_duckdb"] and spark["fct_meter_usage_rows"] > 1000
    assert "local Spark: `meterhouse run`" in report["results"]["spark_record"]
    assert code == 0 and report["valid"], report["problems"]
