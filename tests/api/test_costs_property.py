"""The API's costs (api/costs.py) equal the pricing reference (models.pricing) on the random
tenants of tests/dbt/test_pricing_matches_reference.py: every aggregation type (bucketed MAX
with groups, WEIGHTED_SUM, reset_usage NEVER), every billing model, usd/eur/jpy,
commitments (amount or quantity, overage, true-up, windowed), subscriptions whose starts,
ends and anchors fall inside a minute, in awkward timezones, for random minute-aligned
ranges and points around the billing period boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api import lookups
from api.costs import ItemUsage, cost_extents, costs_for
from api.deps import Principal
from api.usage import Dimension, Point, Selection, Usage, prefetch_group_states
from models import pricing, windows
from models import reference as ref
from orchestration.warehouse import Warehouse, WarehouseConfig
from tests.api.data import PERIODS_UNTIL, build_api_warehouse
from tests.dbt.test_pricing_matches_reference import case_lists, line_items
from tests.support.pipeline import Case

pytestmark = pytest.mark.slow
# a property no event has: every selected event falls in the one group ''
ONE_GROUP = Selection(group_by=(Dimension.property("mh_no_such_property"),))


def reference_cost(priced: pricing.LineItemPricing, lo, hi) -> Decimal:
    """Marginal cost of [lo, hi) plus the true-up of every period ending in (lo, hi]."""
    total = priced.point_cost(lo, hi) or Decimal(0)
    currency = priced.item.price.currency
    for period in priced.item.periods:
        if lo < period[1] <= hi:
            charged = pricing.round_money(priced.charged_cost(period, period[1]), currency)
            total += priced.period_charge(period).total_cost - charged
    return total


def _minute(value):
    return value.replace(second=0, microsecond=0)


def check_costs(warehouse: Warehouse, case: Case, until: datetime, customer_id: str,
                lo: datetime, hi: datetime, cuts: list[datetime],
                selection: Selection | None = None) -> int:
    """costs_for of every metered item of `customer_id` over [lo, hi), with points between
    `cuts`, against models.pricing on the customer's events; how many items it compared.
    With a `selection` that keeps every event in one group (`ONE_GROUP`), the costs come from
    the per-event states instead of the whole meter's."""
    principal = Principal(case.tenant_id, case.environment_id, "test")
    meters = {m.id: m for m in lookups.meters(warehouse, principal)}
    latest = [e for e in ref.deduplicate(case.events) if e.external_customer_id == customer_id]
    priced = [(item, pricing.LineItemPricing(item, latest))
              for _sub, _price, item, customer in line_items(case, until)
              if customer == customer_id]
    customer = lookups.customer_by_external_id(warehouse, principal, customer_id)
    calendar = lookups.customer_calendar(warehouse, principal, customer_id)
    anchor = windows.anchor_from_key(calendar.month_anchor_key, customer.timezone)
    bounds = sorted({lo, hi, *(c for c in cuts if lo < c < hi)})
    points = [Point(a, b, Decimal(0), 0) for a, b in zip(bounds, bounds[1:], strict=False)]
    key = ("",) * len(selection.group_by) if selection else ()
    items = [ItemUsage(lookups.Feature(f"f_{meter_id}", meter_id, meter_id, None, None, None,
                                       None, None), {}, Usage(Decimal(0), 0, list(points)), key)
             for meter_id in sorted({item.meter.meter_id for item, _ in priced})]
    got = costs_for(warehouse, principal, customer, [customer], lo, hi, None, items, set(),
                    meters=meters, selection=selection, month_anchor=anchor)
    if selection is not None:
        # the same costs from the usage read widened to the line items' periods, as an events
        # request reads them (its windows' boundaries here: the points')
        extents = {meter_id: (since, [*at, *bounds]) for meter_id, (since, at)
                   in cost_extents(warehouse, principal, customer, lo, hi, meters).items()}
        shared: dict = {}
        prefetch_group_states(warehouse, [meters[m].info() for m in extents], [customer_id], lo,
                              hi, None, customer.timezone, anchor, selection, extents, shared)
        again = costs_for(warehouse, principal, customer, [customer], lo, hi, None, items,
                          set(), meters=meters, selection=selection, month_anchor=anchor,
                          shared=shared)
        assert [(c.total_cost, c.point_costs) for c in again.items] == [
            (c.total_cost, c.point_costs) for c in got.items], (case.tenant_id, customer_id)
    for item, cost in zip(items, got.items, strict=True):
        mine = [p for li, p in priced if li.meter.meter_id == item.feature.meter_id
                and any(a < hi and b > lo for a, b in li.periods)]
        context = (case.tenant_id, customer_id, item.feature.meter_id, lo, hi)
        want = sum((reference_cost(p, lo, hi) for p in mine), Decimal(0))
        assert cost.total_cost == want, (context, cost.total_cost, want)
        for point, point_cost in zip(points, cost.point_costs, strict=True):
            want = sum((p.point_cost(point.start, point.end) or Decimal(0) for p in mine),
                       Decimal(0))
            assert point_cost == want, (context, point, point_cost, want)
    return len(items)


@settings(max_examples=3, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture,
                                 HealthCheck.large_base_example])
