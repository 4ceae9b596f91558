"""Fixtures shared by every test folder: where the sample data is and which warehouse to use.

Postgres tests (`@pytest.mark.postgres`) each get a fresh database `mh_test_<uuid hex>` on the
server of MH_PG_HOST/MH_PG_PORT/MH_PG_USER (default 127.0.0.1:5432, user postgres), dropped at
the end. Without a reachable server they are skipped, unless MH_REQUIRE_POSTGRES=1 (CI), in
which case they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from hypothesis import settings

from orchestration.warehouse import WarehouseConfig

# Speed is measured by the benchmark, never by tests: no per-example deadline (a loaded CI
# machine must not turn a slow example into a failure).
settings.register_profile("meterhouse", deadline=None)
settings.load_profile("meterhouse")

FIXTURES_DIR = Path(__file__).parent / "fixtures"
CATALOG_FIXTURE_DIR = FIXTURES_DIR / "catalog"


@pytest.fixture
def catalog_dir() -> Path:
    """The folder of the valid sample catalog (tests/fixtures/catalog)."""
    return CATALOG_FIXTURE_DIR


@pytest.fixture
def duckdb_config(tmp_path: Path) -> WarehouseConfig:
    """A DuckDB warehouse in a file of its own, gone with the test's tmp_path."""
    return WarehouseConfig(target="duckdb", duckdb_path=str(tmp_path / "warehouse.duckdb"))


def _postgres_server_config() -> WarehouseConfig:
    env = os.environ
    return WarehouseConfig(
        target="postgres",
        pg_host=env.get("MH_PG_HOST", "127.0.0.1"),
        pg_port=int(env.get("MH_PG_PORT", "5432")),
        pg_user=env.get("MH_PG_USER", "postgres"),
        pg_password=env.get("MH_PG_PASSWORD", ""),
        pg_database="postgres",
    )


def _admin_connection(config: WarehouseConfig):
    import psycopg2

    conn = psycopg2.connect(
        host=config.pg_host,
        port=config.pg_port,
        user=config.pg_user,
        password=config.pg_password or None,
        dbname="postgres",
        connect_timeout=3,
    )
    conn.autocommit = True
    return conn


def _postgres_unavailable(reason: str) -> None:
    message = f"PostgreSQL not reachable ({reason}); set MH_PG_* or start a server"
    if os.environ.get("MH_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{message} (MH_REQUIRE_POSTGRES=1)", pytrace=False)
    pytest.skip(message)


def _check_postgres(server: WarehouseConfig) -> None:
    import psycopg2

    try:
        _admin_connection(server).close()
    except psycopg2.OperationalError as exc:
        _postgres_unavailable(str(exc).strip().splitlines()[0])


@contextmanager
def _fresh_postgres_database(server: WarehouseConfig) -> Iterator[WarehouseConfig]:
    database = f"mh_test_{uuid.uuid4().hex}"
    try:
        yield WarehouseConfig(
            target="postgres",
            pg_host=server.pg_host,
            pg_port=server.pg_port,
            pg_user=server.pg_user,
            pg_password=server.pg_password,
            pg_database=database,
        )
    finally:
        conn = _admin_connection(server)
        try:
            with conn.cursor() as cur:
                cur.execute(f'drop database if exists "{database}" with (force)')
        finally:
            conn.close()


@pytest.fixture
def pg_config() -> Iterator[WarehouseConfig]:
    """A fresh, empty Postgres database for one test, dropped afterwards."""
    server = _postgres_server_config()
    _check_postgres(server)
    with _fresh_postgres_database(server) as config:
        yield config


@pytest.fixture
def pg_server() -> Callable[[], AbstractContextManager[WarehouseConfig]]:
    """A factory of fresh Postgres databases (for hypothesis tests: one per example)."""
    server = _postgres_server_config()
    _check_postgres(server)
    return lambda: _fresh_postgres_database(server)
