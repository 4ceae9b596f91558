"""The Dagster code location loads, with the expected assets, checks, job, schedule, sensor."""

import dagster as dg

from orchestration.definitions import defs


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


def test_expected_assets_and_wiring():
    repo = defs.get_repository_def()
    keys = {key.to_user_string() for key in repo.asset_graph.get_all_asset_keys()}
    for expected in ("catalog_meters", "raw_events", "calendar_buckets", "int_meter_events",
                     "fct_meter_usage_minutely", "fct_meter_usage", "fct_unmatched_events"):
        assert expected in keys
    graph = repo.asset_graph
    # dbt sources are wired to the Python assets that write them
    assert dg.AssetKey("raw_events") in graph.get(dg.AssetKey("stg_events")).parent_keys
    assert dg.AssetKey("catalog_meters") in graph.get(dg.AssetKey("stg_meters")).parent_keys
    assert dg.AssetKey("calendar_buckets") in graph.get(
        dg.AssetKey("stg_calendar_buckets")).parent_keys


def test_job_schedule_sensor_and_checks_exist():
    repo = defs.get_repository_def()
    assert repo.has_job("build_everything")
    assert {s.name for s in repo.schedule_defs} == {"hourly_build"}
    assert {s.name for s in repo.sensor_defs} == {"landing_files_sensor"}
    checks = {key.name for key in repo.asset_graph.asset_check_keys}
    assert {"ingest_counts_reconcile", "every_event_accounted_for",
            "additive_totals_agree_across_windows"} <= checks


def test_every_asset_is_grouped_and_described():
    graph = defs.get_repository_def().asset_graph
    groups = set()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert (node.description or "").strip(), f"{key.to_user_string()}: no description"
        assert node.group_name and node.group_name != "default", key.to_user_string()
        groups.add(node.group_name)
    assert groups == {"build", "catalog", "ingest", "staging", "intermediate", "marts",
                      "serving"}


def test_every_check_schedule_sensor_and_job_is_described():
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    for check in graph.asset_check_keys:
        assert (graph.get_check_spec(check).description or "").strip(), check.name
    for definition in (*repo.schedule_defs, *repo.sensor_defs, repo.get_job("build_everything")):
        assert (definition.description or "").strip(), definition.name


def test_dbt_test_descriptions_say_what_is_checked():
    from orchestration.defs.dbt.assets import describe_dbt_test

    grain = {"test_metadata": {"name": "mh_unique_combination",
                               "kwargs": {"columns": ["tenant_id", "meter_id"]}}}
    assert describe_dbt_test(grain) == "dbt test: one row per (tenant_id, meter_id), the grain."
    assert describe_dbt_test({"column_name": "cost", "test_metadata": {"name": "not_null"}}) == (
        "dbt test: cost is never null.")
    expression = {"test_metadata": {"name": "mh_expression_is_true",
                                    "kwargs": {"expression": "a < b"}}}
    assert describe_dbt_test(expression) == "dbt test: every row satisfies `a < b`."
    assert describe_dbt_test({"description": "Custom words.", **expression}) == "Custom words."
