"""Costs of `/v1/events/analytics` items from the customer's subscriptions (DESIGN 3, 3b.8).

Everything comes from tables the pipeline precomputed and the serving snapshot holds: the
catalog (`catalog_subscriptions`, `catalog_plan_prices`, `catalog_prices`,
`catalog_price_tiers`, `catalog_subscription_commitments`, `catalog_plans`), the billing
periods (`subscription_billing_periods`) and the meter's minute states
(`fct_meter_usage_minutely`, or `serving_meter_event_values` for filtered and grouped items,
as `api.usage` reads them). Raw events are never read.

How an item is priced:
- its line items are the customer's subscriptions × the USAGE prices of their plans on the
  item's meter, with billing periods meeting [start, end); with `include_children` the usage
  of the whole family is priced on the requested customer's subscriptions;
- the usage U(t) counted from each period's start (the subscription's start for
  reset_usage NEVER) is evaluated on the item's own minute states (its group, filters and
  sources: 3b.8 "each item is priced on its own usage"), and C, the commitment and the
  rounding are those of `models.pricing` (the formulas the reference and the marts share);
- the item's cost over [start, end) is Σ over billing periods of round(K'(hi)) − round(K'(lo))
  (marginal, so consecutive ranges add up to the invoice), plus the true-up of every period
  whose end lies in (start, end] (docs/ARCHITECTURE.md, Decisions); point costs are the same
  differences over each point's part of the range, so they add up to the item's cost
  without the true-up (WEIGHTED_SUM aside: its cumulative value moves between events).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import accumulate
from typing import Any

from api.db import catalog_lookup, catalog_query, environment_scope
from api.deps import Principal
from api.encoding import decimal_text, rfc3339
from api.lookups import Customer, Feature, Meter
from api.usage import (
    FAR_PAST,
    Grain,
    Group,
    MeterInfo,
    Selection,
    Slots,
    Usage,
    _dec,
    _group_columns,
    _GroupStates,
    _matched_cte,
    _out_dec,
    _out_ts,
    _ts,
    fetch_distinct_values,
    fetch_group_states,
    fetch_states,
    group_levels_before,
    level_before,
    meter_bucket_slots,
)
from api.usage import MINUTE as MINUTE_GRAIN
from models import pricing, windows
from models import reference as ref
from models import states as st
from orchestration.warehouse import Warehouse

ZERO = Decimal(0)
_EXACT = pricing._EXACT
_US_PER_SECOND = 1_000_000
MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class ItemUsage:
    """One analytics item to price: a feature's usage for one group of dimension values."""

    feature: Feature
    group: dict[str, str]
    usage: Usage
    key: Group = ()  # the group's values in `Selection.group_by` order


@dataclass
class ItemCost:
    total_cost: Decimal = ZERO
    point_costs: list[Decimal] = field(default_factory=list)  # aligned with usage.points
    currency: str | None = None
    price_id: str | None = None
    plan_id: str | None = None
    subscription_id: str | None = None
    sub_line_item_id: str | None = None
    commitment_info: dict[str, Any] | None = None
    expanded: dict[str, dict[str, Any]] = field(default_factory=dict)  # price, plan, ...
    # windowed commitments: (utilized, overage, true-up) of each point, aligned with points
    point_parts: list[tuple[Decimal, Decimal, Decimal]] | None = None

    @classmethod
    def zero(cls, points: int) -> ItemCost:
        return cls(point_costs=[ZERO] * points)


