"""The plain-Python pricing reference (models/pricing.py): prices, commitments, billing
periods and priced line items, on DESIGN's examples, boundaries and generated properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import pricing
from models import reference as ref
from models.catalog import Commitment, Price
from models.pricing import (
    CommitmentTerms,
    LineItem,
    LineItemPricing,
    PriceTerms,
    Tier,
    price_cost,
    subscription_periods,
)

SLAB = PriceTerms("TIERED", tier_mode="SLAB",
                  tiers=(Tier(D(5), D(0)), Tier(D(10), D(2)), Tier(None, D(3))))
VOLUME = PriceTerms("TIERED", tier_mode="VOLUME",
                    tiers=(Tier(D(10), D(50)), Tier(D(20), D(40)), Tier(None, D(30))))
PACKAGE_UP = PriceTerms("PACKAGE", amount=D(50), divide_by=10, round_up=True)
PACKAGE_DOWN = PriceTerms("PACKAGE", amount=D(50), divide_by=10, round_up=False)
PER_EVENT = PriceTerms("FLAT_FEE", amount=D(1))
T0 = datetime(2024, 1, 1, tzinfo=UTC)


# -- DESIGN's examples --------------------------------------------------------------------------
def test_slab_tiers_at_11_cost_13():
    assert price_cost(SLAB, D(11)) == 13


def test_volume_tiers_at_15_cost_600():
    assert price_cost(VOLUME, D(15)) == 600


def test_package_of_10_rounding_up_at_25_costs_150():
    assert price_cost(PACKAGE_UP, D(25)) == 150


def _count_meter(**overrides) -> ref.RefMeter:
    fields = dict(meter_id="m", event_name="call", aggregation_type="COUNT", field=None,
                  multiplier=None, bucket_size=None, group_by=None)
    return ref.RefMeter(**{**fields, **overrides})


def _events(count: int, start: datetime = T0, step: timedelta = timedelta(hours=1),
            name: str = "call", **properties) -> list[ref.RefEvent]:
    return [
        ref.RefEvent("t", "e", f"ev{i}", name, "c", start + i * step, dict(properties),
                     ingest_seq=i)
        for i in range(count)
    ]


def test_count_meter_with_amount_commitment_overage_and_true_up_charges_17_5():
    commitment = CommitmentTerms("amount", amount=D(10), overage_factor=D("1.5"),
                                 true_up_enabled=True)
    item = LineItem(_count_meter(), PER_EVENT, [(T0, T0 + timedelta(days=31))],
                    commitment=commitment)
    charge = LineItemPricing(item, _events(15)).period_charge(item.periods[0])
    assert charge.quantity == 15
    assert charge.usage_cost == 15
    assert charge.total_cost == D("17.5")
    assert (charge.commitment_utilized_amount, charge.overage_amount,
            charge.true_up_amount) == (10, D("7.5"), 0)


# -- tier and package boundaries ----------------------------------------------------------------
TINY = D("0.000000000001")


@pytest.mark.parametrize(("quantity", "expected"), [
    (D(-3), 0), (D(0), 0), (5 - TINY, 0), (D(5), 0), (5 + TINY, 2 * TINY),
    (10 - TINY, 10 - 2 * TINY), (D(10), 10), (10 + TINY, 10 + 3 * TINY), (D(11), 13),
])
def test_slab_boundaries_are_inclusive(quantity, expected):
    assert price_cost(SLAB, quantity) == expected


@pytest.mark.parametrize(("quantity", "expected"), [
    (D(-1), 0), (D(0), 0), (10 - TINY, (10 - TINY) * 50), (D(10), 500),
    (10 + TINY, (10 + TINY) * 40), (D(20), 800), (20 + TINY, (20 + TINY) * 30),
])
def test_volume_boundaries_are_inclusive(quantity, expected):
    assert price_cost(VOLUME, quantity) == expected


def test_flat_amounts_of_every_slab_touched_and_of_the_one_volume_tier():
    slab = PriceTerms("TIERED", tier_mode="SLAB", tiers=(
        Tier(D(5), D(1), D(10)), Tier(None, D(2), D(100))))
    assert price_cost(slab, D(5)) == 15
    assert price_cost(slab, D(6)) == 5 + 10 + 2 + 100
    volume = PriceTerms("TIERED", tier_mode="VOLUME", tiers=(
        Tier(D(5), D(1), D(10)), Tier(None, D(2), D(100))))
    assert price_cost(volume, D(5)) == 15
    assert price_cost(volume, D(6)) == 12 + 100
    assert price_cost(volume, D(0)) == 0


@pytest.mark.parametrize(("quantity", "up", "down"), [
    (D(-15), -50, -100), (D(0), 0, 0), (TINY, 50, 0), (10 - TINY, 50, 0), (D(10), 50, 50),
    (10 + TINY, 100, 50), (D(25), 150, 100),
])
def test_package_boundaries(quantity, up, down):
    assert price_cost(PACKAGE_UP, quantity) == up
    assert price_cost(PACKAGE_DOWN, quantity) == down


def test_flat_fee_products_round_half_away_from_zero_at_12_places():
    price = PriceTerms("FLAT_FEE", amount=D("0.333333333333"))
    assert price_cost(price, D("0.5")) == D("0.166666666667")
    assert price_cost(price, D("-0.5")) == D("-0.166666666667")


def test_money_rounds_half_away_from_zero_to_the_currency_precision():
    assert pricing.round_money(D("0.125"), "usd") == D("0.13")
    assert pricing.round_money(D("-0.125"), "usd") == D("-0.13")
    assert pricing.round_money(D("1234.5"), "jpy") == 1235
    assert pricing.round_money(D("1234.49"), "krw") == 1234


def test_quotients_round_exactly():
    assert pricing.round_quotient(D(4), 3) == D("1.333333333333")
    assert pricing.round_quotient(D(2), 3) == D("0.666666666667")
    assert pricing.round_quotient(D("-0.000000000001"), 2) == D("-0.000000000001")
    assert pricing.round_quotient(D("0.000000000001"), 3) == 0


def test_terms_from_the_catalog():
    price = Price.model_validate({
        "id": "p", "meter_id": "m", "currency": "USD", "billing_model": "PACKAGE",
        "amount": "50", "transform_quantity": {"divide_by": 10, "round": "down"},
        "billing_period": "MONTHLY"})
    terms = PriceTerms.from_price(price)
    assert (terms.currency, terms.divide_by, terms.round_up) == ("usd", 10, False)
    commitment = Commitment.model_validate({
        "price_id": "p", "commitment_type": "quantity", "quantity": "25",
        "overage_factor": "2"})
    terms_c = CommitmentTerms.from_commitment(commitment)
    assert pricing.committed_amount(terms_c, PriceTerms.from_price(price)) == 100


# -- commitments ----------------------------------------------------------------------------------
def test_commitment_outcomes():
    over = pricing.commitment_outcome(D(15), D(10), D("1.5"), True)
    assert (over.charged, over.utilized, over.overage, over.true_up) == (
        D("17.5"), 10, D("7.5"), 0)
    under = pricing.commitment_outcome(D(4), D(10), D("1.5"), True)
    assert (under.charged, under.utilized, under.overage, under.true_up) == (4, 4, 0, 6)
    no_true_up = pricing.commitment_outcome(D(4), D(10), D("1.5"), False)
    assert no_true_up.true_up == 0 and no_true_up.charged == 4


def test_rounded_commitment_parts_add_up():
    commitment = CommitmentTerms("amount", amount=D(10), true_up_enabled=True)
    price = PriceTerms("FLAT_FEE", amount=D("1.001"))  # 4 events: 4.004 -> 4.00
    item = LineItem(_count_meter(), price, [(T0, T0 + timedelta(days=1))],
                    commitment=commitment)
    charge = LineItemPricing(item, _events(5)).period_charge(item.periods[0])
    assert charge.usage_cost == D("5.01")  # 5.005
    assert charge.total_cost == 10
    assert charge.commitment_utilized_amount + charge.true_up_amount + charge.overage_amount \
        == charge.total_cost
    assert charge.overage_amount == 0


def test_windowed_commitment_applies_per_bucket_and_trues_up_empty_buckets():
    meter = _count_meter(aggregation_type="MAX", field="gpus", bucket_size="HOUR")
    commitment = CommitmentTerms("amount", amount=D(10), overage_factor=D(2),
                                 true_up_enabled=True, is_windowed=True)
    price = PriceTerms("FLAT_FEE", amount=D(1))
    item = LineItem(meter, price, [(T0, T0 + timedelta(hours=3))], commitment=commitment)
    events = [
        ref.RefEvent("t", "e", "a", "call", "c", T0 + timedelta(minutes=5), {"gpus": 7}),
        ref.RefEvent("t", "e", "b", "call", "c", T0 + timedelta(minutes=9), {"gpus": 12}),
        ref.RefEvent("t", "e", "d", "call", "c", T0 + timedelta(minutes=65), {"gpus": 4}),
    ]
    charge = LineItemPricing(item, events).period_charge(item.periods[0])
    # hour 0: max 12 -> 10 + 2 x 2 = 14; hour 1: 4 -> 4 + 6 true-up; hour 2: empty -> 10
    assert charge.quantity == 16 and charge.usage_cost == 16
    assert charge.total_cost == 14 + 4 + 6 + 10
    assert (charge.commitment_utilized_amount, charge.overage_amount,
            charge.true_up_amount) == (14, 4, 16)


# -- billing periods -----------------------------------------------------------------------
def test_monthly_periods_clamp_the_anchor_in_short_months():
    anchor = datetime(2024, 1, 31, 10, 0, tzinfo=UTC)
    periods = subscription_periods(anchor, None, anchor, "UTC", "MONTHLY", 1,
                                   until=datetime(2024, 4, 15, tzinfo=UTC))
    starts = [start.date().isoformat() for start, _ in periods]
    assert starts == ["2024-01-31", "2024-02-29", "2024-03-31"]


def test_periods_follow_the_anchor_in_the_customer_timezone_and_clip_to_the_subscription():
    start = datetime(2024, 1, 5, 12, 0, tzinfo=UTC)
    end = datetime(2024, 4, 20, tzinfo=UTC)
    anchor = datetime(2024, 1, 15, 5, 0, tzinfo=UTC)  # 00:00 in New York
    periods = subscription_periods(start, end, anchor, "America/New_York", "MONTHLY", 1,
                                   until=datetime(2030, 1, 1, tzinfo=UTC))
    assert periods[0] == (start, datetime(2024, 1, 15, 5, 0, tzinfo=UTC))
    assert periods[2] == (datetime(2024, 2, 15, 5, tzinfo=UTC),
                          datetime(2024, 3, 15, 4, tzinfo=UTC))  # DST starts on March 10
    assert periods[-1] == (datetime(2024, 4, 15, 4, tzinfo=UTC), end)


@pytest.mark.parametrize(("period", "count", "second_start"), [
    ("DAILY", 1, datetime(2024, 1, 2, tzinfo=UTC)),
    ("WEEKLY", 2, datetime(2024, 1, 15, tzinfo=UTC)),
    ("MONTHLY", 1, datetime(2024, 2, 1, tzinfo=UTC)),
    ("QUARTERLY", 1, datetime(2024, 4, 1, tzinfo=UTC)),
    ("HALF_YEARLY", 1, datetime(2024, 7, 1, tzinfo=UTC)),
    ("ANNUAL", 1, datetime(2025, 1, 1, tzinfo=UTC)),
    ("MONTHLY", 3, datetime(2024, 4, 1, tzinfo=UTC)),
])
def test_every_billing_period(period, count, second_start):
    periods = subscription_periods(T0, None, None, "UTC", period, count,
                                   until=datetime(2026, 1, 1, tzinfo=UTC))
    assert periods[0][0] == T0 and periods[1][0] == second_start


@settings(max_examples=60, deadline=None)
@given(
    start_minutes=st.integers(0, 60 * 24 * 400),
    anchor_minutes=st.integers(-60 * 24 * 60, 60 * 24 * 60),
    length_days=st.one_of(st.none(), st.integers(1, 500)),
    period=st.sampled_from(["DAILY", "WEEKLY", "MONTHLY", "QUARTERLY", "HALF_YEARLY",
                            "ANNUAL"]),
    count=st.integers(1, 3),
    tz=st.sampled_from(["UTC", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"]),
)
def test_periods_tile_the_subscription_up_to_until(start_minutes, anchor_minutes, length_days,
                                                   period, count, tz):
    start = T0 + timedelta(minutes=start_minutes, seconds=7)
    end = None if length_days is None else start + timedelta(days=length_days)
    until = datetime(2025, 6, 1, tzinfo=UTC)
    periods = subscription_periods(start, end, start + timedelta(minutes=anchor_minutes), tz,
                                   period, count, until)
    if until < start:
        assert periods == []
        return
    assert periods[0][0] == start
    for (_, previous_end), (next_start, _) in zip(periods, periods[1:], strict=False):
        assert previous_end == next_start
    assert all(lo < hi for lo, hi in periods)
    last_start, last_end = periods[-1]
    assert last_start <= until
    if end is not None and end <= until:
        assert last_end == end
    else:
        assert until < last_end


# -- line items: periods, NEVER, points ------------------------------------------------------
def test_never_reset_prices_the_marginal_usage_of_each_period():
    meter = _count_meter(reset_usage="NEVER")
    periods = [(T0, T0 + timedelta(days=1)), (T0 + timedelta(days=1), T0 + timedelta(days=2))]
    item = LineItem(meter, SLAB, periods)
    # 6 events on day one (U: 0 -> 6), 6 more on day two (U: 6 -> 12)
    pricing_ = LineItemPricing(item, _events(12, step=timedelta(hours=4)))
    first, second = (pricing_.period_charge(p) for p in periods)
    assert (first.quantity, first.opening_quantity, first.usage_cost) == (6, 0, 2)
    assert (second.quantity, second.opening_quantity) == (12, 6)
    assert second.usage_cost == price_cost(SLAB, D(12)) - price_cost(SLAB, D(6))


def test_points_are_differences_of_rounded_cumulative_costs():
    price = PriceTerms("FLAT_FEE", amount=D("0.004"))
    item = LineItem(_count_meter(), price, [(T0, T0 + timedelta(days=1))])
    events = _events(3)  # cumulative 0.004, 0.008, 0.012 -> 0.00, 0.01, 0.01
    item_pricing = LineItemPricing(item, events)
    hours = [item_pricing.point_cost(T0 + timedelta(hours=h), T0 + timedelta(hours=h + 1))
             for h in range(3)]
    assert hours == [0, D("0.01"), 0]
    assert sum(hours) == item_pricing.period_charge(item.periods[0]).usage_cost


def test_a_point_outside_every_period_has_no_cost():
    item = LineItem(_count_meter(), PER_EVENT, [(T0, T0 + timedelta(days=1))])
    assert LineItemPricing(item, _events(2)).point_cost(T0 - timedelta(hours=1), T0) is None


def test_bucketed_max_is_priced_per_bucket_and_group():
    meter = _count_meter(aggregation_type="MAX", field="gpus", bucket_size="HOUR",
                         group_by="region")
    item = LineItem(meter, SLAB, [(T0, T0 + timedelta(days=1))])
    events = [
        ref.RefEvent("t", "e", "a", "call", "c", T0, {"gpus": 8, "region": "eu"}),
        ref.RefEvent("t", "e", "b", "call", "c", T0 + timedelta(minutes=1),
                     {"gpus": 11, "region": "us"}),
        ref.RefEvent("t", "e", "d", "call", "c", T0 + timedelta(hours=1), {"gpus": 11}),
    ]
    charge = LineItemPricing(item, events).period_charge(item.periods[0])
    assert charge.quantity == 30
    assert charge.usage_cost == price_cost(SLAB, D(8)) + 2 * price_cost(SLAB, D(11))


values = st.decimals(min_value=-5, max_value=60, places=2, allow_nan=False)
prices = st.sampled_from([SLAB, VOLUME, PACKAGE_UP, PACKAGE_DOWN,
                          PriceTerms("FLAT_FEE", amount=D("0.0125"))])


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["COUNT", "SUM", "AVG", "MAX", "LATEST", "COUNT_UNIQUE"]),
    reset=st.sampled_from(["BILLING_PERIOD", "NEVER"]),
    price=prices,
    offsets=st.lists(st.tuples(st.integers(0, 6 * 24 * 60), values), max_size=25),
    commitment=st.one_of(st.none(), st.builds(
        CommitmentTerms, st.just("amount"), amount=st.sampled_from([D(1), D("12.345")]),
        overage_factor=st.sampled_from([D(1), D("1.5")]), true_up_enabled=st.booleans())),
)
def test_points_of_a_period_add_up_to_its_charge_without_true_up(kind, reset, price, offsets,
                                                                  commitment):
    meter = _count_meter(aggregation_type=kind, field=None if kind == "COUNT" else "v",
                         reset_usage=reset)
    periods = [(T0, T0 + timedelta(days=2, hours=7)), (T0 + timedelta(days=2, hours=7),
                                                        T0 + timedelta(days=6))]
    item = LineItem(meter, price, periods, commitment=commitment)
    events = [ref.RefEvent("t", "e", f"ev{i}", "call", "c", T0 + timedelta(minutes=m), {"v": v},
                           ingest_seq=i) for i, (m, v) in enumerate(offsets)]
    item_pricing = LineItemPricing(item, events)
    hours = sorted({T0 + timedelta(hours=m // 60) for m, _ in offsets})
    for period in periods:
        charge = item_pricing.period_charge(period)
        in_period = [h for h in hours if period[0] <= h < period[1]]
        # every hour with events, plus the hours between them (no events: cost 0)
        points = sum((item_pricing.point_cost(h, h + timedelta(hours=1)) for h in in_period),
                     D(0))
        charged = charge.total_cost - (charge.true_up_amount or 0)
        assert points == charged
