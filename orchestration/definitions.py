"""The Meterhouse Dagster code location: `dagster dev` loads `defs` from here."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.backfill.jobs import rebuild_event_days
from orchestration.defs.catalog.assets import catalog
from orchestration.defs.dbt.assets import dbt_resource, meterhouse_dbt_models
from orchestration.defs.dbt.schedules import build_everything, hourly_build, landing_files_sensor
from orchestration.defs.ingest.assets import calendars, raw_events
from orchestration.defs.ingest.checks import (
    additive_totals_agree_across_windows,
    every_event_accounted_for,
    ingest_counts_reconcile,
)
from orchestration.defs.serving.assets import serving_snapshot
from orchestration.resources import MeterhouseResource

# Written by the dbt asset once dbt succeeded (orchestration/build_state.py); read by the
# next build to find what changed.
build_meters = dg.AssetSpec(
    "build_meters",
    group_name="build",
    description=(
        "The meter definitions (hashes) the last completed build used; the next build "
        "recomputes the history of every meter whose definition differs."
    ),
    kinds={"python"},
)


def build_definitions(meterhouse: MeterhouseResource | None = None) -> dg.Definitions:
    meterhouse = meterhouse or MeterhouseResource()
    return dg.Definitions(
        assets=[catalog, raw_events, calendars, build_meters, meterhouse_dbt_models,
                serving_snapshot],
        asset_checks=[
            ingest_counts_reconcile,
            every_event_accounted_for,
            additive_totals_agree_across_windows,
        ],
        jobs=[build_everything, rebuild_event_days],
        schedules=[hourly_build],
        sensors=[landing_files_sensor],
        resources={"meterhouse": meterhouse, "dbt": dbt_resource(meterhouse)},
    )


defs = build_definitions()
