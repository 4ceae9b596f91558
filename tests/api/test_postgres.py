"""The read API on PostgreSQL: the same answers as the reference (TestClient and a real
`meterhouse serve --target postgres`), tenant scoping, and a 503 when the server is gone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from orchestration.warehouse import WarehouseConfig
from tests.api.checks import (
    check_aggregation_override,
    check_event_summaries,
    check_events_analytics_matches_reference,
    check_include_children,
    check_meter_usage_matches_reference,
    check_stripe_meter_usage_matches_reference,
)
from tests.api.data import CASES, GLOBEX_KEY, T0, T1, acme, build_api_warehouse, iso
from tests.api.server import running_server
from tests.conftest import _check_postgres, _fresh_postgres_database, _postgres_server_config

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def pg_warehouse() -> Iterator[WarehouseConfig]:
    """The test warehouse in a fresh Postgres database, built once for this module."""
    server = _postgres_server_config()
    _check_postgres(server)
    with _fresh_postgres_database(server) as config:
        build_api_warehouse(config, CASES)
        yield config


@pytest.fixture(scope="module")
def pg_client(pg_warehouse) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(warehouse=pg_warehouse, pg_pool_size=4)),
                    raise_server_exceptions=False) as client:
        yield client


def test_meter_usage_matches_the_reference(pg_client, expected):
    assert check_meter_usage_matches_reference(pg_client, expected) > 100
    assert check_aggregation_override(pg_client, expected) > 10


def test_events_analytics_matches_the_reference(pg_client, expected):
    assert check_events_analytics_matches_reference(pg_client, expected) > 50
    check_include_children(pg_client, expected)


def test_stripe_endpoints_match_the_reference(pg_client, expected):
    assert check_stripe_meter_usage_matches_reference(pg_client, expected) > 20
    assert check_event_summaries(pg_client, expected) > 6


def test_tenant_scoping_and_injection(pg_client):
    body = {"external_customer_id": "cust_1", "meter_ids": ["mtr_calls"],
            "aggregation_type": "COUNT", "start_time": iso(T0), "end_time": iso(T1)}
    globex = pg_client.post("/v1/meter-usage/analytics", headers={"x-api-key": GLOBEX_KEY},
                            json=body).json()
    assert globex["items"][0]["total_value"] == "30"
    missing = pg_client.post("/v1/meter-usage/analytics", headers=acme(),
                             json={**body, "meter_ids": ["mtr_globex_only"]})
    assert missing.status_code == 404
    response = pg_client.post("/v1/events/analytics", headers=acme(), json={
        "external_customer_id": "cust_1", "start_time": iso(T0), "end_time": iso(T1),
        "property_filters": {"model": ["x' or '1'='1"]}})
    assert response.status_code == 200 and response.json()["items"] == []


def test_an_unreachable_server_is_a_503(pg_warehouse):
    gone = WarehouseConfig(target="postgres", pg_host="127.0.0.1", pg_port=1,
                           pg_database=pg_warehouse.pg_database)
    with TestClient(create_app(Settings(warehouse=gone))) as client:
        response = client.get("/v1/meters", headers=acme())
    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"
    assert "cannot connect to PostgreSQL" in response.json()["message"]


def test_meterhouse_serve_on_postgres(pg_warehouse, expected):
    env = {"MH_PG_HOST": pg_warehouse.pg_host, "MH_PG_PORT": str(pg_warehouse.pg_port),
           "MH_PG_USER": pg_warehouse.pg_user, "MH_PG_DATABASE": pg_warehouse.pg_database,
           "MH_PG_PASSWORD": pg_warehouse.pg_password, "MH_SCHEMA": pg_warehouse.schema_name}
    with running_server(["--target", "postgres"], env=env) as http:
        assert check_meter_usage_matches_reference(http, expected) > 100
        assert check_stripe_meter_usage_matches_reference(http, expected) > 20
        assert http.get("/v1/meters", headers=acme()).json()["pagination"]["total"] == 7


@pytest.mark.parametrize("days", [[], list(range(2, 30))], ids=["one-cut", "daily-cuts"])
def test_slots_cut_every_n_minutes_alike_on_duckdb_and_postgres(pg_warehouse, tmp_path, days):
    """`Slots.every` is DuckDB's time_bucket and Postgres's date_bin: both give the slot the
    minute's own bucket (Kathmandu's hours, :15 UTC), or the later listed cut. With more
    cuts than `ASOF_BOUNDS`, DuckDB finds the listed cut by an ASOF join."""
    from datetime import UTC, datetime, timedelta

    from api.usage import ASOF_BOUNDS, _slot, meter_bucket_slots
    from models import windows
    from orchestration.warehouse import Warehouse

    start, end = datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC)
    cut = datetime(2024, 3, 9, 7, 40, tzinfo=UTC)
    cuts = [cut, *(start + timedelta(days=d, minutes=5) for d in days)]
    grain = meter_bucket_slots("HOUR", "Asia/Kathmandu", None, cuts, start, end)
    assert grain is not None and grain.every is not None
    minutes = [start + timedelta(minutes=7 * k) for k in range(0, 31 * 24 * 60 // 7)]
    want = [max(windows.bucket_start(m, "HOUR", "Asia/Kathmandu"), *(
        b for b in grain.bounds[:-1] if b <= m)) for m in minutes]
    duck = WarehouseConfig(target="duckdb", duckdb_path=str(tmp_path / "w.duckdb"))
    for config in (duck, pg_warehouse):
        with Warehouse(config) as warehouse:
            slot = _slot(warehouse, grain)
            sql = (f"select {slot.expression} from (select cast(minute_start as "
                   f"timestamptz) as minute_start from (values "
                   + ", ".join(f"('{m.isoformat()}')" for m in minutes)
                   + f") as listed(minute_start)) as m{slot.join} order by minute_start")
            got = [row[0].astimezone(UTC) for row in warehouse.query(sql, list(slot.params))]
            assert bool(slot.join) == (warehouse.is_duckdb and len(cuts) > ASOF_BOUNDS)
        assert got == want, config.target
