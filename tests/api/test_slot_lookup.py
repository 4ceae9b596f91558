"""How a DuckDB statement finds each row's slot (`api.usage._slot`): past ASOF_BOUNDS bounds by
an ASOF join on the bounds, below by a `case`. Both must merge the same rows into the same
slots: every states read of the serving snapshot is compared both ways, on the test
warehouse's events, with slots of every hour (more bounds than ASOF_BOUNDS), cut also at
instants off the hour, and with a bucketed meter's `every` cuts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from api import usage
from api.db import make_reader
from api.usage import (
    ASOF_BOUNDS,
    Dimension,
    MeterInfo,
    Selection,
    Slots,
    fetch_distinct_values,
    fetch_group_states,
    fetch_states,
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
