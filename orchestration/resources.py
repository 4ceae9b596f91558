"""The one Dagster resource: where the catalog, the landing folder and the warehouse are."""


import os
from pathlib import Path

import dagster as dg

from orchestration.warehouse import Warehouse, WarehouseConfig


class MeterhouseResource(dg.ConfigurableResource):
    """Settings of a Meterhouse deployment (defaults from MH_* environment variables)."""

    catalog_dir: str = os.environ.get("MH_CATALOG_DIR", "demo_data/catalog")
    landing_dir: str = os.environ.get("MH_LANDING_DIR", "demo_data/landing")
    target: str = os.environ.get("MH_TARGET", "duckdb")
    duckdb_path: str = os.environ.get("MH_DUCKDB_PATH", "warehouse/meterhouse.duckdb")
    # Warehouse-native source: an existing table of events (schema-qualified if needed) read
    # in addition to the landing folder. Empty: landing files only.
    events_table: str = os.environ.get("MH_EVENTS_TABLE", "")

    def warehouse_config(self) -> WarehouseConfig:
        return WarehouseConfig.from_env(target=self.target, duckdb_path=self.duckdb_path)

    def warehouse(self) -> Warehouse:
        return Warehouse(self.warehouse_config())

    @property
    def landing_path(self) -> Path:
        return Path(self.landing_dir)

    @property
    def catalog_path(self) -> Path:
        return Path(self.catalog_dir)
