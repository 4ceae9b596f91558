"""`dbt docs generate` works and gives a useful catalog: every column of every mart and serving
model, as built in the warehouse, is described; the API, the dashboard and BI tools are
declared as exposures downstream of the models they read."""

from __future__ import annotations

import json

import pytest

from orchestration.defs.dbt.project import run_dbt, target_path_for
from orchestration.warehouse import WarehouseConfig
from tests.api.data import ACME
from tests.support.pipeline import build_warehouse

pytestmark = pytest.mark.slow

DOCUMENTED_FOLDERS = ("marts/", "serving/")


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> tuple[dict, dict, WarehouseConfig]:
    path = tmp_path_factory.mktemp("docs") / "warehouse.duckdb"
    config = WarehouseConfig(target="duckdb", duckdb_path=str(path))
    build_warehouse(config, [ACME])
    assert run_dbt(["docs", "generate"], config).success
    target = target_path_for(config)
    assert (target / "index.html").exists()
    manifest = json.loads((target / "manifest.json").read_text())
    catalog = json.loads((target / "catalog.json").read_text())
    return manifest, catalog, config


def _documented_models(manifest: dict) -> dict[str, dict]:
    return {node_id: node for node_id, node in manifest["nodes"].items()
            if node["resource_type"] == "model"
            and node["original_file_path"].startswith(tuple(f"models/{f}"
                                                            for f in DOCUMENTED_FOLDERS))}


def test_every_mart_and_serving_column_is_described(docs):
    manifest, catalog, _ = docs
    models = _documented_models(manifest)
    assert {"model.meterhouse.fct_meter_usage", "model.meterhouse.fct_priced_usage",
            "model.meterhouse.serving_meter_event_values"} <= set(models)
    undocumented = []
    for node_id, node in models.items():
        assert "Grain" in node["description"], f"{node['name']}: state the grain"
        built = catalog["nodes"][node_id]["columns"]  # the columns as they are in the warehouse
        assert built, node["name"]
        described = {name: column["description"].strip()
                     for name, column in node["columns"].items()}
        undocumented += [f"{node['name']}.{name}" for name in built
                         if not described.get(name)]
    assert undocumented == []


def test_doc_blocks_render_into_the_descriptions(docs):
    manifest, _, _ = docs
    usage = manifest["nodes"]["model.meterhouse.fct_meter_usage"]["columns"]
    assert usage["tenant_id"]["description"].startswith("Tenant the row belongs to")
    assert "{{" not in json.dumps(usage)


def test_exposures_declare_the_api_and_the_dashboard(docs):
    manifest, _, _ = docs
    exposures = {e["name"]: e for e in manifest["exposures"].values()}
    assert {"read_api", "usage_dashboard"} <= set(exposures)
    api = exposures["read_api"]
    assert api["type"] == "application"
    assert {"model.meterhouse.fct_meter_usage_minutely",
            "model.meterhouse.serving_meter_event_values"} <= set(api["depends_on"]["nodes"])
    dashboard = exposures["usage_dashboard"]
    assert dashboard["type"] == "dashboard" and dashboard["url"].endswith("/dashboard")
    # whatever the API reads in dbt, the dashboard (which reads through the API) depends on
    models_of = {name: {n for n in e["depends_on"]["nodes"] if n.startswith("model.")}
                 for name, e in exposures.items()}
    assert models_of["read_api"] <= models_of["usage_dashboard"]
