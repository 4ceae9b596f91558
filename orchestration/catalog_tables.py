"""The validated catalog as warehouse tables (`catalog_*`, docs/ARCHITECTURE.md).

Each table is declared once (`CATALOG_TABLES`: columns with their portable SQL type and Arrow
type); small pure functions turn a `Catalog` into rows; `write_catalog` replaces every table in
one transaction, so readers see the old catalog or the new one, never a mix. Tables hold all
tenant environments; every key starts with (tenant_id, environment_id).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from models import cel
from models.catalog import (
    Catalog,
    CatalogError,
    CatalogFile,
    currency_precision,
    environment_hash,
    load_catalog_dir,
    load_catalog_file,
    meter_definition_hash,
    meter_definition_json,
)
from orchestration.warehouse import Warehouse

Row = dict[str, Any]


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    arrow_type: pa.DataType
    nullable: bool = True


@dataclass(frozen=True)
class CatalogTable:
    """One catalog table: its columns and the function that makes its rows."""

    name: str
    columns: tuple[Column, ...]
    rows: Callable[[CatalogFile], Iterator[Row]] | None  # None: built from the whole catalog

    def ddl(self) -> str:
        """Column list of the create statement (valid on DuckDB and Postgres)."""
        return ", ".join(
            f'"{c.name}" {c.sql_type}' + ("" if c.nullable else " not null") for c in self.columns
        )

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.arrow_type, c.nullable) for c in self.columns])

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _text(name: str, nullable: bool = True) -> Column:
    return Column(name, "varchar", pa.string(), nullable)


def _key(name: str) -> Column:
    return _text(name, nullable=False)


def _decimal(name: str, nullable: bool = True) -> Column:
    return Column(name, "decimal(38, 12)", pa.decimal128(38, 12), nullable)


def _integer(name: str, nullable: bool = True) -> Column:
    return Column(name, "integer", pa.int32(), nullable)


def _bigint(name: str, nullable: bool = True) -> Column:
    return Column(name, "bigint", pa.int64(), nullable)


def _boolean(name: str) -> Column:
    return Column(name, "boolean", pa.bool_(), nullable=False)


def _timestamp(name: str, nullable: bool = True) -> Column:
    return Column(name, "timestamptz", pa.timestamp("us", tz="UTC"), nullable)


ENVIRONMENT_KEY = (_key("tenant_id"), _key("environment_id"))


# -- rows ---------------------------------------------------------------------------------------
def _env(env: CatalogFile) -> Row:
    return {"tenant_id": env.tenant_id, "environment_id": env.environment_id}


def _enum_text(value: Any) -> str | None:
    return None if value is None else str(value)


def api_key_rows(env: CatalogFile) -> Iterator[Row]:
    for key in env.api_keys:
        yield _env(env) | {"name": key.name, "key_sha256": key.key_sha256, "revoked": key.revoked}


def meter_rows(env: CatalogFile) -> Iterator[Row]:
    for meter in env.meters:
        aggregation = meter.aggregation
        yield _env(env) | {
            "meter_id": meter.id,
            "name": meter.name,
            "event_name": meter.event_name,
            "aggregation_type": str(aggregation.type),
            "aggregation_field": aggregation.field,
            "aggregation_expression": aggregation.expression,
            **expression_sql(aggregation.expression),
            "multiplier": aggregation.multiplier,
            "bucket_size": _enum_text(aggregation.bucket_size),
            "group_by": aggregation.group_by,
            "reset_usage": str(meter.reset_usage),
            "status": str(meter.status),
            "definition_json": meter_definition_json(meter),
            "definition_hash": meter_definition_hash(meter),
        }


def expression_sql(expression: str | None) -> Row:
    """The meter's CEL expression compiled for each engine (JSON; see `cel.sql_program`)."""
    return {
        f"expression_sql_{dialect}": (
            None if expression is None else cel.sql_program_json(expression, dialect)
        )
        for dialect in cel.DIALECTS
    }


