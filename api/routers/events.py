"""POST /v1/events/analytics (spec/flexprice-events-usage-analytics.md): usage by feature.

One item per feature (the tenant's features, or `feature_ids`) and group of `group_by`
values (`source`, `properties.<name>`; `feature_id` is always a key), for groups with
events in the range. `property_filters` and `sources` keep matching events only.
`include_children` folds the usage of the customer's descendants into its items. Windows
are in the customer's timezone, MONTH windows at its subscription's billing anchor (the
1st without one). Costs come from `api.costs.costs_for`.
"""

from __future__ import annotations

from decimal import Decimal

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api import lookups
from api.costs import ItemCost, ItemUsage, cost_extents, costs_for
from api.deps import Principal, PrincipalDep, SettingsDep, WarehouseDep
from api.encoding import decimal_text, display_text, rfc3339
from api.errors import ERROR_RESPONSES, bad_request, not_found
from api.inputs import check_property_name, check_range
from api.routers.meters import meter_response
from api.schemas import (
    FeatureResponse,
    GetUsageAnalyticsRequest,
    GetUsageAnalyticsResponse,
    ReportingUnit,
    UsageAnalyticItem,
    UsageAnalyticPoint,
)
from api.usage import (
    Dimension,
    Point,
    Selection,
    Usage,
    grouped_usage,
    prefetch_group_states,
)
from models import windows

router = APIRouter(prefix="/v1/events", tags=["Events"], responses=ERROR_RESPONSES)

EXPANDABLE = ("price", "meter", "feature", "subscription_line_item", "plan", "addon")
PROPERTIES_PREFIX = "properties."


def parse_group_by(values: list[str] | None) -> tuple[Dimension, ...]:
    dimensions: list[Dimension] = []
    for index, value in enumerate(values or []):
        param = f"group_by[{index}]"
        if value == "feature_id":
            continue  # items are per feature anyway
        if value == "source":
            dimension = Dimension.source()
        elif value.startswith(PROPERTIES_PREFIX):
            name = check_property_name(value[len(PROPERTIES_PREFIX):], param)
            dimension = Dimension.property(name)
        else:
            raise bad_request(f'{param}: unknown group_by {value!r}; use "source", '
                              '"feature_id" or "properties.<field_name>"', param)
        if dimension not in dimensions:
            dimensions.append(dimension)
    return tuple(dimensions)


def parse_selection(body: GetUsageAnalyticsRequest) -> Selection:
    filters = []
    for name, values in sorted((body.property_filters or {}).items()):
        param = f"property_filters.{name}"
        check_property_name(name, "property_filters")
        if not values:
            raise bad_request(f"{param} needs at least one value", param)
        filters.append((name, tuple(dict.fromkeys(values))))
    group_by = parse_group_by(body.group_by)
    sources = tuple(dict.fromkeys(body.sources)) if body.sources else None
    return Selection(property_filters=tuple(filters), sources=sources, group_by=group_by,
                     with_sources=Dimension.source() not in group_by)


def parse_expand(values: list[str] | None) -> set[str]:
    expand = set()
    for index, value in enumerate(values or []):
        if value not in EXPANDABLE:
            raise bad_request(f"expand[{index}]: unknown value {value!r}; allowed: "
                              f"{', '.join(EXPANDABLE)}", f"expand[{index}]")
        expand.add(value)
    return expand


def feature_response(feature: lookups.Feature, principal: Principal) -> FeatureResponse:
    return FeatureResponse(
        id=feature.id, name=feature.name, meter_id=feature.meter_id,
        tenant_id=principal.tenant_id, environment_id=principal.environment_id,
        unit_singular=feature.unit_singular, unit_plural=feature.unit_plural,
        reporting_unit=reporting_unit(feature),
    )


def reporting_unit(feature: lookups.Feature) -> ReportingUnit | None:
    if feature.reporting_conversion_rate is None:
        return None
    return ReportingUnit(unit_singular=feature.reporting_unit_singular,
                         unit_plural=feature.reporting_unit_plural,
                         conversion_rate=float(feature.reporting_conversion_rate))


@router.post("/analytics", response_model=GetUsageAnalyticsResponse,
             response_model_exclude_none=True, summary="Get usage analytics",
             operation_id="getUsageAnalytics")