@dataclass
class CostResult:
    currency: str | None
    total_cost: Decimal
    items: list[ItemCost]  # aligned with the items given to costs_for
    extra_items: list[tuple[ItemUsage, ItemCost]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Line items from the catalog


@dataclass(frozen=True)
class LineItemInfo:
    """A subscription × a USAGE price of its plan, with what prices it and its periods."""

    subscription: dict[str, Any]
    price: dict[str, Any]
    tiers: list[dict[str, Any]]
    plan: dict[str, Any]
    commitment: dict[str, Any] | None
    periods: list[pricing.Period]

    @property
    def id(self) -> str:
        return f"{self.subscription['subscription_id']}:{self.price['price_id']}"

    @property
    def meter_id(self) -> str:
        return self.price["meter_id"]

    def terms(self) -> pricing.PriceTerms:
        price = self.price
        return pricing.PriceTerms(
            billing_model=price["billing_model"],
            currency=price["currency"],
            amount=price["amount"],
            divide_by=price["transform_divide_by"],
            round_up=price["transform_round"] != "down",
            tier_mode=price["tier_mode"],
            tiers=tuple(pricing.Tier(t["up_to"], t["unit_amount"], t["flat_amount"])
                        for t in self.tiers),
        )

    def commitment_terms(self) -> pricing.CommitmentTerms | None:
        c = self.commitment
        if c is None:
            return None
        return pricing.CommitmentTerms(
            commitment_type=c["commitment_type"], amount=c["commitment_amount"],
            quantity=c["commitment_quantity"], overage_factor=c["overage_factor"],
            true_up_enabled=bool(c["true_up_enabled"]), is_windowed=bool(c["is_windowed"]))


def _select(warehouse: Warehouse, principal: Principal, table: str, columns: str,
            where: str = "", params: tuple[Any, ...] = (), order: str = ""
            ) -> list[dict[str, Any]]:
    """Rows of a catalog table in the caller's tenant environment, as dicts."""
    p = warehouse.ph
    names = [name.strip() for name in columns.split(",")]
    rows = catalog_query(
        warehouse,
        f"select {columns} from {warehouse.table(table)} "
        f"where tenant_id = {p} and environment_id = {p}{where}"
        + (f" order by {order}" if order else ""),
        [principal.tenant_id, principal.environment_id, *params])
    return [dict(zip(names, row, strict=True)) for row in rows]


def line_items(warehouse: Warehouse, principal: Principal, customer: Customer,
               end: datetime) -> list[LineItemInfo]:
    """The customer's metered line items, in subscription start, subscription and plan order,
    each with its billing periods starting before `end`."""
    scope = environment_scope(principal.tenant_id, principal.environment_id)
    columns = ("subscription_id, customer_id, external_customer_id, plan_id, currency, "
               "start_date, end_date, billing_anchor, billing_period, billing_period_count")
    subscriptions = [
        dict(zip([name.strip() for name in columns.split(",")], row, strict=True))
        for row in catalog_lookup(warehouse, "catalog_subscriptions", columns, scope,
                                  [("customer_id", customer.id)], "start_date, subscription_id")]
    if not subscriptions:
        return []
    for sub in subscriptions:
        for column in ("start_date", "end_date", "billing_anchor"):
            sub[column] = _ts(sub[column])
    prices = {row["price_id"]: row for row in _select(
        warehouse, principal, "catalog_prices",
        "price_id, price_type, meter_id, currency, billing_model, tier_mode, amount, "
        "transform_divide_by, transform_round, billing_period, billing_period_count, "
        "display_name, description")}
    tiers: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in _select(warehouse, principal, "catalog_price_tiers",
                       "price_id, tier_index, up_to, unit_amount, flat_amount",
                       order="price_id, tier_index"):
        tiers[row["price_id"]].append(row)
    plan_prices: dict[str, list[str]] = defaultdict(list)
    for row in _select(warehouse, principal, "catalog_plan_prices", "plan_id, price_id",
                       order="plan_id, position"):
        plan_prices[row["plan_id"]].append(row["price_id"])
    plans = {row["plan_id"]: row for row in _select(
        warehouse, principal, "catalog_plans", "plan_id, name, description")}
    commitments = {(row["subscription_id"], row["price_id"]): row for row in _select(
        warehouse, principal, "catalog_subscription_commitments",
        "subscription_id, price_id, commitment_type, commitment_amount, commitment_quantity, "
        "overage_factor, true_up_enabled, is_windowed")}
    periods: dict[str, list[pricing.Period]] = {}
    for sub in subscriptions:
        rows = catalog_lookup(warehouse, "subscription_billing_periods",
                              "period_start, period_end", scope,
                              [("subscription_id", sub["subscription_id"])], "period_index")
        periods[sub["subscription_id"]] = [
            (_ts(lo), _ts(hi)) for lo, hi in rows if _ts(lo) < end]
    found = []
    for sub in subscriptions:
        for price_id in plan_prices.get(sub["plan_id"], []):
            price = prices.get(price_id)
            if price is None or price["price_type"] != "USAGE" or not price["meter_id"]:
                continue
            found.append(LineItemInfo(
                subscription=sub, price=price, tiers=tiers.get(price_id, []),
                plan=plans.get(sub["plan_id"], {"plan_id": sub["plan_id"], "name": None,
                                                 "description": None}),
                commitment=commitments.get((sub["subscription_id"], price_id)),
                periods=periods.get(sub["subscription_id"], [])))
    return found


def response_currency(warehouse: Warehouse, principal: Principal, customer: Customer,
                      start: datetime, end: datetime) -> str | None:
    """The currency of the customer's subscriptions: the first one active in the range, else
    the first one at all; None without a subscription."""
    rows = catalog_lookup(
        warehouse, "catalog_subscriptions", "currency, start_date, end_date",
        environment_scope(principal.tenant_id, principal.environment_id),
        [("customer_id", customer.id)], "start_date, subscription_id")
    for currency, sub_start, sub_end in rows:
        if _ts(sub_start) < end and (sub_end is None or _ts(sub_end) > start):
            return currency
    return rows[0][0] if rows else None


# --------------------------------------------------------------------------------------------
# A line item priced on minute states


@dataclass
class StatePricing(pricing.LineItemPricing):
    """`models.pricing.LineItemPricing` with the usage read from minute states, not events.

    The cost formulas (raw and charged cost, commitments, point costs, rounding) are the
    reference's own; only `quantity` and `_bucket_costs` are answered from the states: sums,
    counts, maxima, the latest value and the weighted moment of each minute (states from
    `fetched_from` on; `opening_level` is the WEIGHTED_SUM level before it).
    """

    states: list[st.MinuteState] = field(default_factory=list)
    distinct: list[tuple[datetime, str]] = field(default_factory=list)
    opening_level: Decimal = ZERO
    # the states are merged per slot between these instants (`Slots`); None: per minute
    bounds: frozenset[datetime] | None = None

    def __post_init__(self) -> None:
        self.contributions = []
        self.states = sorted(self.states, key=lambda s: s.minute_start)
        self._minutes = [s.minute_start for s in self.states]
        self.distinct = sorted(self.distinct)
        self._distinct_minutes = [m for m, _ in self.distinct]
        self._quantities: dict[tuple[datetime, datetime], Decimal] = {}
        self._buckets: dict[tuple[datetime, datetime], dict[datetime, Decimal]] = {}
        self._bucket_starts: dict[datetime, datetime] = {}
        valued = [s.value_sum if s.value_count else ZERO for s in self.states]
        self._sum = list(accumulate(valued, _EXACT.add, initial=ZERO))
        self._count = list(accumulate((s.event_count for s in self.states), initial=0))
        self._value_count = list(accumulate((s.value_count for s in self.states), initial=0))
        if self.item.meter.aggregation_type == "WEIGHTED_SUM":
            # Σ (value_sum × minute_us + moment): ∫ level dt = level₀·len + t·Σsum − this
            self._moment = list(accumulate(
                (_EXACT.add(_EXACT.multiply(s.value_sum, _micros(s.minute_start)),
                            s.weighted_moment_us or ZERO) if s.value_count else ZERO
                 for s in self.states), _EXACT.add, initial=ZERO))

    def _index(self, at: datetime) -> int:
        if self.bounds is not None and at not in self.bounds:
            # a usage up to an instant inside a slot cannot be told from merged states
            raise ValueError(f"costs asked at {at}, inside a slot of the states read")
        return bisect_left(self._minutes, at)

    def quantity(self, lo: datetime, hi: datetime) -> Decimal:
        """The usage over [lo, hi) as priced (AVG and WEIGHTED_SUM to 12 places)."""
        key = (lo, hi)
        if key not in self._quantities:
            self._quantities[key] = self._quantity(lo, hi)
        return self._quantities[key]

    def _quantity(self, lo: datetime, hi: datetime) -> Decimal:
        meter = self.item.meter
        kind = meter.aggregation_type
        if hi <= lo:
            return ZERO
        a, b = self._index(lo), self._index(hi)
        if self.item.is_bucketed:
            return _sum_exact(self._bucket_maxima(lo, hi).values())
        if kind == "COUNT":
            return Decimal(self._count[b] - self._count[a])
        if kind in ("SUM", "SUM_WITH_MULTIPLIER"):
            return _EXACT.subtract(self._sum[b], self._sum[a])
        if kind == "AVG":
            count = self._value_count[b] - self._value_count[a]
            if count == 0:
                return ZERO
            return pricing.round_quotient(_EXACT.subtract(self._sum[b], self._sum[a]), count)
        if kind in ("MAX", "LATEST"):
            return st.merge_simple(kind, self.states[a:b])
        if kind == "COUNT_UNIQUE":
            d0 = bisect_left(self._distinct_minutes, lo)
            d1 = bisect_left(self._distinct_minutes, hi)
            return Decimal(len({value for _, value in self.distinct[d0:d1]}))
        if kind == "WEIGHTED_SUM":
            return self._weighted_mean(lo, hi)
        raise ValueError(f"unknown aggregation type {kind!r}")

    def _weighted_mean(self, lo: datetime, hi: datetime) -> Decimal:
        """Mean level over [lo, hi): from every earlier event for NEVER meters, from 0 at lo
        otherwise (lo is then a billing period start), as the reference has it."""
        length = _micros(hi) - _micros(lo)
        a, b = self._index(lo), self._index(hi)
        level = ZERO
        if self.item.meter.reset_usage == "NEVER":
            level = _EXACT.add(self.opening_level, self._sum[a])
        in_range = _EXACT.subtract(self._sum[b], self._sum[a])
        integral = _EXACT.add(
            _EXACT.multiply(level, length),
            _EXACT.subtract(_EXACT.multiply(in_range, _micros(hi)),
                            _EXACT.subtract(self._moment[b], self._moment[a])))
        return pricing.round_quotient(integral, length)

    def _bucket_maxima(self, lo: datetime, hi: datetime) -> dict[tuple[datetime, str], Decimal]:
        meter = self.item.meter
        maxima: dict[tuple[datetime, str], Decimal] = {}
        for s in self.states[self._index(lo):self._index(hi)]:
            if s.value_count == 0:
                continue
            bucket = self._bucket_of(s.minute_start)
            key = (bucket, s.group_value if meter.group_by else "")
            maxima[key] = s.value_max if key not in maxima else max(maxima[key], s.value_max)
        return maxima

    def _bucket_of(self, minute: datetime) -> datetime:
        if minute not in self._bucket_starts:
            self._bucket_starts[minute] = windows.bucket_start(
                minute, self.item.meter.bucket_size, self.item.timezone, self.item.month_anchor)
        return self._bucket_starts[minute]

    def _bucket_costs(self, lo: datetime, hi: datetime) -> dict[datetime, Decimal]:
        key = (lo, hi)
        if key not in self._buckets:
            costs: dict[datetime, Decimal] = {}
            for (bucket, _), maximum in self._bucket_maxima(lo, hi).items():
                costs[bucket] = _EXACT.add(costs.get(bucket, ZERO),
                                           pricing.price_cost(self.item.price, maximum))
            self._buckets[key] = costs
        return self._buckets[key]

    # -- the cost of a range ------------------------------------------------------------------
    def utilized_cost(self, period: pricing.Period, t: datetime, amount: Decimal) -> Decimal:
        """The part of the period's cost so far that the commitment covers."""
        if self.item.is_windowed:
            return _sum_exact(min(cost, amount)
                              for cost in self._bucket_costs(period[0], t).values())
        return min(self.raw_cost(period, t), amount)

    def true_up(self, period: pricing.Period) -> Decimal:
        """The exact true-up charged at the period's end (0 without one)."""
        commitment = self.item.commitment
        if commitment is None or not commitment.true_up_enabled:
            return ZERO
        amount = self.commitment_amount()
        if self.item.is_windowed:
            return self._windowed_outcome(period, amount).true_up
        return pricing.commitment_outcome(self.raw_cost(period, period[1]), amount,
                                          commitment.overage_factor, True).true_up

    def range_cost(self, start: datetime, end: datetime) -> RangeCost:
        """Cost of [start, end): the charged differences of the periods it meets, plus the
        true-up of each period ending inside (start, end], with CommitmentInfo's parts."""
        currency = self.item.price.currency

        def money(value: Decimal) -> Decimal:
            return pricing.round_money(value, currency)

        result = RangeCost()
        amount = self.commitment_amount()
        for period in self.item.periods:
            lo, hi = max(start, period[0]), min(end, period[1])
            if lo >= hi:
                continue
            result.periods += 1
            charged = money(self.charged_cost(period, hi)) - money(self.charged_cost(period, lo))
            result.charged += charged
            if amount is None:
                continue
            utilized = (money(self.utilized_cost(period, hi, amount))
                        - money(self.utilized_cost(period, lo, amount)))
            true_up = ZERO
            if start < period[1] <= end:
                exact = self.true_up(period)
                charged_end = self.charged_cost(period, period[1])
                true_up = money(_EXACT.add(charged_end, exact)) - money(charged_end)
                if charged_end != self.utilized_cost(period, period[1], amount):
                    true_up = money(exact)  # with an overage, as models.pricing splits it
                result.true_up_total += money(_EXACT.add(charged_end, exact)) - money(
                    charged_end)
            result.utilized += utilized
            result.true_up += true_up
        result.overage = result.charged + result.true_up_total - result.utilized - result.true_up
        return result

    def window_cost(self, start: datetime, end: datetime) -> Decimal:
        return self.point_cost(start, end) or ZERO

    def window_utilized(self, start: datetime, end: datetime) -> Decimal:
        """The commitment-covered part of a window's cost (differences of rounded values)."""
        amount = self.commitment_amount()
        currency = self.item.price.currency
        total = ZERO
        for period in self.item.periods:
            lo, hi = max(start, period[0]), min(end, period[1])
            if lo < hi:
                total += (pricing.round_money(self.utilized_cost(period, hi, amount), currency)
                          - pricing.round_money(self.utilized_cost(period, lo, amount), currency))
        return total


def _sum_exact(values: Iterable[Decimal]) -> Decimal:
    total = ZERO
    for value in values:
        total = _EXACT.add(total, value)
    return total


def _micros(value: datetime) -> int:
    delta = value - FAR_PAST
    return (delta.days * 86_400 + delta.seconds) * _US_PER_SECOND + delta.microseconds


@dataclass
class RangeCost:
    periods: int = 0
    charged: Decimal = ZERO  # Σ charged differences (commitment applied, no true-up)
    true_up_total: Decimal = ZERO  # what the true-ups add to the total
    utilized: Decimal = ZERO
    overage: Decimal = ZERO
    true_up: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.charged + self.true_up_total


# --------------------------------------------------------------------------------------------
# Costs of the analytics items


def costs_for(
    warehouse: Warehouse,
    principal: Principal,
    customer: Customer,
    family: list[Customer],
    start: datetime,
    end: datetime,
    window_size: str | None,
    items: list[ItemUsage],
    expand: set[str],
    meters: dict[str, Meter] | None = None,
    selection: Selection | None = None,
    month_anchor: datetime | None = None,
    shared: dict[str, tuple[dict[Group, _GroupStates], Grain]] | None = None,
) -> CostResult:
    """Costs of `items` for `customer` (usage of `family` folded in) over [start, end).

    `meters` are the tenant's meters by id (an item whose meter is missing costs 0),
    `selection` the request's filters and grouping (each item's `key` names its group) and
    `month_anchor` the customer's MONTH anchor, which bucketed meters' MONTH buckets follow.
    `shared`: per meter, the group states the usage read already covers its line items with
    (`cost_extents`, `api.usage.prefetch_group_states`), with their grain.
    """
    selection = selection or Selection()
    currency = response_currency(warehouse, principal, customer, start, end)
    found = [li for li in line_items(warehouse, principal, customer, end)
             if any(p_start < end and p_end > start for p_start, p_end in li.periods)]
    results = [ItemCost.zero(len(item.usage.points)) for item in items]
    if not found or not items:
        return CostResult(currency, ZERO, results)
    meters = meters or {}
    by_meter: dict[str, list[LineItemInfo]] = defaultdict(list)
    for li in found:
        by_meter[li.meter_id].append(li)
    customers = [c.external_id for c in family]
    plans: list[tuple[Meter, LineItemInfo, set[Group]]] = []
    for meter_id, infos in by_meter.items():
        meter = meters.get(meter_id)
        wanted = {item.key for item in items if item.feature.meter_id == meter_id}
        if meter is None or not wanted:
            continue
        plans += [(meter, info, wanted) for info in infos]
    # every instant the costs are asked at, besides billing period boundaries
    instants = {start, end, *(at for item in items for point in item.usage.points
                              for at in (point.start, point.end) if start < at < end)}
    calendar = (customer.timezone, month_anchor)
    prefetched = _prefetch_states(warehouse, plans, customers, start, end, selection, instants,
                                  calendar, shared or {})
    pricings: dict[tuple[str, Group], list[tuple[LineItemInfo, StatePricing]]] = {}
    for meter, info, wanted in plans:
        since, until = _state_range(meter, info, start, end)
        states, grain = _states_for(warehouse, meter, info, customers, start, end, selection,
                                    wanted, instants, calendar,
                                    prefetched.get((meter.id, since, until)))
        bounds = frozenset(grain.bounds) if isinstance(grain, Slots) else None
        for key in wanted:
            data_states, distinct, opening = states.get(key, ([], [], ZERO))
            line = pricing.LineItem(
                meter=_ref_meter(meter), price=info.terms(), periods=info.periods,
                timezone=customer.timezone, month_anchor=month_anchor,
                commitment=info.commitment_terms())
            priced = StatePricing(line, (), data_states, distinct, opening, bounds)
            pricings.setdefault((meter.id, key), []).append((info, priced))

    total = ZERO
    for index, item in enumerate(items):
        priced_items = pricings.get((item.feature.meter_id, item.key), [])
        if not priced_items:
            continue
        cost = results[index]
        cost.currency = priced_items[0][0].subscription["currency"]
        point_costs = [ZERO] * len(item.usage.points)
        ranges = []
        for info, priced in priced_items:
            ranged = priced.range_cost(start, end)
            ranges.append((info, priced, ranged))
            cost.total_cost += ranged.total
            for n, point in enumerate(item.usage.points):
                point_costs[n] += priced.window_cost(max(point.start, start),
                                                     min(point.end, end))
        cost.point_costs = point_costs
        windowed = [priced for _, priced, _ in ranges if priced.item.is_windowed]
        if windowed:
            cost.point_parts = []
            for point in item.usage.points:
                lo, hi = max(point.start, start), min(point.end, end)
                utilized = sum((w.window_utilized(lo, hi) for w in windowed), ZERO)
                charged = sum((w.window_cost(lo, hi) for w in windowed), ZERO)
                cost.point_parts.append((utilized, charged - utilized, ZERO))
        info, priced, _ = ranges[0]
        cost.price_id = info.price["price_id"]
        cost.plan_id = info.subscription["plan_id"]
        cost.subscription_id = info.subscription["subscription_id"]
        cost.sub_line_item_id = info.id
        cost.commitment_info = _commitment_info(ranges)
        cost.expanded = _expanded(info, principal, expand)
        total += cost.total_cost
    return CostResult(currency, total, results)


def _state_range(meter: Meter, info: LineItemInfo, start: datetime, end: datetime
                 ) -> tuple[datetime, datetime]:
    """The whole minutes whose states the line item's costs over [start, end) are computed
    from: from the earliest usage origin the range needs up to `end`."""
    periods = [p for p in info.periods if p[0] < end and p[1] > start]
    bucketed = meter.aggregation_type == "MAX" and bool(meter.bucket_size)
    if meter.reset_usage == "NEVER" and not bucketed:
        since = info.periods[0][0]
    else:
        since = min(p[0] for p in periods)
    # costs are needed up to `end` only: a true-up counts when its period ends by then
    until = min(max(p[1] for p in periods), end)
    return _floor_minute(since), _ceil_minute(until)


def cost_extents(warehouse: Warehouse, principal: Principal, customer: Customer,
                 start: datetime, end: datetime, meters: dict[str, Meter]
                 ) -> dict[str, tuple[datetime, list[datetime]]]:
    """Per meter priced for `customer` over [start, end) (WEIGHTED_SUM aside, read per
    minute): from when its line items' costs read states, and the billing period boundaries
    they cut at. The usage read of an events request widened to these
    (`api.usage.prefetch_group_states`) also serves the costs."""
    extents: dict[str, tuple[datetime, list[datetime]]] = {}
    for info in line_items(warehouse, principal, customer, end):
        meter = meters.get(info.meter_id)
        if (meter is None or meter.aggregation_type == "WEIGHTED_SUM"
                or not any(lo < end and hi > start for lo, hi in info.periods)):
            continue
        since, until = _state_range(meter, info, start, end)
        earlier, cuts = extents.get(meter.id, (since, []))
        extents[meter.id] = (min(since, earlier),
                             [*cuts, since, until, *(at for period in info.periods
                                                     for at in period)])
    return extents


def _cost_grain(meter: Meter, info: LineItemInfo, start: datetime, end: datetime,
                instants: set[datetime], timezone: str, month_anchor: datetime | None
                ) -> Grain:
    """The grain of the states the line item's costs over [start, end) are computed from:
    slots cut at its billing period boundaries and at the `instants` (the range's ends and
    its points' boundaries), every instant the pricing asks the usage at, so no cost looks
    inside a slot (StatePricing checks); for bucketed MAX meters also at their own buckets
    in the customer's calendar (`timezone`, `month_anchor`). WEIGHTED_SUM (a time integral)
    reads minutes, and so does any line item whose slots would be too many or not on whole
    minutes (a period that starts inside a minute)."""
    if meter.aggregation_type == "WEIGHTED_SUM":
        return MINUTE_GRAIN
    since, until = _state_range(meter, info, start, end)
    cuts = [at for period in info.periods for at in period] + [
        at for at in instants if start <= at <= end]
    if meter.aggregation_type == "MAX" and meter.bucket_size:
        slots = meter_bucket_slots(meter.bucket_size, timezone, month_anchor, cuts, since,
                                   until)
    else:
        slots = Slots.of(cuts, since, until)
    return slots or MINUTE_GRAIN


def _prefetch_states(warehouse: Warehouse, plans: list[tuple[Meter, LineItemInfo, set[Group]]],
                     customers: list[str], start: datetime, end: datetime,
                     selection: Selection, instants: set[datetime],
                     calendar: tuple[str, datetime | None],
                     shared: dict[str, tuple[dict[Group, _GroupStates], Grain]]
                     ) -> dict[tuple[str, datetime, datetime],
                               tuple[dict[Group, _GroupStates], Grain]]:
    """The group states of the per-event reads that `_states_for` would make, with their
    grain, one statement for all the meters that need the same range and kind of grain
    (line items of one subscription usually do; slots are cut at the union of what each
    needs), keyed by (meter id, since, until). `calendar`: the customer's timezone and MONTH
    anchor. A meter in `shared` whose states cover the range, cut at every instant its line
    items ask about, is read no more. Only when the selection needs events: the
    states of whole meters come from fct_meter_usage_minutely, one cheap read each."""
    if not selection.needs_events or not plans:
        return {}
    # one grain per meter and range (its line items' slots together, or minutes if one of
    # them needs minutes), then one statement per range and kind of grain: minutes, slots,
    # slots also cut every n minutes from an origin
    meters: dict[str, Meter] = {}
    per_meter: dict[tuple[str, datetime, datetime], Grain] = {}
    found: dict[tuple[str, datetime, datetime], tuple[dict[Group, _GroupStates], Grain]] = {}
    for meter, info, _ in plans:
        grain = _cost_grain(meter, info, start, end, instants, *calendar)
        key = (meter.id, *_state_range(meter, info, start, end))
        states, read = shared.get(meter.id, ({}, MINUTE_GRAIN))
        if (isinstance(grain, Slots) and isinstance(read, Slots) and grain.every == read.every
                and read.bounds[0] <= key[1] and key[2] <= read.bounds[-1]
                and set(grain.bounds) <= set(read.bounds)):
            found[key] = (states, read)
            continue
        meters[meter.id] = meter
        seen = per_meter.setdefault(key, grain)
        if seen is not grain:
            per_meter[key] = (Slots.of({*seen.bounds, *grain.bounds}, key[1], key[2],
                                       seen.every)
                              if isinstance(seen, Slots) and isinstance(grain, Slots)
                              and seen.every == grain.every else None) or MINUTE_GRAIN
    by_range: dict[tuple, dict[str, Meter]] = defaultdict(dict)
    cuts: dict[tuple, set[datetime]] = defaultdict(set)
    for (meter_id, since, until), grain in per_meter.items():
        sliced = isinstance(grain, Slots)
        key = (since, until, sliced, grain.every if sliced else None)
        by_range[key][meter_id] = meters[meter_id]
        if sliced:
            cuts[key].update(grain.bounds)
    plain = replace(selection, with_sources=False)  # costs never list sources
    for (since, until, sliced, every), group in by_range.items():
        grain = (Slots.of(cuts[(since, until, sliced, every)], since, until, every) if sliced
                 else None) or MINUTE_GRAIN
        ids = list(group)
        distinct = [m.id for m in group.values() if m.aggregation_type == "COUNT_UNIQUE"]
        latest = [m.id for m in group.values() if m.aggregation_type == "LATEST"]
        found.update({(meter_id, since, until): ({}, grain) for meter_id in ids})
        states = fetch_group_states(warehouse, next(iter(group.values())).info(), customers,
                                    since, until, plain, "", grain, meter_ids=ids,
                                    distinct_ids=distinct, latest_ids=latest)
        for key, data in states.items():
            found[(key[0], since, until)][0][key[1:]] = data
    return found


def _states_for(warehouse: Warehouse, meter: Meter, info: LineItemInfo, customers: list[str],
                start: datetime, end: datetime, selection: Selection, wanted: set[Group],
                instants: set[datetime], calendar: tuple[str, datetime | None],
                prefetched: tuple[dict[Group, _GroupStates], Grain] | None = None
                ) -> tuple[dict[Group, tuple[list[st.MinuteState], list[tuple[datetime, str]],
                                             Decimal]], Grain]:
    """States of each wanted group from the earliest usage origin the range needs, per slot
    (`_cost_grain`) or per minute, with every minute that a billing period boundary cuts
    split at the boundary; and their grain. When the selection needs events, `prefetched`
    holds the groups `_prefetch_states` read for this meter and range, with their grain
    (copied here: splitting changes them)."""
    since, until = _state_range(meter, info, start, end)
    cuts = sorted({bound for period in info.periods for bound in period
                   if since <= bound < until and bound != _floor_minute(bound)})
    kind = meter.aggregation_type
    info_meter = meter.info()
    if selection.needs_events:
        if prefetched is None:
            raise ValueError("per-event states are read by _prefetch_states")
        found, grain = prefetched
        groups = {key: _GroupStates(list(data.states), list(data.distinct))
                  for key, data in found.items()}
    else:
        grain = _cost_grain(meter, info, start, end, instants, *calendar)
        data = _GroupStates(fetch_states(warehouse, info_meter, customers, since, until, grain))
        if kind == "COUNT_UNIQUE":
            data.distinct = fetch_distinct_values(warehouse, info_meter, customers, since,
                                                  until, grain)
        groups = {(): data}
    if cuts:
        _split_at(warehouse, info_meter, customers, selection, groups, cuts)
    openings: dict[Group, Decimal] = defaultdict(lambda: ZERO)
    if kind == "WEIGHTED_SUM" and meter.reset_usage == "NEVER":
        for c in customers:
            if not selection.needs_events:
                openings[()] = _EXACT.add(openings[()], level_before(
                    warehouse, info_meter, c, FAR_PAST, since))
                continue
            for key, level in group_levels_before(warehouse, info_meter, c, FAR_PAST, since,
                                                  selection).items():
                openings[key] = _EXACT.add(openings[key], level)
    result = {}
    for key in wanted:
        data = groups.get(key)
        result[key] = (data.states if data else [], data.distinct if data else [],
                       openings[key])
    return result, grain


def _floor_minute(value: datetime) -> datetime:
    return value.replace(second=0, microsecond=0)


def _ceil_minute(value: datetime) -> datetime:
    floor = _floor_minute(value)
    return floor if floor == value else floor + MINUTE


def _split_at(warehouse: Warehouse, meter: MeterInfo, customers: list[str],
              selection: Selection, groups: dict[Group, _GroupStates],
              cuts: list[datetime]) -> None:
    """Replace the states of each minute a cut falls in by one state per part of the minute,
    each starting at its part's start, built from that minute's event values
    (serving_meter_event_values), so usage can be counted from a boundary inside a minute."""
    by_minute: dict[datetime, list[datetime]] = defaultdict(list)
    for cut in cuts:
        by_minute[_floor_minute(cut)].append(cut)
    width = len(selection.group_by)
    for minute, inside in by_minute.items():
        bounds = [minute, *sorted(inside), minute + MINUTE]
        matched, params = _matched_cte(warehouse, meter, customers, minute, minute + MINUTE,
                                       selection)
        rows = warehouse.query(
            f"with {matched} select {_group_columns(selection)}group_value, "
            f"{_out_ts(warehouse, 'event_timestamp')}, ingest_seq, event_id, "
            f"{_out_dec(warehouse, 'quantity')}, value_text from matched", params)
        events: dict[Group, list[tuple]] = defaultdict(list)
        for row in rows:
            events[tuple(row[:width])].append(row[width:])
        for data in groups.values():
            data.states = [s for s in data.states if s.minute_start != minute]
            data.distinct = [(m, v) for m, v in data.distinct if m != minute]
        for key, found in events.items():
            data = groups.setdefault(key, _GroupStates())
            for lo, hi in zip(bounds, bounds[1:], strict=False):
                part = [r for r in found if lo <= _ts(r[1]) < hi]
                data.states += _part_states(lo, part)
                data.distinct += sorted({(lo, r[5]) for r in part if r[5] is not None})


def _part_states(part_start: datetime, rows: list[tuple]) -> list[st.MinuteState]:
    """The states of some events of one minute (rows: group value, timestamp, ingest_seq,
    event_id, quantity, value_text), one per group value, as fct_meter_usage_minutely would
    hold them for a minute starting at `part_start`."""
    by_group: dict[str, list[tuple]] = defaultdict(list)
    for row in rows:
        by_group[row[0]].append(row)
    states = []
    for group_value, group in sorted(by_group.items()):
        valued = [(_ts(at), seq, event_id, _dec(q)) for _, at, seq, event_id, q, _ in group
                  if q is not None]
        latest = max(valued, key=lambda v: (v[0], v[1], v[2]), default=None)
        states.append(st.MinuteState(
            group_value=group_value, minute_start=part_start, event_count=len(group),
            value_count=len(valued), text_count=sum(1 for r in group if r[5] is not None),
            value_sum=_sum_exact(v[3] for v in valued) if valued else None,
            value_max=max(v[3] for v in valued) if valued else None,
            weighted_moment_us=_sum_exact(
                _EXACT.multiply(v[3], _micros(v[0]) - _micros(part_start)) for v in valued)
            if valued else None,
            latest_timestamp=latest[0] if latest else None,
            latest_ingest_seq=latest[1] if latest else None,
            latest_event_id=latest[2] if latest else None,
            latest_value=latest[3] if latest else None))
    return states


def _ref_meter(meter: Meter) -> ref.RefMeter:
    """The meter as models.pricing needs it (matching is done already: no filters)."""
    return ref.RefMeter(
        meter_id=meter.id, event_name=meter.event_name, aggregation_type=meter.aggregation_type,
        field=meter.aggregation_field, multiplier=meter.multiplier,
        bucket_size=meter.bucket_size, group_by=meter.group_by, filters=[],
        reset_usage=meter.reset_usage, tenant_id=meter.tenant_id,
        environment_id=meter.environment_id)


def _commitment_info(ranges: list[tuple[LineItemInfo, StatePricing, RangeCost]]
                     ) -> dict[str, Any] | None:
    """CommitmentInfo of the item's first committed line item, its parts over the range."""
    for info, priced, ranged in ranges:
        c = info.commitment
        if c is None:
            continue
        return {
            "type": c["commitment_type"],
            "amount": decimal_text(priced.commitment_amount()),
            **({"quantity": decimal_text(c["commitment_quantity"])}
               if c["commitment_quantity"] is not None else {}),
            "duration": info.subscription["billing_period"],
            "overage_factor": decimal_text(c["overage_factor"]),
            "true_up_enabled": bool(c["true_up_enabled"]),
            "is_windowed": bool(c["is_windowed"]),
            "computed_commitment_utilized_amount": decimal_text(ranged.utilized),
            "computed_overage_amount": decimal_text(ranged.overage),
            "computed_true_up_amount": decimal_text(ranged.true_up),
        }
    return None


# --------------------------------------------------------------------------------------------
# Expanded objects (PriceResponse, Plan, SubscriptionLineItem)


def _optional(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _tier_bound(value: Decimal | None) -> int | str | None:
    """`up_to` is an integer in the spec; a fractional bound stays exact as text."""
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else decimal_text(value)


def _expanded(info: LineItemInfo, principal: Principal, expand: set[str]) -> dict[str, Any]:
    scope = {"tenant_id": principal.tenant_id, "environment_id": principal.environment_id,
             "status": "published"}
    price, sub, plan = info.price, info.subscription, info.plan
    out: dict[str, Any] = {}
    if "price" in expand:
        out["price"] = _optional({
            "id": price["price_id"], **scope, "type": price["price_type"],
            "meter_id": price["meter_id"], "currency": price["currency"],
            "billing_model": price["billing_model"], "tier_mode": price["tier_mode"],
            "amount": decimal_text(price["amount"]) if price["amount"] is not None else None,
            "billing_period": price["billing_period"],
            "billing_period_count": price["billing_period_count"],
            "billing_cadence": "RECURRING", "invoice_cadence": "ARREAR",
            "entity_type": "PLAN", "entity_id": sub["plan_id"],
            "display_name": price["display_name"], "description": price["description"],
            "tiers": [_optional({
                "up_to": _tier_bound(t["up_to"]), "unit_amount": decimal_text(t["unit_amount"]),
                "flat_amount": (decimal_text(t["flat_amount"])
                                if t["flat_amount"] is not None else None)})
                for t in info.tiers] or None,
            "transform_quantity": ({"divide_by": price["transform_divide_by"],
                                    "round": price["transform_round"] or "up"}
                                   if price["transform_divide_by"] else None),
        })
    if "plan" in expand:
        out["plan"] = _optional({"id": plan["plan_id"], "name": plan["name"],
                                 "description": plan["description"], **scope})
    if "subscription_line_item" in expand:
        c = info.commitment or {}
        out["subscription_line_item"] = _optional({
            "id": info.id, **scope, "subscription_id": sub["subscription_id"],
            "customer_id": sub["customer_id"], "entity_type": "plan",
            "entity_id": sub["plan_id"], "plan_display_name": plan["name"],
            "price_id": price["price_id"], "price_type": price["price_type"],
            "meter_id": price["meter_id"], "display_name": price["display_name"],
            "currency": sub["currency"], "billing_period": sub["billing_period"],
            "billing_period_count": sub["billing_period_count"],
            "invoice_cadence": "ARREAR", "quantity": "0",
            "start_date": rfc3339(sub["start_date"]),
            "end_date": rfc3339(sub["end_date"]) if sub["end_date"] else None,
            "commitment_type": c.get("commitment_type"),
            "commitment_amount": (decimal_text(c["commitment_amount"])
                                  if c.get("commitment_amount") is not None else None),
            "commitment_quantity": (decimal_text(c["commitment_quantity"])
                                    if c.get("commitment_quantity") is not None else None),
            "commitment_overage_factor": (decimal_text(c["overage_factor"])
                                          if c.get("overage_factor") is not None else None),
            "commitment_true_up_enabled": c.get("true_up_enabled"),
            "commitment_windowed": c.get("is_windowed"),
            "commitment_duration": sub["billing_period"] if c else None,
        })
    return out


__all__ = ["CostResult", "ItemCost", "ItemUsage", "StatePricing", "costs_for"]
