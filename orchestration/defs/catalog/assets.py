"""Validate the catalog folder and load it into the warehouse's catalog tables."""

from __future__ import annotations

import dagster as dg

from models.catalog import load_catalog_dir
from orchestration.catalog_tables import write_catalog
from orchestration.resources import MeterhouseResource


@dg.asset(
    group_name="catalog",
    description=(
        "Meters, features, prices, plans, customers, subscriptions and API keys from the "
        "catalog YAML folder, validated (a bad catalog fails here and the previous one stays "
        "in force) and written to the catalog_* tables in one transaction."
    ),
    kinds={"python", "yaml"},
)
def catalog(context: dg.AssetExecutionContext, meterhouse: MeterhouseResource):
    loaded = load_catalog_dir(meterhouse.catalog_path)
    with meterhouse.warehouse() as warehouse:
        counts = write_catalog(warehouse, loaded)
    context.log.info(f"catalog loaded: {counts}")
    return dg.MaterializeResult(metadata={name: dg.MetadataValue.int(n) for name, n in
                                          counts.items()})
