"""Priced usage: the plain-Python reference of DESIGN 3 "Prices" and 3b.8.

The oracle the dbt pricing marts are compared with, so it favours the obvious over the fast.
It turns a price (FLAT_FEE, PACKAGE, TIERED VOLUME or SLAB), a commitment and a meter's
usage into money, per billing period of a subscription and per window point:

- ``price_cost(price, quantity)`` is C(q), the cost of a quantity before rounding;
- ``subscription_periods(...)`` are the billing periods of a subscription;
- ``LineItemPricing`` prices one subscription line item (a subscription x a USAGE price) on
  one customer's events: the cost of each billing period and of any window point.

Money is exact decimal. The only roundings are the documented ones:
- every product of two numbers (amount x quantity, unit_amount x quantity in a tier,
  overage x overage_factor) is rounded half away from zero to 12 decimal places, the scale of
  the warehouse's decimal(38, 12) (as quantity x multiplier already is, models/reference.py);
- AVG and WEIGHTED_SUM quantities are rounded half away from zero to 12 decimal places before
  they are priced (they are quotients; every other quantity already has at most 12 places);
- costs are rounded half away from zero to the currency's precision (2; 0 for jpy, krw, vnd,
  clp) once per line item and billing period, and point costs are differences of rounded
  cumulative costs (3b.8), so the points of a period add up to its usage cost exactly.

Decisions where DESIGN is silent:
- Quantity 0 costs 0. A negative quantity: FLAT_FEE charges amount x q (a credit); PACKAGE
  charges amount x packages with the same rounding (round up: ceil(-15 / 10) = -1); TIERED
  charges 0 (a negative quantity touches no tier).
- Only USAGE prices are priced here. FIXED prices (recurring fees with no meter) are line
  items of the subscription but have no usage.
- Billing periods are those of the subscription (anchor, billing_period, count) in the
  customer's timezone, clipped to [start_date, end_date): an anchor after start_date makes a
  short first period. Open-ended subscriptions have periods up to the one holding `until`
  (the later of now and the last event).
- reset_usage NEVER: U(x) counts from the subscription start, and a billing period costs
  C(U(end)) - C(U(start)) (a marginal cost); its commitment applies to that period cost.
- Bucketed MAX meters are priced per (bucket, group) on the part of each bucket inside the
  billing period (3b.8), whatever reset_usage says; buckets are the customer's calendar
  (timezone and MONTH anchor of the meter usage windows).
- Commitments are per billing period. Quantity commitments are worth C(quantity). The cost
  charged so far in a period is g(x) = x below the commitment amount A and
  A + (x - A) x overage_factor above it. The true-up (A - x when the period ends below A and
  true_up_enabled) is charged once, at the period's end: it is part of the period's
  total_cost but of no point. Windowed commitments (is_windowed) apply per meter bucket
  (bucketed MAX meters only; otherwise the period is the one window), and the true-up counts
  every bucket of the period, including those without events, as Flexprice does.
- Rounded commitment parts always add up: total = utilized + overage + true_up, with
  total and utilized rounded and the rounding remainder given to the overage when there is
  one, else to the true-up.
- WEIGHTED_SUM's cumulative value changes between events, so its points (only buckets with
  events exist) do not add up to the period cost; every other aggregation's do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, Inexact, InvalidOperation
from fractions import Fraction

from models import reference as ref
from models import windows
from models.catalog import Commitment, Price, currency_precision

ZERO = Decimal(0)
_SCALE = Decimal("1e-12")
# Wide enough that sums and products of decimal(38, 12) values are exact; traps on rounding.
_EXACT = Context(prec=120, traps=[InvalidOperation, Inexact])
_ROUNDING = Context(prec=120, rounding=ROUND_HALF_UP, traps=[InvalidOperation])
_TICK = timedelta(microseconds=1)

Period = tuple[datetime, datetime]


# --------------------------------------------------------------------------------------------
# Numbers


def round_half_away(value: Decimal | Fraction, places: int) -> Decimal:
    """`value` rounded half away from zero to `places` decimal places, exactly."""
    if isinstance(value, Fraction):
        scaled = abs(value) * 10**places
        whole, remainder = divmod(scaled.numerator, scaled.denominator)
        if 2 * remainder >= scaled.denominator:
            whole += 1
        result = Decimal(whole).scaleb(-places, _EXACT)
        return -result if value < 0 else result
    return value.quantize(Decimal(1).scaleb(-places), context=_ROUNDING)


def round_product(a: Decimal, b: Decimal) -> Decimal:
    """a x b rounded half away from zero to 12 places (the scale of decimal(38, 12))."""
    return round_half_away(_EXACT.multiply(a, b), 12)


def round_quotient(numerator: Decimal, denominator: Decimal | int) -> Decimal:
    """numerator / denominator rounded half away from zero to 12 places, exactly."""
    return round_half_away(Fraction(numerator) / Fraction(denominator), 12)


def round_money(amount: Decimal, currency: str) -> Decimal:
    """An amount rounded half away from zero to the currency's precision (DESIGN 3)."""
    return round_half_away(amount, currency_precision(currency))


