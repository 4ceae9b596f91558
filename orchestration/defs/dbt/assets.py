"""The dbt models as Dagster assets, wired to the Python assets that feed their sources."""


import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from orchestration.build_state import plan_build, record_build
from orchestration.defs.dbt.project import DBT_PROJECT_DIR, dbt_environment, ensure_manifest
from orchestration.resources import MeterhouseResource


class MeterhouseDbtTranslator(DagsterDbtTranslator):
    """Every table is an asset named after it: a source is the Python asset that writes it."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        return dg.AssetKey(dbt_resource_props["name"])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        path = dbt_resource_props.get("path", "")
        return path.split("/")[0] if "/" in path else "dbt"


def dbt_resource(meterhouse: MeterhouseResource | None = None) -> DbtCliResource:
    return DbtCliResource(
        project_dir=str(DBT_PROJECT_DIR),
        profiles_dir=str(DBT_PROJECT_DIR),
        dbt_executable=str(Path(sys.executable).parent / "dbt"),
        target=(meterhouse.target if meterhouse else os.environ.get("MH_TARGET", "duckdb")),
    )


@dbt_assets(
    manifest=ensure_manifest(),
    dagster_dbt_translator=MeterhouseDbtTranslator(),
    name="meterhouse_dbt_models",
)
def meterhouse_dbt_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, meterhouse: MeterhouseResource
):
    """Staging → intermediate → marts → serving, with their data and unit tests.

    After the first build, a batch run: only what new events and changed meters touch is
    rewritten (orchestration/build_state.py); the build is recorded once dbt succeeded.
    """
    os.environ.update(dbt_environment(meterhouse.warehouse_config()))
    with meterhouse.warehouse() as warehouse:
        plan = plan_build(warehouse)
    context.log.info(f"dbt: {plan.describe()}")
    yield from dbt.cli(["build", *plan.dbt_args()], context=context).stream()
    with meterhouse.warehouse() as warehouse:
        record_build(warehouse, plan, datetime.now(UTC))
