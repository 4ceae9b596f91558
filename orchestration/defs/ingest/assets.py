"""Ingest assets: landing files → raw_events / raw_event_rejects, then the calendars."""

from __future__ import annotations

import dagster as dg

from orchestration.calendar import write_calendars
from orchestration.defs.catalog.assets import catalog
from orchestration.ingest import ingest_landing
from orchestration.resources import MeterhouseResource


@dg.asset(
    group_name="ingest",
    description=(
        "New landing files (JSON Lines, CSV, Parquet) appended to raw_events; malformed rows "
        "to raw_event_rejects with file, line and reason; one row per file in "
        "raw_ingested_files. Files already ingested are skipped, so re-runs add nothing."
    ),
    kinds={"python", "duckdb"},
)
def raw_events(context: dg.AssetExecutionContext, meterhouse: MeterhouseResource):
    with meterhouse.warehouse() as warehouse:
        report = ingest_landing(warehouse, meterhouse.landing_path)
    context.log.info(
        f"ingest: {report.files_ingested} files, {report.rows_read} rows read, "
        f"{report.accepted} accepted, {report.rejected} rejected, {report.duplicates} duplicates"
    )
    return dg.MaterializeResult(
        metadata={
            "files_ingested": report.files_ingested,
            "files_skipped": report.files_skipped,
            "rows_read": report.rows_read,
            "accepted": report.accepted,
            "rejected": report.rejected,
            "duplicates": report.duplicates,
        }
    )


@dg.asset(
    group_name="ingest",
    deps=[catalog, raw_events],
    description=(
        "Bucket boundaries of every window size in every customer timezone and billing anchor "
        "(calendar_buckets), each customer's calendar (customer_usage_calendars) and billing "
        "periods (customer_billing_periods), computed exactly in Python for the events' span."
    ),
    kinds={"python"},
)
def calendars(context: dg.AssetExecutionContext, meterhouse: MeterhouseResource):
    with meterhouse.warehouse() as warehouse:
        counts = write_calendars(warehouse)
    return dg.MaterializeResult(metadata={name: dg.MetadataValue.int(n) for name, n in
                                          counts.items()})