def meter_filter_rows(env: CatalogFile) -> Iterator[Row]:
    for meter in env.meters:
        for meter_filter in meter.filters:
            for value in meter_filter.values:
                yield _env(env) | {
                    "meter_id": meter.id,
                    "filter_key": meter_filter.key,
                    "filter_value": value,
                }


def feature_rows(env: CatalogFile) -> Iterator[Row]:
    for feature in env.features:
        unit = feature.reporting_unit
        yield _env(env) | {
            "feature_id": feature.id,
            "name": feature.name,
            "meter_id": feature.meter_id,
            "unit_singular": feature.unit_singular,
            "unit_plural": feature.unit_plural,
            "reporting_unit_singular": unit.unit_singular if unit else None,
            "reporting_unit_plural": unit.unit_plural if unit else None,
            "reporting_conversion_rate": unit.conversion_rate if unit else None,
        }


def customer_rows(env: CatalogFile) -> Iterator[Row]:
    for customer in env.customers:
        yield _env(env) | {
            "customer_id": customer.id,
            "external_id": customer.external_id,
            "name": customer.name,
            "timezone": customer.timezone,
            "parent_customer_id": customer.parent_customer_id,
        }


def price_rows(env: CatalogFile) -> Iterator[Row]:
    for price in env.prices:
        transform = price.transform_quantity
        yield _env(env) | {
            "price_id": price.id,
            "price_type": str(price.type),
            "meter_id": price.meter_id,
            "currency": price.currency,
            "currency_precision": currency_precision(price.currency),
            "billing_model": str(price.billing_model),
            "tier_mode": _enum_text(price.tier_mode),
            "amount": price.amount,
            "transform_divide_by": transform.divide_by if transform else None,
            "transform_round": str(transform.round) if transform else None,
            "billing_period": str(price.billing_period),
            "billing_period_count": price.billing_period_count,
            "plan_id": price.plan_id,
            "display_name": price.display_name,
            "description": price.description,
        }


def price_tier_rows(env: CatalogFile) -> Iterator[Row]:
    for price in env.prices:
        from_quantity = Decimal(0)
        for index, tier in enumerate(price.tiers):
            yield _env(env) | {
                "price_id": price.id,
                "tier_index": index,
                "from_quantity": from_quantity,
                "up_to": tier.up_to,
                "unit_amount": tier.unit_amount,
                "flat_amount": tier.flat_amount,
            }
            from_quantity = tier.up_to if tier.up_to is not None else from_quantity


def plan_rows(env: CatalogFile) -> Iterator[Row]:
    for plan in env.plans:
        yield _env(env) | {"plan_id": plan.id, "name": plan.name, "description": plan.description}


def plan_price_rows(env: CatalogFile) -> Iterator[Row]:
    for plan in env.plans:
        for position, price_id in enumerate(plan.price_ids):
            yield _env(env) | {"plan_id": plan.id, "price_id": price_id, "position": position}


def subscription_rows(env: CatalogFile) -> Iterator[Row]:
    external_ids = {customer.id: customer.external_id for customer in env.customers}
    for sub in env.subscriptions:
        yield _env(env) | {
            "subscription_id": sub.id,
            "customer_id": sub.customer_id,
            "external_customer_id": external_ids[sub.customer_id],
            "plan_id": sub.plan_id,
            "currency": sub.currency,
            "currency_precision": currency_precision(sub.currency),
            "start_date": sub.start_date,
            "end_date": sub.end_date,
            "billing_anchor": sub.anchor,
            "billing_period": str(sub.billing_period),
            "billing_period_count": sub.billing_period_count,
        }


def subscription_commitment_rows(env: CatalogFile) -> Iterator[Row]:
    for sub in env.subscriptions:
        for commitment in sub.commitments:
            yield _env(env) | {
                "subscription_id": sub.id,
                "price_id": commitment.price_id,
                "commitment_type": str(commitment.commitment_type),
                "commitment_amount": commitment.amount,
                "commitment_quantity": commitment.quantity,
                "overage_factor": commitment.overage_factor,
                "true_up_enabled": commitment.true_up_enabled,
                "is_windowed": commitment.is_windowed,
            }


