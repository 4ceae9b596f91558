"""The warehouse unavailable: Postgres unreachable gives `meterhouse run` a clear error (exit 4,
"unavailable", host and port named, no traceback) before anything runs, and the API a 503 in the
ErrorResponse shape on every endpoint; a DuckDB file held by another process while a snapshot
is being published leaves the previous snapshot in force, and the API keeps serving it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.serving import current_snapshot, publish_if_stale, publish_snapshot, serving_dir_for
from api.settings import Settings
from orchestration.cli import EXIT_UNAVAILABLE
from orchestration.warehouse import WarehouseConfig
from tests.api.test_serving import build_holding
from tests.reliability.tenants import key
from tests.reliability.test_isolation import requests

pytestmark = pytest.mark.slow

CATALOG = Path(__file__).parents[1] / "fixtures" / "catalog"
CLOSED_PORT = "1"


def test_meterhouse_run_without_postgres_is_a_clear_error(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    env = {**os.environ, "MH_PG_HOST": "127.0.0.1", "MH_PG_PORT": CLOSED_PORT,
           "MH_PG_DATABASE": "mh_nowhere", "DO_NOT_TRACK": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "orchestration.cli", "run", "--catalog", str(CATALOG),
         "--landing", str(landing), "--target", "postgres"],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == EXIT_UNAVAILABLE, (result.stdout, result.stderr)
    assert "cannot connect to PostgreSQL at 127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "Stack Trace" not in result.stdout + result.stderr


def test_the_api_without_postgres_is_a_503_on_every_endpoint():
    gone = WarehouseConfig(target="postgres", pg_host="127.0.0.1", pg_port=int(CLOSED_PORT),
                           pg_database="mh_nowhere")
    with TestClient(create_app(Settings(warehouse=gone)), raise_server_exceptions=False) as api:
        calls = requests("mtr_shared", "feat_shared", "cus_shared", "cust_shared")
        for method, url, body in calls + [("GET", "/v1/meters", None)]:
            response = api.request(method, url, json=body,
                                   headers={"x-api-key": key("acme", "production")})
            assert response.status_code == 503, (url, response.text)
            error = response.json()
            assert (error["code"], error["http_status_code"]) == ("service_unavailable", 503)
            assert "127.0.0.1:1" in error["message"] and "Traceback" not in response.text
            assert response.headers["retry-after"] == "1"
            if "/v1/billing/" in url:
                assert error["error"]["type"] == "api_error"


@pytest.fixture
def tenants_copy(tenants_warehouse: WarehouseConfig, tmp_path: Path) -> WarehouseConfig:
    target = tmp_path / "warehouse.duckdb"
    shutil.copy(tenants_warehouse.duckdb_path, target)
    if Path(f"{tenants_warehouse.duckdb_path}.wal").exists():
        shutil.copy(f"{tenants_warehouse.duckdb_path}.wal", f"{target}.wal")
    return WarehouseConfig(target="duckdb", duckdb_path=str(target))


def test_a_publish_while_a_build_holds_the_file_keeps_the_previous_snapshot(tenants_copy):
    first = publish_snapshot(tenants_copy)
    folder = serving_dir_for(tenants_copy, "")
    usage = requests("mtr_shared", "feat_shared", "cus_shared", "cust_shared")[0]
    headers = {"x-api-key": key("acme", "production")}
    with TestClient(create_app(Settings(warehouse=tenants_copy))) as api:
        before = api.post(usage[1], json=usage[2], headers=headers).json()
        later = first.stat().st_mtime + 10  # the warehouse changed since: the snapshot is stale
        os.utime(tenants_copy.duckdb_path, (later, later))
        with build_holding(tenants_copy.duckdb_path):
            with pytest.raises(duckdb.IOException):
                publish_snapshot(tenants_copy)
            said = publish_if_stale(tenants_copy)  # what `meterhouse serve` does at start-up
            assert f"serving the previous snapshot {first.name}" in said
            assert current_snapshot(folder) == first
            assert not list(folder.glob(".*.tmp"))  # no half-written snapshot left behind
            assert sorted(folder.glob("snapshot-*.duckdb")) == [first]
            response = api.post(usage[1], json=usage[2], headers=headers)
            assert response.status_code == 200 and response.json() == before
        second = publish_snapshot(tenants_copy)  # the build is over: publishing works again
        assert current_snapshot(folder) == second != first
        assert api.post(usage[1], json=usage[2], headers=headers).json() == before
