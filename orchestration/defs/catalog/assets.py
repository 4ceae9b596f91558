"""Validate the catalog folder and load it into the warehouse's catalog tables."""

import dagster as dg

from models.catalog import load_catalog_dir
from orchestration.catalog_tables import CATALOG_TABLES, write_catalog
from orchestration.resources import MeterhouseResource

CATALOG_TABLE_NAMES = sorted(table.name for table in CATALOG_TABLES)


@dg.multi_asset(
    name="catalog",
    group_name="catalog",
    description=(
        "Meters, features, prices, plans, customers, subscriptions and API keys from the "
        "catalog YAML folder, validated (a bad catalog fails here and the previous one stays "
        "in force) and written to the catalog_* tables in one transaction."
    ),
    specs=[dg.AssetSpec(name, kinds={"python", "yaml"}) for name in CATALOG_TABLE_NAMES],
)
def catalog(context: dg.AssetExecutionContext, meterhouse: MeterhouseResource):
    loaded = load_catalog_dir(meterhouse.catalog_path)
    with meterhouse.warehouse() as warehouse:
        counts = write_catalog(warehouse, loaded)
    context.log.info(f"catalog loaded: {counts}")
    for name in CATALOG_TABLE_NAMES:
        yield dg.MaterializeResult(asset_key=name, metadata={"rows": counts.get(name, 0)})
