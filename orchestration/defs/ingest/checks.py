"""Reconciliation checks: nothing read is lost, nothing accepted goes uncounted."""


import dagster as dg

from orchestration.reconcile import (
    additive_totals_mismatches,
    events_not_accounted_for,
    ingest_count_mismatches,
)
from orchestration.resources import MeterhouseResource


@dg.asset_check(
    asset="raw_ingested_files",
    description="For every landing file: rows read = rows accepted + rows rejected.",
)
def ingest_counts_reconcile(meterhouse: MeterhouseResource) -> dg.AssetCheckResult:
    with meterhouse.warehouse() as warehouse:
        bad = ingest_count_mismatches(warehouse)
    return dg.AssetCheckResult(
        passed=not bad, metadata={"files_out_of_balance": len(bad), "examples": str(bad[:5])}
    )


@dg.asset_check(
    asset="fct_unmatched_events",
    description=(
        "Every accepted event (latest version) is counted by at least one meter or listed "
        "in fct_unmatched_events."
    ),
)
def every_event_accounted_for(meterhouse: MeterhouseResource) -> dg.AssetCheckResult:
    with meterhouse.warehouse() as warehouse:
        missing = events_not_accounted_for(warehouse)
    return dg.AssetCheckResult(passed=missing == 0, metadata={"events_missing": missing})


@dg.asset_check(
    asset="fct_meter_usage",
    description=(
        "For additive meters (COUNT, SUM, SUM_WITH_MULTIPLIER) the total over all windows is "
        "the same at every window size."
    ),
)
def additive_totals_agree_across_windows(meterhouse: MeterhouseResource) -> dg.AssetCheckResult:
    with meterhouse.warehouse() as warehouse:
        bad = additive_totals_mismatches(warehouse)
    return dg.AssetCheckResult(
        passed=not bad, metadata={"meters_out_of_balance": len(bad), "examples": str(bad[:5])}
    )
