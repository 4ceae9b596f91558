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
