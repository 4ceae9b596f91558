"""Meters with CEL expressions, built by dbt, equal cel-python (the reference), on DuckDB and
Postgres.

Hypothesis draws many tenants at once, each with several expression meters (random expressions
of the whole supported grammar, random aggregation types and multipliers, sometimes a field the
expression replaces) and events with random property values: ints, decimals, numeric strings,
missing, bad strings, nulls, booleans, zero divisors, values at the edges of the double range.
Tenant t0 also carries the examples of the issue. One dbt build covers them all (only the models
on the way to fct_meter_usage and fct_meter_event_errors: dbt start-up and builds cost seconds).
Then, for every (event, meter), the quantity and the error of int_meter_events equal the
reference's (to 1e-9 relative), the recorded errors are exactly the reference's, and the DAY
rows of fct_meter_usage equal the reference's usage.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from models import reference as ref
from models.catalog import Catalog, CatalogFile
from orchestration.calendar import write_calendars
from orchestration.catalog_tables import write_catalog
from orchestration.defs.dbt.project import run_dbt
from orchestration.ingest import ensure_raw_tables
from orchestration.warehouse import Warehouse, WarehouseConfig
from tests.support.cel_strategies import (
    ISSUE_EXAMPLES,
    close_enough,
    meter_expressions,
    property_sets,
)
from tests.support.pipeline import Case, _events_table, ref_meter

pytestmark = pytest.mark.slow

START = datetime(2024, 3, 1, tzinfo=UTC)
FAR_START = datetime(2023, 1, 1, tzinfo=UTC)
FAR_END = datetime(2026, 1, 1, tzinfo=UTC)
MODELS = ["+fct_meter_usage", "+fct_meter_event_errors"]
LARGEST_QUANTITY = Decimal("1e15")


@st.composite
def expression_meters(draw, index: int) -> dict:
    kind = draw(st.sampled_from(["SUM", "SUM", "SUM", "MAX", "LATEST", "SUM_WITH_MULTIPLIER"]))
    aggregation: dict = {"type": kind, "expression": draw(meter_expressions(4))}
    if kind == "SUM_WITH_MULTIPLIER" or draw(st.integers(0, 3)) == 0:
        aggregation["multiplier"] = draw(st.sampled_from(["2", "0.5", "-1", "1.25"]))
    if draw(st.integers(0, 5)) == 0:
        aggregation["field"] = "a"  # the expression replaces the field
    return {
        "id": f"m{index}",
        "name": f"meter {index}",
        "event_name": "e",
        "aggregation": aggregation,
    }


def issue_case() -> Case:
    """Tenant t0: one meter per example of the issue, and an event carrying its values."""
    meters, events = [], []
    for index, (expression, properties, _) in enumerate(ISSUE_EXAMPLES):
        meters.append(
            {
                "id": f"issue{index}",
                "name": expression,
                "event_name": f"e{index}",
                "aggregation": {"type": "SUM", "expression": expression},
            }
        )
        events.append(
            ref.RefEvent(
                "t0",
                "prod",
                f"ev{index}",
                f"e{index}",
                "c0",
                START + timedelta(minutes=index),
                properties,
                ingest_seq=index + 1,
            )
        )
    catalog = {
        "tenant_id": "t0",
        "environment_id": "prod",
        "meters": meters,
        "customers": [{"id": "cus0", "external_id": "c0"}],
    }
    return Case("t0", catalog, events)


@st.composite
def cases(draw, index: int) -> Case:
    tenant = f"t{index}"
    meters = [draw(expression_meters(i)) for i in range(draw(st.integers(2, 4)))]
    events = [
        ref.RefEvent(
            tenant,
            "prod",
            f"ev{n}",
            "e",
            "c0",
            START
            + timedelta(
                minutes=draw(st.integers(0, 3 * 24 * 60)),
                microseconds=draw(st.sampled_from([0, 1])),
            ),
            draw(property_sets()),
            ingest_seq=index * 1000 + n,
        )
        for n in range(draw(st.integers(1, 15)))
    ]
    catalog = {
        "tenant_id": tenant,
        "environment_id": "prod",
        "meters": meters,
        "customers": [{"id": "cus0", "external_id": "c0", "timezone": "UTC"}],
    }
    case = Case(tenant, catalog, events)
    # Sums of usable quantities must stay far below what the marts hold (values are
    # decimal(38, 18)); huge quantities and the errors at the edges are tested in
    # tests/models/test_cel.py.
    case.events = [
        e for e in events if all(_moderate(expression_meter(case, m), e) for m in meters)
    ]
    return case


def _moderate(meter: ref.RefMeter, event: ref.RefEvent) -> bool:
    quantity = ref.event_quantity(meter, event)
    return not isinstance(quantity, Decimal) or abs(quantity) < LARGEST_QUANTITY


@st.composite
def case_lists(draw) -> list[Case]:
    return [issue_case()] + [draw(cases(i)) for i in range(1, draw(st.integers(8, 12)))]


def expression_meter(case: Case, meter: dict) -> ref.RefMeter:
    base = ref_meter(case.tenant_id, case.environment_id, meter)
    return dataclasses.replace(base, expression=meter["aggregation"]["expression"])


def build(config: WarehouseConfig, cases: list[Case]) -> None:
    """The cases into the warehouse (replacing an earlier example's), then one dbt build.

    Examples share one warehouse, so that dbt parses the project once (its target folder is
    per warehouse) and each example costs one build.
    """
    catalog = Catalog(environments=[CatalogFile.model_validate(c.catalog) for c in cases])
    with Warehouse(config) as warehouse:
        write_catalog(warehouse, catalog)
        ensure_raw_tables(warehouse)
        with warehouse.transaction():
            warehouse.execute(f"delete from {warehouse.table('raw_events')}")
            warehouse.append_arrow("raw_events", _events_table(cases))
        write_calendars(warehouse)
    run_dbt(["build", "--select", *MODELS], config)


def check_quantities(warehouse: Warehouse, case: Case, meter: ref.RefMeter) -> int:
    p = warehouse.ph
    rows = warehouse.query(
        f"select event_id, quantity, quantity_error from {warehouse.table('int_meter_events')} "
        f"where tenant_id = {p} and meter_id = {p}",
        [case.tenant_id, meter.meter_id],
    )
    actual = {event_id: (quantity, error) for event_id, quantity, error in rows}
    matching = [e for e in case.events if ref.event_matches(meter, e)]
    assert set(actual) == {e.event_id for e in matching}, meter
    compared = 0
    for event in matching:
        expected = ref.event_quantity(meter, event)
        quantity, error = actual[event.event_id]
        context = (meter.expression, meter.multiplier, event.properties, quantity, error, expected)
        if isinstance(expected, ref.QuantityError):
            assert quantity is None and error is not None, context
        else:
            assert error is None and quantity is not None, context
            assert close_enough(quantity, expected), context
            compared += 1
    errors = {
        r[0]
        for r in warehouse.query(
            f"select event_id from {warehouse.table('fct_meter_event_errors')} "
            f"where tenant_id = {p} and meter_id = {p}",
            [case.tenant_id, meter.meter_id],
        )
    }
    assert errors == {
        e.event_id for e in matching if isinstance(ref.event_quantity(meter, e), ref.QuantityError)
    }, meter
    return compared


def check_daily_usage(warehouse: Warehouse, case: Case, meter: ref.RefMeter) -> None:
    p = warehouse.ph
    rows = warehouse.query(
        f"select window_start, value, event_count from {warehouse.table('fct_meter_usage')} "
        f"where tenant_id = {p} and meter_id = {p} and window_size = 'DAY'",
        [case.tenant_id, meter.meter_id],
    )
    actual = {start.astimezone(UTC): (value, count) for start, value, count in rows}
    expected = ref.usage(meter, case.events, FAR_START, FAR_END, "DAY", "UTC")
    assert set(actual) == {point.start for point in expected.points}, meter
    for point in expected.points:
        value, count = actual[point.start]
        assert count == point.event_count, (meter, point)
        assert close_enough(value, point.value), (meter, point, value)


def run_and_compare(config: WarehouseConfig, all_cases: list[Case]) -> None:
    build(config, all_cases)
    compared = 0
    with Warehouse(config) as warehouse:
        for case in all_cases:
            for meter in case.catalog["meters"]:
                ref_meter_ = expression_meter(case, meter)
                compared += check_quantities(warehouse, case, ref_meter_)
                check_daily_usage(warehouse, case, ref_meter_)
        issue = dict(
            warehouse.query(
                f"select meter_id, quantity from {warehouse.table('int_meter_events')} "
                f"where tenant_id = 't0'"
            )
        )
    assert [issue[f"issue{i}"] for i in range(len(ISSUE_EXAMPLES))] == [
        expected for _, _, expected in ISSUE_EXAMPLES
    ]
    assert compared > len(ISSUE_EXAMPLES)


SETTINGS = settings(
    max_examples=3,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a dbt build per try: no shrinking
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
        HealthCheck.large_base_example,
    ],
)


@SETTINGS
@given(all_cases=case_lists())
def test_duckdb_expressions_match_cel_python(duckdb_config, all_cases):
    run_and_compare(duckdb_config, all_cases)


@pytest.mark.postgres
@SETTINGS
@given(all_cases=case_lists())
def test_postgres_expressions_match_cel_python(pg_config, all_cases):
    run_and_compare(pg_config, all_cases)
