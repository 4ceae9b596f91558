"""The job that builds everything, its schedule, and the sensor that watches the landing folder."""


import hashlib

import dagster as dg

from orchestration.ingest import pending_landing_files
from orchestration.resources import MeterhouseResource

build_everything = dg.define_asset_job(
    name="build_everything",
    selection=dg.AssetSelection.all(),
    description="Catalog, ingest of new landing files, calendars and every dbt model and test.",
    # DuckDB allows one writer at a time: steps run one after another in one process.
    executor_def=dg.in_process_executor,
)

hourly_build = dg.ScheduleDefinition(
    name="hourly_build",
    job=build_everything,
    cron_schedule="7 * * * *",
    description="Builds everything at minute 7 of every hour, whether or not files arrived.",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)


@dg.sensor(
    job=build_everything,
    minimum_interval_seconds=60,
    description="Starts a build when landing files appear that have not been ingested yet.",
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def landing_files_sensor(context: dg.SensorEvaluationContext, meterhouse: MeterhouseResource):
    if not meterhouse.landing_dir:
        return dg.SkipReason("no landing folder configured")
    with meterhouse.warehouse() as warehouse:
        pending = pending_landing_files(warehouse, meterhouse.landing_path)
    if not pending:
        return dg.SkipReason("no new landing files")
    run_key = hashlib.sha256("\n".join(sorted(pending)).encode()).hexdigest()[:16]
    return dg.RunRequest(run_key=run_key, tags={"landing_files": str(len(pending))})
