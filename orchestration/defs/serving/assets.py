"""The serving snapshot: what the read API answers from, switched atomically after a build."""

import dagster as dg

from api.serving import publish_snapshot
from orchestration.defs.dbt.assets import meterhouse_dbt_models
from orchestration.resources import MeterhouseResource


@dg.asset(
    group_name="serving",
    deps=[meterhouse_dbt_models],
    description=(
        "On DuckDB, a copy of the catalog and serving tables in a new snapshot file that the "
        "read API switches to atomically (DuckDB allows one writer: the API never reads the "
        "file a build is writing). On Postgres the API reads the tables directly, each "
        "request in one read-only transaction, so there is nothing to publish."
    ),
    kinds={"duckdb"},
)
def serving_snapshot(context: dg.AssetExecutionContext, meterhouse: MeterhouseResource):
    config = meterhouse.warehouse_config()
    if config.target != "duckdb":
        return dg.MaterializeResult(metadata={"published": False})
    path = publish_snapshot(config)
    context.log.info(f"serving snapshot published: {path}")
    return dg.MaterializeResult(metadata={"published": True, "snapshot": str(path)})
