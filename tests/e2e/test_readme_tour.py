"""The README's ten-minute tour works as written: validate the example catalog, run the
pipeline, look with `meterhouse query`, ask the API what the tour's curl asks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from orchestration.cli import main
from orchestration.warehouse import WarehouseConfig

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TOUR = ROOT / "examples" / "tour"
README = (ROOT / "README.md").read_text()


def test_readme_starts_with_the_two_commands_and_keeps_the_benchmark_section():
    first_block = README.split("```bash", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in first_block.strip().splitlines()] == [
        ["make", "demo"], ["make", "test"]]
    assert "\n## Benchmark\n" in README
    for step in ("Define a meter", "Drop events", "Run the pipeline", "curl", "Flexprice SDK",
                 "dashboard", "Dagster", "dbt docs", "BI tool"):
        assert step in README, step


def test_the_readme_documents_every_mh_variable_the_code_reads():
    code = "".join(p.read_text() for folder in ("orchestration", "api")
                   for p in (ROOT / folder).rglob("*.py"))
    used = set(re.findall(r"\"(MH_[A-Z_]+)\"", code))
    documented = set(re.findall(r"`(MH_[A-Z_]+)`", README))
    assert used - documented == set()


def test_the_tour(tmp_path, capsys, monkeypatch):
    warehouse = tmp_path / "tour.duckdb"
    monkeypatch.setenv("MH_TARGET", "duckdb")
    monkeypatch.setenv("MH_DUCKDB_PATH", str(warehouse))

    assert main(["catalog", "validate", str(TOUR / "catalog")]) == 0
    assert "catalog OK" in capsys.readouterr().out

    assert main(["run", "--catalog", str(TOUR / "catalog"), "--landing", str(TOUR / "landing"),
                 "--warehouse", str(warehouse)]) == 0
    out = capsys.readouterr().out
    # progress as it happens, one line per asset, no dbt log and no colour outside a terminal
    assert re.search(r"\[\s*1/\d+\] built catalog_", out)
    assert "built fct_meter_usage\n" in out and "built serving_snapshot" in out
    assert "ingest: 1 files (0 skipped), 8 rows read" in out
    assert "checks passed)" in out.splitlines()[-1]
    assert "\x1b[" not in out and "START sql" not in out

    assert main(["query", "--customer", "cust_123", "--warehouse", str(warehouse),
                 "--from", "2026-11-25", "--to", "2026-11-26", "--window", "HOUR",
                 "--format", "json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    items = {i["meter_id"]: i for i in answer["items"]}
    # the README's numbers: DELETE is filtered out, the identical re-send is one event
    assert (items["mtr_api_calls"]["total_value"], items["mtr_api_calls"]["event_count"]) == (
        "4", 4)
    assert [p["value"] for p in items["mtr_api_calls"]["points"]] == ["3", "1"]
    assert items["mtr_tokens"]["total_value"] == "2050"

    with TestClient(create_app(Settings(warehouse=WarehouseConfig(
            target="duckdb", duckdb_path=str(warehouse))))) as api:
        response = api.post("/v1/meter-usage/analytics", headers={"x-api-key": "mh_tour_key"},
                            json={"external_customer_id": "cust_123",
                                  "meter_ids": ["mtr_api_calls"], "aggregation_type": "COUNT",
                                  "window_size": "HOUR", "start_time": "2026-11-25T05:00:00Z",
                                  "end_time": "2026-11-26T05:00:00Z"})
        assert response.status_code == 200, response.text
        assert response.json() == {"items": [{
            "meter_id": "mtr_api_calls", "aggregation_type": "COUNT", "total_value": "4",
            "event_count": 4, "points": [
                {"timestamp": "2026-11-25T14:00:00Z", "value": "3", "event_count": 3},
                {"timestamp": "2026-11-26T00:00:00Z", "value": "1", "event_count": 1}]}]}
        assert api.get("/dashboard/").status_code == 200
