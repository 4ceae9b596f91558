"""The reliability tests' API warehouse: four tenant environments sharing ids (tenants.py),
built once per session on DuckDB with a published serving snapshot, and once per module on
Postgres for the tests that run on both engines (`engine_client`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.serving import publish_snapshot
from api.settings import Settings
from orchestration.warehouse import WarehouseConfig
from tests.api.data import build_api_warehouse
from tests.conftest import _check_postgres, _fresh_postgres_database, _postgres_server_config
from tests.reliability.tenants import CASES


@pytest.fixture(scope="session")
def tenants_warehouse(tmp_path_factory) -> WarehouseConfig:
    path = tmp_path_factory.mktemp("tenants") / "warehouse.duckdb"
    config = WarehouseConfig(target="duckdb", duckdb_path=str(path))
    build_api_warehouse(config, CASES)
    publish_snapshot(config)
    return config


@pytest.fixture(scope="session")
def tenants_client(tenants_warehouse: WarehouseConfig) -> Iterator[TestClient]:
    app = create_app(Settings(warehouse=tenants_warehouse))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module",
                params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine_client(request):
    """The API over the four environments, on DuckDB (snapshot) and on Postgres."""
    if request.param == "duckdb":
        yield request.getfixturevalue("tenants_client")
        return
    server = _postgres_server_config()
    _check_postgres(server)
    with _fresh_postgres_database(server) as config:
        build_api_warehouse(config, CASES)
        with TestClient(create_app(Settings(warehouse=config, pg_pool_size=2)),
                        raise_server_exceptions=False) as client:
            yield client
