"""Serving while a build writes (DuckDB): the API reads published snapshots, never the file a
build holds; new data appears all at once when a snapshot is published; without a snapshot a
locked warehouse is a clear 503."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.serving import (
    CURRENT,
    PATCH_SCOPES,
    SERIES_ROWS,
    NothingToServe,
    _series_ranges,
    current_snapshot,
    publish_if_stale,
    publish_snapshot,
)
from api.settings import Settings
from orchestration.defs.dbt.project import DBT_PROJECT_DIR
from orchestration.warehouse import WarehouseConfig
from tests.api.data import T0, T1, acme, iso, sha

pytestmark = pytest.mark.slow

BODY = {"external_customer_id": "cust_1", "meter_ids": ["mtr_tokens"],
        "aggregation_type": "SUM", "start_time": iso(T0), "end_time": iso(T1)}
HOLD_LOCK = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1])
conn.execute("begin transaction")
conn.execute("create table build_in_progress (a integer)")
print("locked", flush=True)
time.sleep(60)
"""


@pytest.fixture
def warehouse_copy(duckdb_warehouse: WarehouseConfig, tmp_path: Path) -> WarehouseConfig:
    """A private copy of the session's warehouse (no snapshot yet)."""
    source = Path(duckdb_warehouse.duckdb_path)
    target = tmp_path / "warehouse.duckdb"
    shutil.copy(source, target)
    if Path(f"{source}.wal").exists():
        shutil.copy(f"{source}.wal", f"{target}.wal")
    return WarehouseConfig(target="duckdb", duckdb_path=str(target))


@contextmanager
def build_holding(path: str) -> Iterator[None]:
    """Another process writing the warehouse, as dbt does during a build."""
    process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, path], stdout=subprocess.PIPE,
                               text=True)
    try:
        assert process.stdout.readline().strip() == "locked"
        with pytest.raises(duckdb.IOException):
            duckdb.connect(path, read_only=True)  # nobody else can open it now
        yield
    finally:
        process.kill()
        process.wait(timeout=10)


def usage_total(client: TestClient, headers: dict | None = None):
    response = client.post("/v1/meter-usage/analytics", headers=headers or acme(), json=BODY)
    return response.status_code, response.json()


def test_the_api_answers_from_the_snapshot_while_a_build_holds_the_warehouse(warehouse_copy):
    publish_snapshot(warehouse_copy)
    with TestClient(create_app(Settings(warehouse=warehouse_copy))) as client:
        status, before = usage_total(client)
        assert status == 200
        with build_holding(warehouse_copy.duckdb_path):
            for _ in range(3):
                assert usage_total(client) == (200, before)


