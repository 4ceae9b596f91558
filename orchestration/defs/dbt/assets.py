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
from orchestration.defs.dbt.project import (
    DBT_PROJECT_DIR,
    dbt_environment,
    ensure_manifest,
    target_path_for,
)
from orchestration.resources import MeterhouseResource


class MeterhouseDbtTranslator(DagsterDbtTranslator):
    """Every table is an asset named after it: a source is the Python asset that writes it."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        return dg.AssetKey(dbt_resource_props["name"])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        path = dbt_resource_props.get("path", "")
        return path.split("/")[0] if "/" in path else "dbt"

    def get_asset_check_spec(self, asset_spec, manifest, unique_id, project):
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        test = manifest.get("nodes", {}).get(unique_id)
        if spec is None or test is None or (spec.description or "").strip():
            return spec
        return spec._replace(description=describe_dbt_test(test))


def describe_dbt_test(test: Mapping[str, Any]) -> str:
    """What a dbt data test checks, in words, for the asset check's description in Dagster."""
    if (test.get("description") or "").strip():
        return test["description"].strip()
    metadata = test.get("test_metadata") or {}
    kwargs = metadata.get("kwargs") or {}
    column = test.get("column_name") or kwargs.get("column_name")
    name = metadata.get("name")
    if name == "not_null":
        return f"dbt test: {column} is never null."
    if name == "unique":
        return f"dbt test: {column} is unique."
    if name == "mh_unique_combination":
        return f"dbt test: one row per ({', '.join(kwargs.get('columns', []))}), the grain."
    if name == "mh_expression_is_true":
        return f"dbt test: every row satisfies `{kwargs.get('expression', '').strip()}`."
    if name == "accepted_values":
        return f"dbt test: {column} is one of {', '.join(map(str, kwargs.get('values', [])))}."
    if name == "relationships":
        return f"dbt test: every {column} exists in {kwargs.get('to', '?')}.{kwargs.get('field')}."
    return f"dbt test {test.get('name', '?')}."


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
    if meterhouse.target == "spark":
        yield from _build_in_this_process(context, meterhouse, plan.dbt_args())
    else:
        # this warehouse's own target folder (not a new one per run): dbt parses the project
        # partially from the last run's state, and run_results.json is where one looks for it
        target_path = target_path_for(meterhouse.warehouse_config())
        yield from dbt.cli(["build", *plan.dbt_args()], context=context,
                           target_path=target_path).stream()
    with meterhouse.warehouse() as warehouse:
        record_build(warehouse, plan, datetime.now(UTC))


def _build_in_this_process(
    context: dg.AssetExecutionContext, meterhouse: MeterhouseResource, args: list[str]
):
    """dbt build in this process, for Spark: dbt-spark's session method then runs on the
    SparkSession the Python assets used (a `dbt` subprocess would start a second JVM, which
    cannot open the local Derby metastore while this one holds it). Reports each selected
    model and dbt test like dagster-dbt does, without its event stream."""
    from orchestration.defs.dbt.project import run_dbt

    run = run_dbt(["build", *args], meterhouse.warehouse_config())
    statuses = {unique_id.split(".")[2]: status for unique_id, status, _ in run.results
                if unique_id.startswith("test.")}
    # in dbt's order of execution, which is topological, as Dagster wants them
    built = [dg.AssetKey(unique_id.split(".")[2]) for unique_id, _, _ in run.results
             if unique_id.startswith(("model.", "seed.", "snapshot."))]
    selected = context.selected_asset_keys
    for key in [k for k in built if k in selected] + [k for k in selected if k not in built]:
        yield dg.MaterializeResult(asset_key=key)
    for check in context.selected_asset_check_keys:
        yield dg.AssetCheckResult(asset_key=check.asset_key, check_name=check.name,
                                  passed=statuses.get(check.name, "pass") == "pass")