def _add(*values: Decimal) -> Decimal:
    total = ZERO
    for value in values:
        total = _EXACT.add(total, value)
    return total


# --------------------------------------------------------------------------------------------
# Prices


@dataclass(frozen=True)
class Tier:
    """`price.PriceTier`: up_to inclusive, None for the last tier."""

    up_to: Decimal | None
    unit_amount: Decimal
    flat_amount: Decimal | None = None


@dataclass(frozen=True)
class PriceTerms:
    """What a USAGE price says about turning a quantity into money."""

    billing_model: str
    currency: str = "usd"
    amount: Decimal | None = None
    divide_by: int | None = None
    round_up: bool = True
    tier_mode: str | None = None
    tiers: tuple[Tier, ...] = ()

    @classmethod
    def from_price(cls, price: Price) -> PriceTerms:
        transform = price.transform_quantity
        return cls(
            billing_model=str(price.billing_model),
            currency=price.currency,
            amount=price.amount,
            divide_by=transform.divide_by if transform else None,
            round_up=(str(transform.round) == "up") if transform else True,
            tier_mode=str(price.tier_mode) if price.tier_mode else None,
            tiers=tuple(Tier(t.up_to, t.unit_amount, t.flat_amount) for t in price.tiers),
        )


def packages(quantity: Decimal, divide_by: int, round_up: bool = True) -> Decimal:
    """Whole packages of `divide_by` units: ceil(q / divide_by), or floor when rounding down."""
    fraction = Fraction(quantity) / divide_by
    whole = fraction.numerator // fraction.denominator  # floor
    if round_up and whole != fraction:
        whole += 1
    return Decimal(whole)


def volume_cost(tiers: Sequence[Tier], quantity: Decimal) -> Decimal:
    """Every unit at the one tier the quantity falls in (up_to inclusive), plus its flat fee."""
    if quantity <= 0:
        return ZERO
    for tier in tiers:
        if tier.up_to is None or quantity <= tier.up_to:
            return _add(round_product(tier.unit_amount, quantity), tier.flat_amount or ZERO)
    raise ValueError("the last tier must have up_to null")


def slab_cost(tiers: Sequence[Tier], quantity: Decimal) -> Decimal:
    """Tiers filled in order, each unit at its own tier, plus the flat fee of every tier touched."""
    total = ZERO
    tier_start = ZERO
    for tier in tiers:
        if quantity <= tier_start:
            break
        tier_end = quantity if tier.up_to is None else min(quantity, tier.up_to)
        units = _EXACT.subtract(tier_end, tier_start)
        total = _add(total, round_product(tier.unit_amount, units), tier.flat_amount or ZERO)
        if tier.up_to is None:
            break
        tier_start = tier.up_to
    return total


def price_cost(price: PriceTerms, quantity: Decimal) -> Decimal:
    """C(q): the cost of a quantity under a price, before rounding to the currency."""
    if quantity == 0:
        return ZERO
    model = price.billing_model
    if model == "FLAT_FEE":
        return round_product(_required(price.amount, "amount"), quantity)
    if model == "PACKAGE":
        count = packages(quantity, _required(price.divide_by, "divide_by"), price.round_up)
        return _EXACT.multiply(_required(price.amount, "amount"), count)
    if model == "TIERED":
        if price.tier_mode == "VOLUME":
            return volume_cost(price.tiers, quantity)
        if price.tier_mode == "SLAB":
            return slab_cost(price.tiers, quantity)
        raise ValueError(f"unknown tier_mode {price.tier_mode!r}")
    raise ValueError(f"unknown billing_model {model!r}")


