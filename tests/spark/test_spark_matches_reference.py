"""The same dbt project on Apache Spark gives the plain-Python reference's numbers.

Each Spark build costs minutes (a JVM, then every model and test as Spark jobs), so one
generated example covers everything in ONE dbt build of one schema: the usage tenants of
tests/dbt/test_usage_matches_reference.py (every aggregation type, filters, multipliers,
buckets and groups, awkward timezones and anchors, good, bad and duplicate values around DST
transitions: every fct_meter_usage row at all ten window sizes), CEL expression meters with the
issue's examples (tests/dbt/test_cel_matches_reference.py: per-event quantities, errors, DAY
usage) and priced tenants with DESIGN's four examples (tests/dbt/test_pricing_matches_reference
.py: every priced period and point). A second build of the same schema, as a batch run with a
new event and a corrected one, must equal the reference for the new history (on Spark the
incremental models rebuild in full: macros/incremental/incremental.sql).
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from orchestration.build_state import plan_build, record_build
from orchestration.defs.dbt.project import run_dbt
from orchestration.warehouse import Warehouse
from tests.dbt import test_cel_matches_reference as cel_test
from tests.dbt import test_pricing_matches_reference as pricing_test
from tests.dbt import test_usage_matches_reference as usage_test
from tests.support.pipeline import _events_table

pytestmark = [pytest.mark.slow, pytest.mark.spark]

ONE_BUILD = settings(
    max_examples=1,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # each try is a Spark build: no shrinking
    suppress_health_check=list(HealthCheck),
)


@st.composite
def all_tenants(draw) -> dict[str, list]:
    families = {
        "usage": [draw(usage_test.cases(i)) for i in range(200, 200 + draw(st.integers(6, 8)))],
        "cel": [cel_test.issue_case(), *(draw(cel_test.cases(i)) for i in range(1, 4))],
        "pricing": [pricing_test.design_examples(),
                    *(draw(pricing_test.cases(i)) for i in range(10, 15))],
    }
    # tenants t0-t3 (CEL), t10-t14 and examples (pricing), t200+ (usage); each family
    # numbers ingest_seq from its own base: keep them apart, order kept
    for offset, cases in enumerate(families.values()):
        for case in cases:
            case.events = [dataclasses.replace(e, ingest_seq=offset * 10**9 + e.ingest_seq)
                           for e in case.events]
    return families


def _check_cel(warehouse: Warehouse, cases: list) -> int:
    compared = 0
    for case in cases:
        for meter in case.catalog["meters"]:
            ref_meter = cel_test.expression_meter(case, meter)
            compared += cel_test.check_quantities(warehouse, case, ref_meter)
            cel_test.check_daily_usage(warehouse, case, ref_meter)
    issue = dict(warehouse.query(
        f"select meter_id, quantity from {warehouse.table('int_meter_events')} "
        "where tenant_id = 't0'"))
    assert [issue[f"issue{i}"] for i in range(len(cel_test.ISSUE_EXAMPLES))] == [
        expected for _, _, expected in cel_test.ISSUE_EXAMPLES]
    return compared


def _check_pricing(warehouse: Warehouse, cases: list, everything: list) -> tuple[int, int]:
    # open subscriptions get periods up to the last event of the whole warehouse
    last_event = max((e.timestamp for c in everything for e in c.events),
                     default=pricing_test.NOW)
    until = max(pricing_test.NOW, last_event)
    pricing_test.check_design_examples(warehouse)
    periods = sum(pricing_test.check_periods(warehouse, case, until) for case in cases)
    points = sum(pricing_test.check_points(warehouse, case, until) for case in cases)
    return periods, points


def _batch_run(config, usage_cases: list) -> None:
    """New events after the build, as the orchestrator's batch run sees them: a correction
    (same event id, later ingest_seq, new value) and a new event, then `dbt build --vars`."""
    with Warehouse(config) as warehouse:  # what the orchestrator records after a build
        record_build(warehouse, plan_build(warehouse), datetime.now(UTC))
    case = next(c for c in usage_cases if c.events)
    built_through = max(e.ingest_seq for c in usage_cases for e in c.events)
    first = case.events[0]
    correction = dataclasses.replace(first, ingest_seq=built_through + 1,
                                     properties={**first.properties, "v": 7})
    late = dataclasses.replace(first, event_id="late", ingest_seq=built_through + 2,
                               timestamp=first.timestamp - timedelta(days=3))
    case.events += [correction, late]
    with Warehouse(config) as warehouse:
        warehouse.append_arrow("raw_events", _events_table([case])
                               .slice(len(case.events) - 2, 2))
    run_dbt(["build", "--select", "+fct_meter_usage", "+fct_meter_event_errors"], config,
            dbt_vars={"mh_batch_from": built_through, "mh_batch_to": built_through + 2})


@ONE_BUILD
@given(tenants=all_tenants())
def test_spark_matches_reference(spark_config, tenants):
    config = spark_config()
    started = time.monotonic()
    everything = tenants["usage"] + tenants["cel"] + tenants["pricing"]
    pricing_test.build_priced_warehouse(config, everything)
    built = time.monotonic() - started
    with Warehouse(config) as warehouse:
        rows = usage_test.check_mart_against_reference(warehouse, tenants["usage"])
        quantities = _check_cel(warehouse, tenants["cel"])
        periods, points = _check_pricing(warehouse, tenants["pricing"], everything)
    assert rows > 0 and quantities > 0 and periods > 0 and points > 0
    _batch_run(config, tenants["usage"])
    with Warehouse(config) as warehouse:
        rows_after = usage_test.check_mart_against_reference(warehouse, tenants["usage"])
    print(f"Spark: built in {built:.0f} s, batch run in "
          f"{time.monotonic() - started - built:.0f} s more; compared {rows} usage rows "
          f"({rows_after} after the batch run), {quantities} CEL quantities, {periods} priced "
          f"periods and {points} priced points")
