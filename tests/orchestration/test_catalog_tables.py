"""Catalog tables: the rows a catalog becomes, and writing them to DuckDB and Postgres.

The warehouse tests run on a temporary DuckDB file and, marked `postgres`, on a fresh
Postgres database (see tests/conftest.py).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from models.catalog import Catalog, canonical_decimal_text, load_catalog_dir
from orchestration.catalog_tables import (
    CATALOG_TABLES,
    catalog_rows,
    validate_catalog_command,
    write_catalog,
)
from orchestration.warehouse import Warehouse, WarehouseConfig

LOADED_AT = datetime(2024, 6, 1, 12, 30, tzinfo=UTC)
ARCHITECTURE_TABLES = {
    "catalog_environments", "catalog_api_keys", "catalog_meters", "catalog_meter_filters",
    "catalog_features", "catalog_customers", "catalog_prices", "catalog_price_tiers",
    "catalog_plans", "catalog_plan_prices", "catalog_subscriptions",
    "catalog_subscription_commitments",
}  # fmt: skip


@pytest.fixture
def catalog(catalog_dir: Path) -> Catalog:
    return load_catalog_dir(catalog_dir)


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_config(request: pytest.FixtureRequest) -> WarehouseConfig:
    """Each warehouse test runs on DuckDB and on Postgres."""
    return request.getfixturevalue(f"{request.param}_config" if request.param == "duckdb"
                                   else "pg_config")  # fmt: skip


def normalised(value: Any) -> Any:
    """Values as the engines hand them back, compared by meaning (0.5 == 0.500000000000)."""
    if isinstance(value, Decimal):
        return canonical_decimal_text(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


def table_content(warehouse: Warehouse, name: str) -> list[tuple]:
    rows = warehouse.query(f"select * from {warehouse.table(name)}")
    return sorted((tuple(normalised(v) for v in row) for row in rows), key=repr)


def expected_content(rows: list[dict[str, Any]]) -> list[tuple]:
    return sorted((tuple(normalised(v) for v in row.values()) for row in rows), key=repr)


def all_content(warehouse: Warehouse) -> dict[str, list[tuple]]:
    return {table.name: table_content(warehouse, table.name) for table in CATALOG_TABLES}


# -- rows (pure) ---------------------------------------------------------------------------------
def test_every_table_of_the_architecture_is_written():
    assert {table.name for table in CATALOG_TABLES} == ARCHITECTURE_TABLES


def test_meter_rows(catalog: Catalog):
    meters = {row["meter_id"]: row for row in catalog_rows(catalog, LOADED_AT)["catalog_meters"]}
    assert meters["mtr_api_calls"]["aggregation_type"] == "COUNT"
    assert meters["mtr_api_calls"]["multiplier"] is None
    assert meters["mtr_gpu_peak"]["bucket_size"] == "HOUR"
    assert meters["mtr_gpu_peak"]["group_by"] == "region"
    assert meters["mtr_active_users"]["reset_usage"] == "NEVER"
    for row in meters.values():
        assert row["definition_hash"] == hashlib.sha256(row["definition_json"].encode()).hexdigest()
        assert json.loads(row["definition_json"])["event_name"] == row["event_name"]


def test_filter_rows_one_per_value_in_canonical_text(catalog: Catalog):
    rows = catalog_rows(catalog, LOADED_AT)["catalog_meter_filters"]
    api_calls = {
        (r["filter_key"], r["filter_value"]) for r in rows if r["meter_id"] == "mtr_api_calls"
    }
    assert api_calls == {
        ("method", "GET"),
        ("method", "POST"),
        ("status", "200"),
        ("status", "201"),
    }


def test_tier_rows_carry_their_lower_bound(catalog: Catalog):
    rows = catalog_rows(catalog, LOADED_AT)["catalog_price_tiers"]
    assert [(r["tier_index"], r["from_quantity"], r["up_to"]) for r in rows] == [
        (0, Decimal(0), Decimal(1000)),
        (1, Decimal(1000), Decimal(100000)),
        (2, Decimal(100000), None),
    ]
    assert rows[2]["flat_amount"] == Decimal("1")


def test_subscription_rows_resolve_customer_and_anchor(catalog: Catalog):
    (row,) = catalog_rows(catalog, LOADED_AT)["catalog_subscriptions"]
    assert row["external_customer_id"] == "cust_123"
    assert row["billing_anchor"] == datetime(2024, 1, 15, 5, tzinfo=UTC)
    assert row["end_date"] is None
    assert row["currency_precision"] == 2


# -- the warehouse -------------------------------------------------------------------------------
def test_write_and_read_back(warehouse_config: WarehouseConfig, catalog: Catalog):
    expected = catalog_rows(catalog, LOADED_AT)
    with Warehouse(warehouse_config) as warehouse:
        counts = write_catalog(warehouse, catalog, loaded_at=LOADED_AT)
        assert counts == {name: len(rows) for name, rows in expected.items()}
        for table in CATALOG_TABLES:
            assert table_content(warehouse, table.name) == expected_content(expected[table.name])
        nulls = warehouse.query(
            f"select count(*) from {warehouse.table('catalog_meters')} where multiplier is null"
        )
        assert nulls[0][0] == 4
        types = warehouse.query(
            f"select bucket_size, group_by from {warehouse.table('catalog_meters')} "
            "where meter_id = 'mtr_api_calls'"
        )
        assert types == [(None, None)]


def test_writing_twice_gives_the_same_rows(warehouse_config: WarehouseConfig, catalog: Catalog):
    with Warehouse(warehouse_config) as warehouse:
        write_catalog(warehouse, catalog, loaded_at=LOADED_AT)
        first = all_content(warehouse)
        write_catalog(warehouse, catalog, loaded_at=LOADED_AT)
        assert all_content(warehouse) == first


def test_a_new_catalog_replaces_the_old_one(
    warehouse_config: WarehouseConfig, catalog_dir: Path, tmp_path: Path
):
    data = yaml.safe_load((catalog_dir / "acme_production.yaml").read_text())
    data["meters"] = data["meters"][:2]
    data["features"] = data["features"][:2]
    data["prices"] = data["prices"][:2]
    data["plans"][0]["price_ids"] = ["price_api", "price_tokens"]
    smaller = tmp_path / "smaller"
    smaller.mkdir()
    (smaller / "acme_production.yaml").write_text(yaml.safe_dump(data))
    with Warehouse(warehouse_config) as warehouse:
        write_catalog(warehouse, load_catalog_dir(catalog_dir), loaded_at=LOADED_AT)
        counts = write_catalog(warehouse, load_catalog_dir(smaller), loaded_at=LOADED_AT)
        assert counts["catalog_meters"] == 2
        meter_ids = warehouse.query(f"select meter_id from {warehouse.table('catalog_meters')}")
        assert sorted(row[0] for row in meter_ids) == ["mtr_api_calls", "mtr_tokens"]


def test_a_failed_write_keeps_the_previous_catalog(
    warehouse_config: WarehouseConfig, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
):
    with Warehouse(warehouse_config) as warehouse:
        write_catalog(warehouse, catalog, loaded_at=LOADED_AT)
        before = all_content(warehouse)
        replace = Warehouse.replace_arrow

        def fail_on_prices(self: Warehouse, name: str, data: Any, ddl: str) -> None:
            if name == "catalog_prices":
                raise RuntimeError("disk full")
            replace(self, name, data, ddl)

        monkeypatch.setattr(Warehouse, "replace_arrow", fail_on_prices)
        with pytest.raises(RuntimeError, match="disk full"):
            write_catalog(warehouse, catalog, loaded_at=datetime(2025, 1, 1, tzinfo=UTC))
        assert all_content(warehouse) == before


def test_a_table_of_an_older_shape_is_recreated(
    warehouse_config: WarehouseConfig, catalog: Catalog
):
    with Warehouse(warehouse_config) as warehouse:
        warehouse.execute(
            f"create table {warehouse.table('catalog_meters')} (tenant_id varchar, old integer)"
        )
        warehouse.commit()
        write_catalog(warehouse, catalog, loaded_at=LOADED_AT)
        columns = warehouse.query_dicts(f"select * from {warehouse.table('catalog_meters')}")
        assert "old" not in columns[0] and columns[0]["definition_hash"]


# -- `meterhouse catalog validate` ----------------------------------------------------------------
def test_validate_command_ok(catalog_dir: Path, capsys: pytest.CaptureFixture[str]):
    assert validate_catalog_command(catalog_dir) == 0
    out = capsys.readouterr().out
    assert out.startswith("catalog OK: 1 environments, 4 meters, 3 features, 3 prices, 1 plans")


def test_validate_command_lists_problems(
    catalog_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    text = (catalog_dir / "acme_production.yaml").read_text()
    (tmp_path / "acme_production.yaml").write_text(text.replace("currency: usd", "currency: usx"))
    assert validate_catalog_command(tmp_path) == 1
    err = capsys.readouterr().err
    assert "acme_production.yaml: prices[0].currency: unknown currency 'usx'" in err
    assert "acme_production.yaml: subscriptions[0].currency: unknown currency 'usx'" in err
    assert err.rstrip().endswith("problems")


def test_validate_command_accepts_one_file(catalog_dir: Path, capsys: pytest.CaptureFixture[str]):
    assert validate_catalog_command(catalog_dir / "acme_production.yaml") == 0
    assert "catalog OK: 1 environments" in capsys.readouterr().out