# -- tables -------------------------------------------------------------------------------------
CATALOG_TABLES: tuple[CatalogTable, ...] = (
    CatalogTable(
        "catalog_environments",
        (*ENVIRONMENT_KEY, _key("source_file"), _key("catalog_hash"),
         _timestamp("loaded_at", nullable=False)),
        None,  # environment_rows: needs the source file and the load time
    ),
    CatalogTable(
        "catalog_api_keys",
        (*ENVIRONMENT_KEY, _key("name"), _key("key_sha256"), _boolean("revoked")),
        api_key_rows,
    ),
    CatalogTable(
        "catalog_meters",
        (*ENVIRONMENT_KEY, _key("meter_id"), _key("name"), _key("event_name"),
         _key("aggregation_type"), _text("aggregation_field"), _text("aggregation_expression"),
         _text("expression_sql_duckdb"), _text("expression_sql_postgres"),
         _text("expression_sql_spark"),
         _decimal("multiplier"), _text("bucket_size"), _text("group_by"), _key("reset_usage"),
         _key("status"), _key("definition_json"), _key("definition_hash")),
        meter_rows,
    ),
    CatalogTable(
        "catalog_meter_filters",
        (*ENVIRONMENT_KEY, _key("meter_id"), _key("filter_key"), _key("filter_value")),
        meter_filter_rows,
    ),
    CatalogTable(
        "catalog_features",
        (*ENVIRONMENT_KEY, _key("feature_id"), _key("name"), _key("meter_id"),
         _text("unit_singular"), _text("unit_plural"), _text("reporting_unit_singular"),
         _text("reporting_unit_plural"), _decimal("reporting_conversion_rate")),
        feature_rows,
    ),
    CatalogTable(
        "catalog_customers",
        (*ENVIRONMENT_KEY, _key("customer_id"), _key("external_id"), _text("name"),
         _key("timezone"), _text("parent_customer_id")),
        customer_rows,
    ),
    CatalogTable(
        "catalog_prices",
        (*ENVIRONMENT_KEY, _key("price_id"), _key("price_type"), _text("meter_id"),
         _key("currency"), _integer("currency_precision", nullable=False),
         _key("billing_model"), _text("tier_mode"), _decimal("amount"),
         _bigint("transform_divide_by"), _text("transform_round"), _key("billing_period"),
         _integer("billing_period_count", nullable=False), _text("plan_id"),
         _text("display_name"), _text("description")),
        price_rows,
    ),
    CatalogTable(
        "catalog_price_tiers",
        (*ENVIRONMENT_KEY, _key("price_id"), _integer("tier_index", nullable=False),
         _decimal("from_quantity", nullable=False), _decimal("up_to"),
         _decimal("unit_amount", nullable=False), _decimal("flat_amount")),
        price_tier_rows,
    ),
    CatalogTable(
        "catalog_plans",
        (*ENVIRONMENT_KEY, _key("plan_id"), _key("name"), _text("description")),
        plan_rows,
    ),
    CatalogTable(
        "catalog_plan_prices",
        (*ENVIRONMENT_KEY, _key("plan_id"), _key("price_id"),
         _integer("position", nullable=False)),
        plan_price_rows,
    ),
    CatalogTable(
        "catalog_subscriptions",
        (*ENVIRONMENT_KEY, _key("subscription_id"), _key("customer_id"),
         _key("external_customer_id"), _key("plan_id"), _key("currency"),
         _integer("currency_precision", nullable=False), _timestamp("start_date", False),
         _timestamp("end_date"), _timestamp("billing_anchor", False), _key("billing_period"),
         _integer("billing_period_count", nullable=False)),
        subscription_rows,
    ),
    CatalogTable(
        "catalog_subscription_commitments",
        (*ENVIRONMENT_KEY, _key("subscription_id"), _key("price_id"), _key("commitment_type"),
         _decimal("commitment_amount"), _decimal("commitment_quantity"),
         _decimal("overage_factor", nullable=False), _boolean("true_up_enabled"),
         _boolean("is_windowed")),
        subscription_commitment_rows,
    ),
)  # fmt: skip

