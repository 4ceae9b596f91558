"""How a DuckDB statement finds each row's slot (`api.usage._slot`): past ASOF_BOUNDS bounds by
an ASOF join on the bounds, below by a `case`. Both must merge the same rows into the same
slots: every states read of the serving snapshot is compared both ways, on the test
warehouse's events, with slots of every hour (more bounds than ASOF_BOUNDS), cut also at
instants off the hour, and with a bucketed meter's `every` cuts. Also: which slots an events
request's widened read is cut into."""

from __future__ import annotations

from datetime import timedelta

import pytest

from api import lookups, usage
from api.costs import cost_extents
from api.db import make_reader
from api.deps import Principal
from api.usage import (
    ASOF_BOUNDS,
    Dimension,
    MeterInfo,
    Selection,
    Slots,
    fetch_distinct_values,
    fetch_group_states,
    fetch_states,
    prefetch_group_states,
    window_cuts,
)
from tests.api.data import PERIOD_END, T0

METERS = ("mtr_calls", "mtr_tokens", "mtr_latency", "mtr_peak", "mtr_users", "mtr_level")
END = PERIOD_END + timedelta(days=3)
# every hour from T0 to END, and two cuts inside an hour (a billing period may start anywhere)
HOURLY = Slots.of([T0 + timedelta(hours=h) for h in range(1, 24 * 10)]
                  + [T0 + timedelta(hours=30, minutes=17), T0 + timedelta(hours=99, minutes=1)],
                  T0, END)
# mtr_peak's HOUR buckets inside half-day slots
BUCKETED = Slots(tuple(T0 + timedelta(hours=h) for h in range(0, 24 * 10 + 1, 12)), (60, T0))


def _meter(meter_id: str) -> MeterInfo:
    return MeterInfo("acme", "production", meter_id, "SUM", None, "BILLING_PERIOD")


def _reads(warehouse, grain) -> dict:
    """Every read that merges states per slot, for cust_1 over [T0, END)."""
    found = {}
    for meter_id in METERS:
        meter = _meter(meter_id)
        found[("states", meter_id)] = fetch_states(warehouse, meter, "cust_1", T0, END, grain)
        found[("distinct", meter_id)] = fetch_distinct_values(warehouse, meter, "cust_1", T0,
                                                              END, grain)
    by_region = Selection(group_by=(Dimension.source(), Dimension.property("region")))
    found["groups"] = {
        key: (data.states, data.distinct, sorted(data.sources))
        for key, data in fetch_group_states(
            warehouse, _meter(METERS[0]), ["cust_1"], T0, END, by_region, "", grain,
            meter_ids=list(METERS), distinct_ids=["mtr_users"], latest_ids=["mtr_level"]
        ).items()}
    return found


@pytest.mark.parametrize("grain", [HOURLY, BUCKETED], ids=["hourly", "bucketed"])
def test_slots_found_by_a_join_are_those_of_the_case(duckdb_settings, monkeypatch, grain):
    assert grain is not None and len(grain.bounds) - 1 > ASOF_BOUNDS
    reader = make_reader(duckdb_settings)
    statements: list[str] = []
    try:
        with reader.open() as warehouse:
            query = warehouse.query

            def spy(sql, params=None):
                statements.append(sql)
                return query(sql, params)

            monkeypatch.setattr(warehouse, "query", spy)
            joined = _reads(warehouse, grain)
            by_join, statements[:] = [s for s in statements if "slot" in s], []
            monkeypatch.setattr(usage, "ASOF_BOUNDS", 10**6)
            cased = _reads(warehouse, grain)
            by_case = [s for s in statements if "slot" in s]
    finally:
        reader.close()
    assert by_join and all("asof join" in sql for sql in by_join)
    assert by_case and not any("asof join" in sql for sql in by_case)
    assert joined == cased
    # the reads found something in most slots, or the comparison would say little
    assert len({s.minute_start for s in joined[("states", "mtr_calls")]}) > 20
    assert joined["groups"]


def test_a_read_widened_for_costs_cuts_windows_only_inside_the_request(duckdb_settings):
    """An events request's read, widened back to the billing period's start for its costs,
    is cut at the request's windows from the request's start only: before it, the costs ask
    the usage at the billing period boundaries alone (fewer slots, the same answers)."""
    start, end = T0 + timedelta(days=2), T0 + timedelta(days=5)
    reader = make_reader(duckdb_settings)
    try:
        with reader.open() as warehouse:
            principal = Principal("acme", "production", "test")
            customer = lookups.customer_by_external_id(warehouse, principal, "cust_1")
            meters = {m.id: m for m in lookups.meters(warehouse, principal)}
            extents = cost_extents(warehouse, principal, customer, start, end, meters)
            shared: dict = {}
            prefetch_group_states(warehouse, [meters[m].info() for m in extents], ["cust_1"],
                                  start, end, "DAY", customer.timezone, None,
                                  Selection(group_by=(Dimension.source(),)), extents, shared)
            windows = window_cuts(start, end, "DAY", customer.timezone, None)
    finally:
        reader.close()
    assert shared and any(extents[m][0] < start - timedelta(days=2) for m in shared)
    for meter_id, (_, grain) in shared.items():
        since, cuts = extents[meter_id]
        assert grain.bounds[0] == since
        assert {at for at in grain.bounds if at < start} <= {since, *cuts}, meter_id
        assert {start, *windows} <= set(grain.bounds), meter_id
