"""The reliability tests' API warehouse: four tenant environments sharing ids (tenants.py),
built once per session on DuckDB with a published serving snapshot."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.serving import publish_snapshot
from api.settings import Settings
from orchestration.warehouse import WarehouseConfig
from tests.api.data import build_api_warehouse
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
