"""Fixtures of the read API tests: the test warehouse (built once per session and engine),
the app's settings and a TestClient. The data and the expected answers are in `data.py`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.serving import publish_snapshot
from api.settings import Settings
from orchestration.warehouse import WarehouseConfig
from tests.api.data import ACME, CASES, Expected, build_api_warehouse


@pytest.fixture(scope="session")
def expected() -> Expected:
    return Expected(ACME)


@pytest.fixture(scope="session")
def duckdb_warehouse(tmp_path_factory) -> WarehouseConfig:
    """The test warehouse on DuckDB, built once, with a published serving snapshot."""
    path = tmp_path_factory.mktemp("api") / "warehouse.duckdb"
    config = WarehouseConfig(target="duckdb", duckdb_path=str(path))
    build_api_warehouse(config, CASES)
    publish_snapshot(config)
    return config


@pytest.fixture(scope="session")
def duckdb_settings(duckdb_warehouse: WarehouseConfig) -> Settings:
    return Settings(warehouse=duckdb_warehouse)


@pytest.fixture(scope="session")
def client(duckdb_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(duckdb_settings), raise_server_exceptions=False) as test_client:
        yield test_client

