"""Backfills by event day: recompute the rollups of the events whose time lies in a day.

`rebuild_event_days` is partitioned daily on event time (UTC days). A run of one partition
passes that day to dbt (`mh_rebuild_from`/`mh_rebuild_to`, see
dbt_project/macros/incremental/incremental.sql): the events of that day, every version of
them, are recomputed, and only the windows that contain their minutes are rewritten (the
day's MINUTE to DAY windows, and the WEEK and MONTH windows around it). New raw events since
the last build are included as in any batch run. Launch a range from the job's Partitions
tab in the Dagster UI, or `dagster job backfill -j rebuild_event_days --from ... --to ...`.
"""

from datetime import UTC, datetime

import dagster as dg

from orchestration.build_state import build_models
from orchestration.resources import MeterhouseResource

EVENT_DAYS = dg.DailyPartitionsDefinition(start_date="2020-01-01", timezone="UTC",
                                          end_offset=1)


@dg.op(description="dbt build of the day's events (and any new events) as a batch run.")
def rebuild_event_day(context: dg.OpExecutionContext, meterhouse: MeterhouseResource) -> None:
    window = context.partition_time_window
    start = window.start.astimezone(UTC)
    end = window.end.astimezone(UTC)
    plan = build_models(meterhouse.warehouse_config(), rebuild=(start, end))
    context.log.info(f"dbt: {plan.describe()}")
    context.add_output_metadata({"plan": plan.describe(),
                                 "built_at": datetime.now(UTC).isoformat()})


@dg.job(
    partitions_def=EVENT_DAYS,
    description=(
        "Recompute the rollups and priced usage of one UTC day of events (a backfill): "
        "only windows that contain the day's events are rewritten."
    ),
    executor_def=dg.in_process_executor,
)
def rebuild_event_days():
    rebuild_event_day()