TABLES_BY_NAME = {table.name: table for table in CATALOG_TABLES}


def environment_rows(catalog: Catalog, loaded_at: datetime) -> list[Row]:
    return [
        _env(env)
        | {
            "source_file": catalog.source_file(env),
            "catalog_hash": environment_hash(env),
            "loaded_at": loaded_at,
        }
        for env in catalog.environments
    ]


def catalog_rows(catalog: Catalog, loaded_at: datetime) -> dict[str, list[Row]]:
    """The rows of every catalog table, in table order (pure: no warehouse needed)."""
    return {
        table.name: (
            [row for env in catalog.environments for row in table.rows(env)]
            if table.rows is not None
            else environment_rows(catalog, loaded_at)
        )
        for table in CATALOG_TABLES
    }


def catalog_arrow_tables(catalog: Catalog, loaded_at: datetime) -> dict[str, pa.Table]:
    return {
        name: pa.Table.from_pylist(table_rows, schema=TABLES_BY_NAME[name].arrow_schema())
        for name, table_rows in catalog_rows(catalog, loaded_at).items()
    }


# -- the warehouse --------------------------------------------------------------------------------
def _existing_columns(warehouse: Warehouse, name: str) -> list[str]:
    return [column for column, _ in warehouse.columns(name)]


def _ensure_table_shape(warehouse: Warehouse, table: CatalogTable) -> None:
    """Drop a table written by an older version whose columns differ; it is recreated."""
    existing = _existing_columns(warehouse, table.name)
    if existing and existing != table.column_names:
        # on Postgres, views built on the old shape go too; the next dbt run rebuilds them
        cascade = " cascade" if warehouse.is_postgres else ""
        warehouse.execute(f"drop table {warehouse.table(table.name)}{cascade}")


def write_catalog(
    warehouse: Warehouse, catalog: Catalog, *, loaded_at: datetime | None = None
) -> dict[str, int]:
    """Replace every catalog table with `catalog`, in one transaction; rows per table."""
    data = catalog_arrow_tables(catalog, loaded_at or datetime.now(UTC))
    warehouse.connect()
    with warehouse.transaction():
        for table in CATALOG_TABLES:
            _ensure_table_shape(warehouse, table)
            warehouse.replace_arrow(table.name, data[table.name], table.ddl())
    return {name: table.num_rows for name, table in data.items()}


# -- `meterhouse catalog validate` ---------------------------------------------------------------
SUMMARY_SECTIONS = (
    "meters",
    "features",
    "prices",
    "plans",
    "customers",
    "subscriptions",
    "api_keys",
)


def catalog_summary(catalog: Catalog) -> str:
    """ "N environments, M meters, ..." for a valid catalog."""
    counts = [f"{len(catalog.environments)} environments"]
    for section in SUMMARY_SECTIONS:
        total = sum(len(getattr(env, section)) for env in catalog.environments)
        counts.append(f"{total} {section.replace('_', ' ')}")
    return ", ".join(counts)


def validate_catalog_command(path: str | Path) -> int:
    """Check a catalog folder (or one file): a summary on stdout and exit code 0, or every
    problem on stderr and exit code 1."""
    target = Path(path)
    try:
        if target.is_file():
            env = load_catalog_file(target)
            catalog = Catalog([env], {env.key: target.name})
        else:
            catalog = load_catalog_dir(target)
    except CatalogError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        count = len(exc.problems)
        print(f"catalog invalid: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
        return 1
    print(f"catalog OK: {catalog_summary(catalog)}")
    return 0