def test_the_api_keeps_answering_under_load_while_a_build_holds_the_warehouse(warehouse_copy):
    """Loopback load (a real server, 8 concurrent clients) during a build: every answer is the
    last complete data, none fails."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.api.server import running_server

    publish_snapshot(warehouse_copy)
    with running_server(["--warehouse", warehouse_copy.duckdb_path]) as http:
        expected = http.post("/v1/meter-usage/analytics", headers=acme(), json=BODY).json()
        with build_holding(warehouse_copy.duckdb_path), ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(
                lambda _: http.post("/v1/meter-usage/analytics", headers=acme(), json=BODY),
                range(120)))
    assert [answer.status_code for answer in answers] == [200] * 120
    assert all(answer.json() == expected for answer in answers)


def test_without_a_snapshot_a_locked_warehouse_is_a_503(warehouse_copy):
    with TestClient(create_app(Settings(warehouse=warehouse_copy))) as client:
        assert usage_total(client)[0] == 200  # read directly, read-only, per request
        with build_holding(warehouse_copy.duckdb_path):
            status, error = usage_total(client)
            assert status == 503
            assert error["code"] == "service_unavailable"
            assert "being written by a build" in error["message"]
        assert usage_total(client)[0] == 200


def test_new_data_appears_atomically_when_a_snapshot_is_published(warehouse_copy):
    publish_snapshot(warehouse_copy)
    new_key = "mh_test_acme_new"
    with duckdb.connect(warehouse_copy.duckdb_path) as conn:  # a build changes the catalog
        conn.execute("insert into catalog_api_keys values ('acme', 'production', 'new', ?, "
                     "false)", [sha(new_key)])
    with TestClient(create_app(Settings(warehouse=warehouse_copy))) as client:
        assert usage_total(client, {"x-api-key": new_key})[0] == 401  # not published yet
        publish_snapshot(warehouse_copy)
        assert usage_total(client, {"x-api-key": new_key})[0] == 200
        assert usage_total(client)[0] == 200


def test_publishing_keeps_a_few_snapshots_and_a_pointer(warehouse_copy):
    folder = Path(f"{warehouse_copy.duckdb_path}.serving")
    published = [publish_snapshot(warehouse_copy) for _ in range(5)]
    assert current_snapshot(folder) == published[-1]
    assert (folder / CURRENT).read_text().strip() == published[-1].name
    assert sorted(folder.glob("snapshot-*.duckdb")) == sorted(published[-3:])
    with duckdb.connect(str(published[-1]), read_only=True) as conn:
        tables = {r[0] for r in conn.execute("show tables").fetchall()}
    assert {"fct_meter_usage_minutely", "serving_meter_event_values", "catalog_api_keys",
            "customer_billing_periods", "subscription_billing_periods", "catalog_prices",
            "serving_snapshot_info"} <= tables
    assert "raw_events" not in tables


def test_serve_start_up_publishes_only_when_stale(warehouse_copy):
    assert publish_if_stale(warehouse_copy).startswith("published")
    assert publish_if_stale(warehouse_copy).endswith("(up to date)")
    later = time.time() + 5
    os.utime(warehouse_copy.duckdb_path, (later, later))
    with build_holding(warehouse_copy.duckdb_path):
        assert "serving the previous snapshot" in publish_if_stale(warehouse_copy)
    assert publish_if_stale(warehouse_copy).startswith("published")


def test_a_schema_without_the_api_tables_never_replaces_a_good_snapshot(warehouse_copy):
    """The flake of test_meterhouse_serve_on_duckdb: a server that inherited another
    warehouse's MH_SCHEMA found its snapshot stale and published an empty copy, so every
    request was a 503 "catalog_api_keys does not exist". Such a copy is never published."""
    good = publish_snapshot(warehouse_copy)
    wrong = WarehouseConfig(target="duckdb", duckdb_path=warehouse_copy.duckdb_path,
                            schema="meterhouse")
    with pytest.raises(NothingToServe, match="catalog_api_keys"):
        publish_snapshot(wrong)
    later = time.time() + 5
    os.utime(warehouse_copy.duckdb_path, (later, later))  # the snapshot looks stale
    assert "serving the previous snapshot" in publish_if_stale(wrong)
    folder = Path(f"{warehouse_copy.duckdb_path}.serving")
    assert current_snapshot(folder) == good
    assert not list(folder.glob(".snapshot-*"))  # no scratch file left behind
    with TestClient(create_app(Settings(warehouse=wrong))) as client:
        assert usage_total(client)[0] == 200


def test_a_missing_warehouse_is_a_503(tmp_path):
    config = WarehouseConfig(target="duckdb", duckdb_path=str(tmp_path / "none.duckdb"))
    with TestClient(create_app(Settings(warehouse=config))) as client:
        status, error = usage_total(client)
    assert status == 503 and "does not exist yet" in error["message"]
    assert not (tmp_path / "none.duckdb").exists()  # the API never creates a warehouse


def test_patch_scopes_are_the_scopes_the_models_rewrite():
    """A patched snapshot rewrites exactly the rows the batch run's models deleted and
    inserted: PATCH_SCOPES must name the scopes of their `mh_delete_changed` pre-hooks."""
    models = DBT_PROJECT_DIR / "models"
    for table, scopes in PATCH_SCOPES.items():
        sql = next(models.rglob(f"{table}.sql")).read_text()
        declared = re.search(r"mh_delete_changed\(\[([^\]]*)\]", sql)
        assert declared, table
        names = [name.strip(" '\"") for name in declared.group(1).split(",")]
        assert names == [scope for scope in scopes if scope != "weighted_customer"], table
        weighted = bool(re.search(
            r"aggregation_type = 'WEIGHTED_SUM' and \W*mh_changed\('customer'", sql))
        assert weighted == ("weighted_customer" in scopes), table


@pytest.mark.parametrize("published", [True, False], ids=["snapshot", "warehouse"])
def test_the_api_holds_its_duckdb_connections_to_a_memory_limit(warehouse_copy, published):
    """DuckDB's default limit is 80% of RAM per process; two API workers on a 10M snapshot
    would take the machine. The setting bounds each process (cache included). Each
    connection also runs on the configured threads (one by default: a process per core)."""
    from api.db import make_reader

    if published:
        publish_snapshot(warehouse_copy)
    for threads in (None, 3):
        chosen = {} if threads is None else {"duckdb_threads": threads}
        reader = make_reader(Settings(warehouse=warehouse_copy, duckdb_memory_limit="256MB",
                                      **chosen))
        try:
            with reader.open() as wh:
                limit, used = wh.query("select current_setting('memory_limit'), "
                                       "current_setting('threads')")[0]
        finally:
            reader.close()
        assert limit in {"244.1 MiB", "256.0 MiB", "256MB"}, limit
        assert int(used) == (threads or 1)
    with pytest.raises(ValueError, match="duckdb_memory_limit"):
        Settings(warehouse=warehouse_copy, duckdb_memory_limit="a lot")
    with pytest.raises(ValueError, match="duckdb_threads"):
        Settings(warehouse=warehouse_copy, duckdb_threads=0)


def _series_rows_of(path: Path) -> set[tuple]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return set(conn.execute(f"select * from {SERIES_ROWS}").fetchall())


def _true_series_rows(path: Path) -> set[tuple]:
    with duckdb.connect() as conn:
        conn.execute(f"attach '{path}' as snapshot (read_only)")
        return set(conn.execute(_series_ranges(conn, "snapshot")).fetchall())


def _answers(client: TestClient) -> list:
    """Every meter of acme for each customer, windows of several sizes, and events analytics
    grouped and filtered: what reads the series row ranges."""
    answers = []
    for meter in ("mtr_calls", "mtr_tokens", "mtr_latency", "mtr_peak", "mtr_users",
                  "mtr_level", "mtr_storage"):
        for customer in ("cust_1", "cust_2", "cust_3", "nobody"):
            for window in ("HOUR", "DAY", None):
                body = {"external_customer_id": customer, "meter_ids": [meter],
                        "start_time": iso(T0), "end_time": iso(T1)}
                if window:
                    body["window_size"] = window
                answers.append(client.post("/v1/meter-usage/analytics", headers=acme(),
                                           json=body).json())
    for customer in ("cust_1", "cust_2"):
        for extra in ({"group_by": ["source"]}, {"group_by": ["properties.method"]},
                      {"feature_ids": ["feat_tokens"], "group_by": ["properties.model"]},
                      {"property_filters": {"method": ["GET"]}}):
            body = {"external_customer_id": customer, "start_time": iso(T0),
                    "end_time": iso(T1), "window_size": "DAY", **extra}
            answers.append(client.post("/v1/events/analytics", headers=acme(),
                                       json=body).json())
    return answers


def test_series_row_ranges_are_exact_and_change_no_answer(warehouse_copy, tmp_path):
    """The snapshot's row ranges hold each series exactly, and the API answers the same with
    them as without them (a copy of the snapshot without the table)."""
    snapshot = publish_snapshot(warehouse_copy)
    ranges = _series_rows_of(snapshot)
    assert ranges == _true_series_rows(snapshot)
    assert {row[0] for row in ranges} >= {"fct_meter_usage", "fct_meter_usage_minutely",
                                          "serving_meter_event_values"}
    plain_dir = tmp_path / "plain"
    plain_dir.mkdir()
    shutil.copy(snapshot, plain_dir / snapshot.name)
    with duckdb.connect(str(plain_dir / snapshot.name)) as conn:
        conn.execute(f"drop table {SERIES_ROWS}")
    (plain_dir / CURRENT).write_text(snapshot.name)
    with TestClient(create_app(Settings(warehouse=warehouse_copy))) as client:
        with_ranges = _answers(client)
    with TestClient(create_app(Settings(warehouse=warehouse_copy,
                                        serving_dir=str(plain_dir)))) as client:
        without = _answers(client)
    assert any(answer.get("items") for answer in with_ranges)
    assert with_ranges == without


def test_series_row_ranges_that_do_not_hold_are_left_out(warehouse_copy, monkeypatch):
    """Should the ranges written differ from the tables on disk (row ids moved), the snapshot
    is published without them and lookups read by their filters alone."""
    import api.serving as serving

    true_ranges = serving._series_ranges
    calls = []

    def shifted_once(conn, database):
        calls.append(database)
        sql = true_ranges(conn, database)
        return sql.replace("max(rowid)", "max(rowid) - 1") if len(calls) == 1 else sql

    monkeypatch.setattr(serving, "_series_ranges", shifted_once)
    snapshot = publish_snapshot(warehouse_copy)
    assert len(calls) == 2
    with duckdb.connect(str(snapshot), read_only=True) as conn:
        assert not conn.execute("select count(*) from information_schema.tables "
                                f"where table_name = '{SERIES_ROWS}'").fetchone()[0]
    with TestClient(create_app(Settings(warehouse=warehouse_copy))) as client:
        assert usage_total(client)[0] == 200
