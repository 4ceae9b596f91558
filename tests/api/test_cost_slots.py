"""`api.costs.StatePricing` on states merged per slot (`api.usage.Slots`): the same costs as on
the minute states at every slot boundary, and a refusal, never a guess, at an instant inside
a slot (pure: no warehouse). The API's costs against the pricing reference, slots included,
are tests/api/test_costs_property.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.costs import StatePricing
from models import pricing
from models import reference as ref
from models import states as ms

T0 = datetime(2024, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
PERIODS = [(T0, T0 + 2 * DAY), (T0 + 2 * DAY, T0 + 4 * DAY)]
SLAB = pricing.PriceTerms("TIERED", tier_mode="SLAB", tiers=(
    pricing.Tier(D(5), D("1.5")), pricing.Tier(D(20), D("0.75"), D(2)), pricing.Tier(None, D(0))))
METER = ref.RefMeter("m", "call", "SUM", "n", None, None, None)


def _state(at: datetime, total: D, count: int) -> ms.MinuteState:
    return ms.MinuteState("", at, count, count, 0, total, total, None, None, None, None, None)


def _pricing(states: list[ms.MinuteState], bounds=None) -> StatePricing:
    line = pricing.LineItem(meter=METER, price=SLAB, periods=PERIODS)
    return StatePricing(line, (), states, [], D(0), bounds)


minutes = st.lists(st.tuples(st.integers(0, 4 * 24 * 60 - 1), st.integers(1, 9)), max_size=30)


@settings(max_examples=60, deadline=None)
@given(minutes=minutes, cuts=st.lists(st.integers(1, 4 * 24 - 1), max_size=6))
def test_slot_states_cost_what_minute_states_cost(minutes, cuts):
    by_minute: dict[datetime, D] = {}
    for minute, amount in minutes:
        at = T0 + timedelta(minutes=minute)
        by_minute[at] = by_minute.get(at, D(0)) + amount
    bounds = sorted({T0, T0 + 2 * DAY, T0 + 4 * DAY, *(T0 + timedelta(hours=h) for h in cuts)})
    slots: dict[datetime, list[D]] = {}
    for at, amount in by_minute.items():
        slots.setdefault(max(b for b in bounds if b <= at), []).append(amount)
    per_minute = _pricing([_state(at, amount, 1) for at, amount in sorted(by_minute.items())])
    per_slot = _pricing([_state(at, sum(amounts), len(amounts))
                         for at, amounts in sorted(slots.items())], frozenset(bounds))
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        assert per_slot.window_cost(lo, hi) == per_minute.window_cost(lo, hi)
    assert per_slot.range_cost(T0, T0 + 4 * DAY) == per_minute.range_cost(T0, T0 + 4 * DAY)


def test_an_instant_inside_a_slot_is_refused():
    priced = _pricing([_state(T0 + timedelta(hours=1), D(7), 3)],
                      frozenset({T0, T0 + 2 * DAY, T0 + 4 * DAY}))
    assert priced.window_cost(T0, T0 + 2 * DAY) == D(11)  # 5 × 1.5, then 2 flat + 2 × 0.75
    with pytest.raises(ValueError, match="inside a slot"):
        priced.window_cost(T0, T0 + DAY)