def get_usage_analytics(
    body: GetUsageAnalyticsRequest,
    warehouse: WarehouseDep,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> JSONResponse:
    if not body.external_customer_id:
        raise bad_request("external_customer_id is required", "external_customer_id")
    for value, param in ((body.start_time, "start_time"), (body.end_time, "end_time")):
        if value is None:
            raise bad_request(f"{param} is required (RFC 3339, minute-aligned)", param)
    window = body.window_size.value if body.window_size else None
    start, end = check_range(body.start_time, body.end_time, window, settings)
    selection = parse_selection(body)
    expand = parse_expand(body.expand)

    customer = lookups.customer_by_external_id(warehouse, principal, body.external_customer_id)
    family = (lookups.with_descendants(warehouse, principal, customer)
              if body.include_children else [customer])
    features = lookups.features(warehouse, principal)
    if body.feature_ids:
        known = {f.id for f in features}
        for index, feature_id in enumerate(body.feature_ids):
            if feature_id not in known:
                raise not_found(f"feature {feature_id!r} not found", f"feature_ids[{index}]")
        wanted = set(body.feature_ids)
        features = [f for f in features if f.id in wanted]
    meters = {m.id: m for m in lookups.meters(warehouse, principal)}
    calendar = lookups.customer_calendar(warehouse, principal, customer.external_id)
    anchor = windows.anchor_from_key(calendar.month_anchor_key, customer.timezone)

    customers = [c.external_id for c in family]
    wanted = [meters[f.meter_id] for f in features if f.meter_id in meters]
    # one read per grain serves the usage and, widened to their billing periods, the costs
    shared: dict = {}
    prefetched = prefetch_group_states(
        warehouse, [m.info() for m in wanted], customers, start, end, window, customer.timezone,
        anchor, selection, cost_extents(warehouse, principal, customer, start, end, meters),
        shared)
    usage_by_meter: dict[str, dict[tuple[str, ...], Usage]] = {}
    items: list[ItemUsage] = []
    for feature in features:
        meter = meters.get(feature.meter_id)
        if meter is None:
            continue
        if meter.id not in usage_by_meter:
            usage_by_meter[meter.id] = grouped_usage(
                warehouse, meter.info(), customers, start, end, window, customer.timezone,
                anchor, None, selection, prefetched=prefetched.get(meter.id))
        for key, usage in sorted(usage_by_meter[meter.id].items()):
            if usage.event_count > 0:
                group = {_group_name(d): value for d, value in zip(selection.group_by, key,
                                                                   strict=True)}
                items.append(ItemUsage(feature, group, usage, key))

    costs = costs_for(warehouse, principal, customer, family, start, end, window, items, expand,
                      meters=meters, selection=selection, month_anchor=anchor, shared=shared)
    priced = list(zip(items, costs.items, strict=True)) + costs.extra_items
    response = GetUsageAnalyticsResponse(
        currency=costs.currency,
        total_cost=decimal_text(costs.total_cost),
        items=[_item(item, cost, meters[item.feature.meter_id], principal, body, expand)
               for item, cost in priced],
    )
    content = response.model_dump(mode="json", exclude_none=True)
    content["currency"] = costs.currency  # null without a subscription, never left out
    return JSONResponse(content)


def _group_name(dimension: Dimension) -> str:
    return "source" if dimension.kind == "source" else f"{PROPERTIES_PREFIX}{dimension.name}"


def _item(item: ItemUsage, cost: ItemCost, meter: lookups.Meter, principal: Principal,
          body: GetUsageAnalyticsRequest, expand: set[str]) -> UsageAnalyticItem:
    feature, usage = item.feature, item.usage
    properties = {name[len(PROPERTIES_PREFIX):]: value for name, value in item.group.items()
                  if name.startswith(PROPERTIES_PREFIX)}
    rate = feature.reporting_conversion_rate
    point_costs = cost.point_costs or [Decimal(0)] * len(usage.points)
    return UsageAnalyticItem(
        feature_id=feature.id,
        name=feature.name,
        event_name=meter.event_name,
        meter_id=meter.id,
        aggregation_type=meter.aggregation_type,
        source=item.group.get("source"),
        sources=None if "source" in item.group else usage.sources,
        properties=properties or None,
        total_usage=decimal_text(usage.total),
        total_usage_display=display_text(usage.total, rate) if rate is not None else "",
        unit=feature.unit_singular,
        unit_plural=feature.unit_plural,
        reporting_unit=reporting_unit(feature),
        window_size=body.window_size,
        event_count=usage.event_count,
        points=[_point(p, c, parts) for p, c, parts in zip(
            usage.points, point_costs, cost.point_parts or [None] * len(usage.points),
            strict=True)],
        total_cost=decimal_text(cost.total_cost),
        currency=cost.currency,
        price_id=cost.price_id,
        plan_id=cost.plan_id,
        subscription_id=cost.subscription_id,
        sub_line_item_id=cost.sub_line_item_id,
        commitment_info=cost.commitment_info,
        meter=meter_response(meter) if "meter" in expand else None,
        feature=feature_response(feature, principal) if "feature" in expand else None,
        price=cost.expanded.get("price") if "price" in expand else None,
        plan=cost.expanded.get("plan") if "plan" in expand else None,
        subscription_line_item=(cost.expanded.get("subscription_line_item")
                                if "subscription_line_item" in expand else None),
        addon=cost.expanded.get("addon") if "addon" in expand else None,
    )


def _point(point: Point, cost: Decimal,
           parts: tuple[Decimal, Decimal, Decimal] | None) -> UsageAnalyticPoint:
    """A point; with a windowed commitment, also its commitment breakdown."""
    utilized, overage, true_up = parts if parts else (None, None, None)
    return UsageAnalyticPoint(
        timestamp=rfc3339(point.start), usage=decimal_text(point.value),
        event_count=point.event_count, cost=decimal_text(cost),
        computed_commitment_utilized_amount=decimal_text(utilized) if parts else None,
        computed_overage_amount=decimal_text(overage) if parts else None,
        computed_true_up_amount=decimal_text(true_up) if parts else None)