def _required(value, name: str):
    if value is None:
        raise ValueError(f"the price needs {name}")
    return value


# --------------------------------------------------------------------------------------------
# Commitments


@dataclass(frozen=True)
class CommitmentTerms:
    """CommitmentInfo's fields on one line item."""

    commitment_type: str  # amount | quantity
    amount: Decimal | None = None
    quantity: Decimal | None = None
    overage_factor: Decimal = Decimal(1)
    true_up_enabled: bool = False
    is_windowed: bool = False

    @classmethod
    def from_commitment(cls, commitment: Commitment) -> CommitmentTerms:
        return cls(
            commitment_type=str(commitment.commitment_type),
            amount=commitment.amount,
            quantity=commitment.quantity,
            overage_factor=commitment.overage_factor,
            true_up_enabled=commitment.true_up_enabled,
            is_windowed=commitment.is_windowed,
        )


def committed_amount(commitment: CommitmentTerms, price: PriceTerms) -> Decimal:
    """A, the commitment as money: the amount, or the cost of the committed quantity."""
    if commitment.commitment_type == "amount":
        return _required(commitment.amount, "amount")
    return price_cost(price, _required(commitment.quantity, "quantity"))


def committed_charge(cost: Decimal, amount: Decimal, overage_factor: Decimal) -> Decimal:
    """g(x): usage cost x as charged under a commitment of `amount` (no true-up)."""
    if cost < amount:
        return cost
    return _add(amount, round_product(_EXACT.subtract(cost, amount), overage_factor))


@dataclass(frozen=True)
class CommitmentOutcome:
    """Exact parts of a charge under a commitment: charged = utilized + overage."""

    charged: Decimal
    utilized: Decimal
    overage: Decimal
    true_up: Decimal

    def __add__(self, other: CommitmentOutcome) -> CommitmentOutcome:
        return CommitmentOutcome(
            _add(self.charged, other.charged),
            _add(self.utilized, other.utilized),
            _add(self.overage, other.overage),
            _add(self.true_up, other.true_up),
        )


NO_CHARGE = CommitmentOutcome(ZERO, ZERO, ZERO, ZERO)


def commitment_outcome(
    cost: Decimal, amount: Decimal, overage_factor: Decimal, true_up_enabled: bool
) -> CommitmentOutcome:
    """Usage cost at or above the commitment: commitment + overage x factor; below it: the
    usage cost, and with true-up the shortfall on top (Flexprice's CommitmentInfo)."""
    charged = committed_charge(cost, amount, overage_factor)
    if cost >= amount:
        return CommitmentOutcome(charged, amount, _EXACT.subtract(charged, amount), ZERO)
    true_up = _EXACT.subtract(amount, cost) if true_up_enabled else ZERO
    return CommitmentOutcome(charged, cost, ZERO, true_up)


# --------------------------------------------------------------------------------------------
# Billing periods


def subscription_periods(
    start: datetime,
    end: datetime | None,
    anchor: datetime | None,
    tz: str,
    period: str,
    count: int,
    until: datetime,
) -> list[Period]:
    """Billing periods of a subscription, clipped to [start, end), in order.

    Periods follow the anchor (default: the start) in the customer's timezone
    (``windows.billing_periods``: day clamped to short months). Only periods starting at or
    before `until` are listed, so an open subscription ends with the period holding `until`.
    """
    if until < start:
        return []
    span_end = until + _TICK if end is None else min(end, until + _TICK)
    periods = windows.billing_periods(anchor or start, tz, start, span_end, period, count)
    clipped = []
    for period_start, period_end in periods:
        period_start = max(period_start, start)
        if end is not None:
            period_end = min(period_end, end)
        clipped.append((period_start, period_end))
    return clipped


# --------------------------------------------------------------------------------------------
# A priced line item


@dataclass(frozen=True)
class LineItem:
    """One subscription line item with a USAGE price, for one customer.

    `periods` are the subscription's billing periods (``subscription_periods``); `timezone`
    and `month_anchor` are the customer's calendar, which meter buckets are read in.
    """

    meter: ref.RefMeter
    price: PriceTerms
    periods: list[Period]
    timezone: str = "UTC"
    month_anchor: datetime | None = None
    commitment: CommitmentTerms | None = None

    @property
    def is_bucketed(self) -> bool:
        return self.meter.aggregation_type == "MAX" and bool(self.meter.bucket_size)

    @property
    def is_windowed(self) -> bool:
        return self.commitment is not None and self.commitment.is_windowed and self.is_bucketed


