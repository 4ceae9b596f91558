"""POST /v1/meter-usage/analytics (spec/flexprice-meter-usage-analytics.md).

One item per requested meter, in request order (a meter named twice is answered once), with
total "0" and no points when the customer has no events in the range (DESIGN 3b.7). The
request's aggregation_type decides how each meter's per-event quantities aggregate. Windows
are in the customer's timezone; MONTH windows start at `billing_anchor` (calendar months
without one). Without window_size there are no points.
"""

from __future__ import annotations

from fastapi import APIRouter

from api import lookups
from api.deps import PrincipalDep, SettingsDep, WarehouseDep
from api.encoding import decimal_text, rfc3339
from api.errors import ERROR_RESPONSES, bad_request
from api.inputs import check_range, utc_instant
from api.schemas import (
    MeterUsageAnalyticsRequest,
    MeterUsageAnalyticsResponse,
    MeterUsagePoint,
    MeterUsageQueryResponse,
)
from api.usage import UnsupportedAggregation, meter_usage

router = APIRouter(prefix="/v1/meter-usage", tags=["MeterUsage"], responses=ERROR_RESPONSES)


@router.post("/analytics", response_model=MeterUsageAnalyticsResponse,
             summary="Get meter usage analytics", operation_id="getMeterUsageAnalytics")
def get_meter_usage_analytics(
    body: MeterUsageAnalyticsRequest,
    warehouse: WarehouseDep,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> MeterUsageAnalyticsResponse:
    window = body.window_size.value if body.window_size else None
    start, end = check_range(body.start_time, body.end_time, window, settings)
    anchor = utc_instant(body.billing_anchor, "billing_anchor") if body.billing_anchor else None
    customer = lookups.customer_by_external_id(warehouse, principal, body.external_customer_id)
    meter_ids = list(dict.fromkeys(body.meter_ids))
    meters = [lookups.meter_by_id(warehouse, principal, meter_id, "meter_ids")
              for meter_id in meter_ids]
    kind = body.aggregation_type.value
    items = []
    for meter in meters:
        try:
            usage = meter_usage(warehouse, meter.info(), customer.external_id, start, end,
                                window, customer.timezone, anchor, kind)
        except UnsupportedAggregation as exc:
            raise bad_request(f"meter {meter.id!r}: {exc}", "aggregation_type") from None
        items.append(MeterUsageQueryResponse(
            meter_id=meter.id,
            aggregation_type=body.aggregation_type,
            total_value=decimal_text(usage.total),
            event_count=usage.event_count,
            points=[MeterUsagePoint(timestamp=rfc3339(p.start), value=decimal_text(p.value),
                                    event_count=p.event_count) for p in usage.points],
        ))
    return MeterUsageAnalyticsResponse(items=items)
