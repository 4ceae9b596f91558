"""Costs of `/v1/events/analytics` items: the hook the pricing work fills in.

`costs_for` receives the usage items the API computed (one per feature × group, with their
points) and returns, aligned with them, each item's cost, its points' costs and what prices
it (price, plan, subscription, line item, commitment), plus the response's currency and
total. Until the priced serving tables exist (dbt_project/models/marts/pricing/, DESIGN 3
and 3b.8) every cost is 0 and the currency is unknown (null): the usage part of the
response is complete and exact, the cost part is a placeholder.

Contract for the implementation:
- costs are marginal over [start, end) within each billing period (DESIGN 3b.8), rounded
  half away from zero to the currency's precision once per line item; point costs are
  differences of rounded cumulative costs, so they add up to the item's cost;
- grouped or filtered items are priced on their own usage;
- a customer without a subscription gets cost 0; a subscribed feature without events may be
  added as an item with usage 0 (`extra_items`);
- `expand` may ask for price, plan, subscription_line_item and addon objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from api.deps import Principal
from api.lookups import Customer, Feature
from api.usage import Usage
from orchestration.warehouse import Warehouse

ZERO = Decimal(0)


@dataclass(frozen=True)
class ItemUsage:
    """One analytics item to price: a feature's usage for one group of dimension values."""

    feature: Feature
    group: dict[str, str]
    usage: Usage


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

    @classmethod
    def zero(cls, points: int) -> ItemCost:
        return cls(point_costs=[ZERO] * points)


@dataclass
class CostResult:
    currency: str | None
    total_cost: Decimal
    items: list[ItemCost]  # aligned with the items given to costs_for
    extra_items: list[tuple[ItemUsage, ItemCost]] = field(default_factory=list)


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
) -> CostResult:
    """Costs of `items` for `customer` (usage of `family` folded in) over [start, end).

    Placeholder until the pricing marts land: every cost 0, currency unknown.
    """
    return CostResult(
        currency=None,
        total_cost=ZERO,
        items=[ItemCost.zero(len(item.usage.points)) for item in items],
    )