@dataclass(frozen=True)
class PeriodCharge:
    """One billing period of a line item: its usage and what it costs (money rounded)."""

    period_start: datetime
    period_end: datetime
    quantity: Decimal
    opening_quantity: Decimal
    event_count: int
    usage_cost: Decimal
    total_cost: Decimal
    commitment_amount: Decimal | None = None
    commitment_utilized_amount: Decimal | None = None
    overage_amount: Decimal | None = None
    true_up_amount: Decimal | None = None


@dataclass
class LineItemPricing:
    """Prices a line item on one customer's deduplicated events (any events: the meter's
    matching and quantities decide which count)."""

    item: LineItem
    events: Iterable[ref.RefEvent]
    contributions: list[ref.Contribution] = field(init=False)

    def __post_init__(self) -> None:
        meter = self.item.meter
        matching = [
            (event, ref.event_quantity(meter, event))
            for event in self.events
            if ref.event_matches(meter, event)
        ]
        self.contributions = sorted(ref.usable(matching), key=lambda c: ref.latest_order(c[0]))

    # -- usage --------------------------------------------------------------------------------
    def origin(self, period: Period) -> datetime:
        """Where usage is counted from: the period start, or the subscription start (NEVER)."""
        if self.item.meter.reset_usage == "NEVER" and not self.item.is_bucketed:
            return self.item.periods[0][0]
        return period[0]

    def _between(self, lo: datetime, hi: datetime) -> list[ref.Contribution]:
        return [(e, q) for e, q in self.contributions if lo <= e.timestamp < hi]

    def quantity(self, lo: datetime, hi: datetime) -> Decimal:
        """The meter's usage over [lo, hi), as priced (AVG and WEIGHTED_SUM to 12 places)."""
        meter = self.item.meter
        kind = ref.aggregation_name(meter.aggregation_type)
        items = self._between(lo, hi)
        if self.item.is_bucketed:
            return ref.bucketed_max(
                items, meter.bucket_size, meter.group_by, self.item.timezone,
                self.item.month_anchor,
            )[0]
        if kind == "AVG":
            if not items:
                return ZERO
            return round_quotient(_add(*(q for _, q in items)), len(items))
        if kind == "WEIGHTED_SUM":
            return self._weighted_mean(lo, hi)
        return ref.aggregate(kind, items)[0]

    def _weighted_mean(self, lo: datetime, hi: datetime) -> Decimal:
        """Mean level over [lo, hi); the level starts from every earlier event for NEVER
        meters and from 0 at lo otherwise (lo is then a billing period start)."""
        length = _micros(hi - lo)
        if length <= 0:
            return ZERO
        earlier = [] if self.item.meter.reset_usage != "NEVER" else [
            q for e, q in self.contributions if e.timestamp < lo
        ]
        integral = _EXACT.multiply(_add(*earlier), length)
        for event, quantity in self._between(lo, hi):
            integral = _add(integral, _EXACT.multiply(quantity, _micros(hi - event.timestamp)))
        return round_quotient(integral, length)

    # -- cumulative costs ---------------------------------------------------------------------
    def _bucket_costs(self, lo: datetime, hi: datetime) -> dict[datetime, Decimal]:
        """Bucketed meters: Σ over groups of C(max) for each bucket's part inside [lo, hi)."""
        meter = self.item.meter
        maxima: dict[tuple[datetime, str], Decimal] = {}
        for event, quantity in self._between(lo, hi):
            bucket = windows.bucket_start(
                event.timestamp, meter.bucket_size, self.item.timezone, self.item.month_anchor
            )
            key = (bucket, ref.group_value(event, meter.group_by) if meter.group_by else "")
            maxima[key] = max(maxima[key], quantity) if key in maxima else quantity
        costs: dict[datetime, Decimal] = {}
        for (bucket, _), maximum in maxima.items():
            costs[bucket] = _add(costs.get(bucket, ZERO), price_cost(self.item.price, maximum))
        return costs

    def raw_cost(self, period: Period, t: datetime) -> Decimal:
        """K_p(t): usage cost of the period from its start to t, at list price."""
        if self.item.is_bucketed:
            return _add(*self._bucket_costs(period[0], t).values())
        origin = self.origin(period)
        cost_to = price_cost(self.item.price, self.quantity(origin, t))
        cost_before = price_cost(self.item.price, self.quantity(origin, period[0]))
        return _EXACT.subtract(cost_to, cost_before)

    def commitment_amount(self) -> Decimal | None:
        if self.item.commitment is None:
            return None
        return committed_amount(self.item.commitment, self.item.price)

    def charged_cost(self, period: Period, t: datetime) -> Decimal:
        """K'_p(t): the cost charged so far in the period (commitment applied, no true-up)."""
        commitment = self.item.commitment
        if commitment is None:
            return self.raw_cost(period, t)
        amount, factor = self.commitment_amount(), commitment.overage_factor
        if self.item.is_windowed:
            return _add(*(
                committed_charge(cost, amount, factor)
                for cost in self._bucket_costs(period[0], t).values()
            ))
        return committed_charge(self.raw_cost(period, t), amount, factor)

    # -- periods and points -------------------------------------------------------------------
    def period_charge(self, period: Period) -> PeriodCharge:
        start, end = period
        origin = self.origin(period)
        currency = self.item.price.currency
        raw = self.raw_cost(period, end)
        charge = PeriodCharge(
            period_start=start,
            period_end=end,
            quantity=self.quantity(origin, end),
            opening_quantity=self.quantity(origin, start),
            event_count=len(self._between(start, end)),
            usage_cost=round_money(raw, currency),
            total_cost=round_money(raw, currency),
        )
        commitment = self.item.commitment
        if commitment is None:
            return charge
        amount = self.commitment_amount()
        if self.item.is_windowed:
            outcome = self._windowed_outcome(period, amount)
        else:
            outcome = commitment_outcome(
                raw, amount, commitment.overage_factor, commitment.true_up_enabled
            )
        total = round_money(_add(outcome.charged, outcome.true_up), currency)
        utilized = round_money(outcome.utilized, currency)
        if outcome.overage == 0:
            true_up = total - utilized
        else:
            true_up = round_money(outcome.true_up, currency)
        return dataclasses.replace(
            charge,
            total_cost=total,
            commitment_amount=amount,
            commitment_utilized_amount=utilized,
            overage_amount=total - utilized - true_up,
            true_up_amount=true_up,
        )

    def _windowed_outcome(self, period: Period, amount: Decimal) -> CommitmentOutcome:
        commitment = self.item.commitment
        costs = self._bucket_costs(*period)
        outcome = NO_CHARGE
        for cost in costs.values():
            outcome += commitment_outcome(
                cost, amount, commitment.overage_factor, commitment.true_up_enabled
            )
        all_buckets = windows.buckets_between(
            period[0], period[1], self.item.meter.bucket_size, self.item.timezone,
            self.item.month_anchor,
        )
        empty = len(all_buckets) - len(costs)
        if commitment.true_up_enabled and empty > 0:
            outcome += CommitmentOutcome(ZERO, ZERO, ZERO, _EXACT.multiply(amount, empty))
        return outcome

    def point_cost(self, start: datetime, end: datetime) -> Decimal | None:
        """Cost of the window [start, end): Σ over the billing periods it meets of
        round(K'(piece end)) - round(K'(piece start)); None when it meets none."""
        currency = self.item.price.currency
        total: Decimal | None = None
        for period in self.item.periods:
            lo, hi = max(start, period[0]), min(end, period[1])
            if lo >= hi:
                continue
            piece = round_money(self.charged_cost(period, hi), currency) - round_money(
                self.charged_cost(period, lo), currency
            )
            total = piece if total is None else total + piece
        return total


def _micros(duration: timedelta) -> int:
    return duration // _TICK


__all__ = [
    "CommitmentOutcome",
    "CommitmentTerms",
    "LineItem",
    "LineItemPricing",
    "PeriodCharge",
    "PriceTerms",
    "Tier",
    "commitment_outcome",
    "committed_amount",
    "committed_charge",
    "packages",
    "price_cost",
    "round_half_away",
    "round_money",
    "round_product",
    "round_quotient",
    "slab_cost",
    "subscription_periods",
    "volume_cost",
]
