"""Ingest assets: landing files → raw tables, then the calendars derived from them."""

import dagster as dg

from orchestration.calendar import CALENDAR_TABLES, write_calendars
from orchestration.defs.catalog.assets import CATALOG_TABLE_NAMES
from orchestration.ingest import RAW_TABLES, IngestReport, ingest_landing, ingest_table
from orchestration.resources import MeterhouseResource
from orchestration.subscription_periods import (
    SUBSCRIPTION_PERIODS_TABLE,
    write_subscription_periods,
)

RAW_TABLE_NAMES = sorted(RAW_TABLES)
TIME_TABLES = (*CALENDAR_TABLES, SUBSCRIPTION_PERIODS_TABLE)


@dg.multi_asset(
    name="raw_events",
    group_name="ingest",
    description=(
        "New landing files (JSON Lines, CSV, Parquet) and, when MH_EVENTS_TABLE names one, the "
        "new rows of an events table already in the warehouse, appended to raw_events; "
        "malformed rows "
        "to raw_event_rejects with file, line and reason; one row per file in "
        "raw_ingested_files. Files already ingested are skipped, so re-runs add nothing."
    ),
    specs=[dg.AssetSpec(name, kinds={"python", "duckdb"}) for name in RAW_TABLE_NAMES],
)
def raw_events(context: dg.AssetExecutionContext, meterhouse: MeterhouseResource):
    reports: list[IngestReport] = []
    with meterhouse.warehouse() as warehouse:
        if meterhouse.landing_dir:
            reports.append(ingest_landing(warehouse, meterhouse.landing_path,
                                          progress=context.log.info))
        if meterhouse.events_table:
            reports.append(ingest_table(warehouse, meterhouse.events_table))
    report = IngestReport(
        "+".join(r.batch_id for r in reports),
        tuple(f for r in reports for f in r.files),
    )
    context.log.info(
        f"ingest: {report.files_ingested} files, {report.rows_read} rows read, "
        f"{report.accepted} accepted, {report.rejected} rejected, {report.duplicates} duplicates"
    )
    metadata = {
        "raw_events": {"accepted": report.accepted, "duplicates": report.duplicates},
        "raw_event_rejects": {"rejected": report.rejected},
        "raw_ingested_files": {"files_ingested": report.files_ingested,
                               "files_skipped": report.files_skipped,
                               "rows_read": report.rows_read},
    }
    for name in RAW_TABLE_NAMES:
        yield dg.MaterializeResult(asset_key=name, metadata=metadata.get(name, {}))


@dg.multi_asset(
    name="calendars",
    group_name="ingest",
    description=(
        "Bucket boundaries of every window size in every customer timezone and billing anchor "
        "(calendar_buckets), each customer's calendar (customer_usage_calendars) and billing "
        "periods (customer_billing_periods), and every subscription's billing periods "
        "(subscription_billing_periods), computed exactly in Python for the events' span."
    ),
    specs=[
        dg.AssetSpec(name, kinds={"python"}, deps=[*CATALOG_TABLE_NAMES, *RAW_TABLE_NAMES])
        for name in TIME_TABLES
    ],
)
def calendars(context: dg.AssetExecutionContext, meterhouse: MeterhouseResource):
    with meterhouse.warehouse() as warehouse:
        counts = write_calendars(warehouse)
        counts.update(write_subscription_periods(warehouse))
    for name in TIME_TABLES:
        yield dg.MaterializeResult(asset_key=name, metadata={"rows": counts[name]})