@given(all_cases=case_lists(), data=st.data())
def test_costs_of_random_ranges_match_the_reference(tmp_path_factory, all_cases, data):
    config = WarehouseConfig(target="duckdb",
                             duckdb_path=str(tmp_path_factory.mktemp("costs") / "w.duckdb"))
    build_api_warehouse(config, all_cases)
    # the periods the warehouse holds run up to the later of "now" and the last event
    until = max([PERIODS_UNTIL, *(e.timestamp for c in all_cases for e in c.events)])
    compared = 0
    with Warehouse(config) as warehouse:
        for case in all_cases:
            subscribed = sorted({customer for *_, customer in line_items(case, until)})
            for customer_id in subscribed:
                bounds = sorted({b for *_, item, customer in line_items(case, until)
                                 if customer == customer_id for p in item.periods[:8] for b in p})
                center = _minute(data.draw(st.sampled_from(bounds)))
                lo = center - timedelta(minutes=data.draw(st.integers(0, 60 * 30)))
                hi = center + timedelta(minutes=data.draw(st.integers(1, 60 * 24 * 40)))
                span = int((hi - lo).total_seconds() // 60)
                cuts = [*(_minute(b) for b in bounds),
                        *(lo + timedelta(minutes=data.draw(st.integers(0, span)))
                          for _ in range(3))]
                for selection in (None, ONE_GROUP):
                    compared += check_costs(warehouse, case, until, customer_id, lo, hi, cuts,
                                            selection)
    assert compared > 0


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("postgres",
                                                         marks=pytest.mark.postgres)])
def test_billing_periods_that_start_inside_a_minute(tmp_path, request, engine):
    """Subscriptions starting, ending and anchored at odd seconds, with events in the very
    minutes their periods change: those minutes are split at the boundary (from the event
    values), so usage counts from the exact instant, as the reference counts it."""
    start = datetime(2024, 1, 1, 0, 0, 30, tzinfo=UTC)
    anchor = datetime(2024, 1, 2, 12, 0, 45, 500, tzinfo=UTC)
    aggregations = [
        {"type": "SUM", "field": "v"}, {"type": "COUNT"}, {"type": "AVG", "field": "v"},
        {"type": "MAX", "field": "v"}, {"type": "LATEST", "field": "v"},
        {"type": "COUNT_UNIQUE", "field": "v"}, {"type": "WEIGHTED_SUM", "field": "v"},
        {"type": "MAX", "field": "v", "bucket_size": "HOUR", "group_by": "g"},
    ]
    meters = [{"id": f"m{i}", "name": f"m{i}", "event_name": "e", "aggregation": agg,
               "reset_usage": "NEVER" if i in (0, 6) else "BILLING_PERIOD"}
              for i, agg in enumerate(aggregations)]
    prices = [{"id": f"p{i}", "meter_id": f"m{i}", "currency": "usd", "billing_period": "DAILY",
               "billing_model": "TIERED", "tier_mode": "SLAB",
               "tiers": [{"up_to": 3, "unit_amount": "0.5", "flat_amount": "1"},
                         {"up_to": None, "unit_amount": "0.25"}]}
              for i in range(len(meters))]
    catalog = {
        "tenant_id": "odd", "environment_id": "prod", "meters": meters, "prices": prices,
        "plans": [{"id": "plan", "name": "Plan", "price_ids": [p["id"] for p in prices]}],
        "customers": [{"id": "cus", "external_id": "c", "timezone": "Asia/Kathmandu"}],
        "subscriptions": [{
            "id": "sub", "customer_id": "cus", "plan_id": "plan", "currency": "usd",
            "start_date": start.isoformat(), "end_date": "2024-01-05T06:00:20Z",
            "billing_anchor": anchor.isoformat(), "billing_period": "DAILY",
            "commitments": [{"price_id": "p0", "commitment_type": "amount", "amount": "4",
                             "overage_factor": "2", "true_up_enabled": True}]}],
    }
    case = Case("odd", catalog)
    boundaries = [start, *(anchor + timedelta(days=d) for d in range(3)),
                  datetime(2024, 1, 5, 6, 0, 20, tzinfo=UTC)]
    seq = 0
    for boundary in boundaries:
        for offset in (-29, -1, 0, 1, 14, 61, 3600):
            seq += 1
            case.events.append(ref.RefEvent(
                "odd", "prod", f"e{seq}", "e", "c", boundary + timedelta(seconds=offset),
                {"v": seq % 7 - 1, "g": "ab"[seq % 2]}, ingest_seq=seq))
    config = (WarehouseConfig(target="duckdb", duckdb_path=str(tmp_path / "w.duckdb"))
              if engine == "duckdb" else request.getfixturevalue("pg_config"))
    build_api_warehouse(config, [case])
    until = max(PERIODS_UNTIL, *(e.timestamp for e in case.events))
    minute = timedelta(minutes=1)
    cuts = [_minute(b) + k * minute for b in boundaries for k in (0, 1)]
    with Warehouse(config) as warehouse:
        for lo, hi in [(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 6, tzinfo=UTC)),
                       (_minute(anchor), _minute(anchor) + minute),
                       (_minute(anchor) + minute, datetime(2024, 1, 3, 12, 1, tzinfo=UTC)),
                       (datetime(2024, 1, 3, 13, 0, tzinfo=UTC),
                        datetime(2024, 1, 5, 6, 1, tzinfo=UTC))]:
            for selection in (None, ONE_GROUP):
                assert check_costs(warehouse, case, until, "c", lo, hi, cuts,
                                   selection) == len(meters)

