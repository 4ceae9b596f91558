"""The read path over hour-aligned ranges (where minute states merge into hours before they
leave the warehouse) equals the reference, on the random tenants of
tests/dbt/test_usage_matches_reference.py (that test covers minute-aligned ranges); and the
per-event read (group_by and filters) equals the whole-meter read."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.usage import Dimension, Selection, grouped_usage, load_meter, meter_usage
from models import reference as ref
from orchestration.warehouse import Warehouse, WarehouseConfig
from tests.api.data import build_api_warehouse
from tests.dbt.test_usage_matches_reference import (
    TIMEZONES,
    WINDOWS,
    _close,
    _periods,
    case_lists,
)

pytestmark = pytest.mark.slow
TOLERANCE = Decimal("1e-20")
# a property no event has: every selected event falls in the one group ''
ONE_GROUP = Selection(group_by=(Dimension.property("mh_no_such_property"),))


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture,
                                 HealthCheck.large_base_example])
@given(all_cases=case_lists(), data=st.data())
def test_hour_aligned_ranges_match_the_reference(tmp_path_factory, all_cases, data):
    config = WarehouseConfig(target="duckdb",
                             duckdb_path=str(tmp_path_factory.mktemp("grain") / "w.duckdb"))
    build_api_warehouse(config, all_cases)
    compared = 0
    with Warehouse(config) as warehouse:
        for case in all_cases:
            latest = ref.deduplicate(case.events)
            if not latest:
                continue
            first = min(e.timestamp for e in latest).replace(minute=0, second=0, microsecond=0)
            for meter in case.ref_meters():
                info = load_meter(warehouse, case.tenant_id, case.environment_id, meter.meter_id)
                for customer in sorted({e.external_customer_id for e in latest}):
                    lo = first - timedelta(hours=data.draw(st.integers(0, 48)))
                    hi = lo + timedelta(hours=data.draw(st.integers(1, 24 * 45)))
                    window = data.draw(st.sampled_from([None, *WINDOWS]))
                    tz = data.draw(st.sampled_from(TIMEZONES))
                    anchor = case.customer_anchor(customer)
                    mine = [e for e in latest if e.external_customer_id == customer]
                    want = ref.usage(meter, mine, lo, hi, window, tz, anchor,
                                     _periods(case, customer),
                                     bucket_tz=case.customer_timezone(customer))
                    got = meter_usage(warehouse, info, customer, lo, hi, window, tz, anchor)
                    context = (case.tenant_id, meter, customer, lo, hi, window, tz, anchor)
                    assert got.event_count == want.event_count, context
                    assert _close(meter.aggregation_type, got.total, want.total, TOLERANCE), (
                        context, got.total, want.total)
                    assert [(p.start, p.event_count) for p in got.points] == [
                        (p.start, p.event_count) for p in want.points], context
                    for g, e in zip(got.points, want.points, strict=True):
                        assert _close(meter.aggregation_type, g.value, e.value,
                                      TOLERANCE), (context, g, e)
                    # the per-event read (serving_meter_event_values), all events in one
                    # group, equals the whole-meter read (a group whose events all lack a
                    # value counts none, and the API leaves it out, as here)
                    grouped = {key: usage for key, usage in grouped_usage(
                        warehouse, info, [customer], lo, hi, window, tz, anchor,
                        selection=ONE_GROUP).items() if usage.event_count > 0}
                    if got.event_count == 0:
                        assert grouped == {}, context
                    else:
                        assert list(grouped) == [("",)], context
                        assert grouped[("",)].total == got.total, context
                        assert grouped[("",)].points == got.points, context
                    compared += 1
    assert compared > 0 or not any(case.events for case in all_cases)
