"""GET /v1/meters and GET /v1/meters/{id}: the catalog's meters in the create-meter response
shape (spec/flexprice-create-meter.md). created_at/updated_at are when the catalog was loaded.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api import lookups
from api.deps import PrincipalDep, WarehouseDep
from api.encoding import rfc3339
from api.errors import ERROR_RESPONSES
from api.schemas import (
    ListMetersResponse,
    MeterAggregation,
    MeterFilter,
    MeterResponse,
    Pagination,
)

router = APIRouter(prefix="/v1/meters", tags=["Meters"], responses=ERROR_RESPONSES)


def meter_response(meter: lookups.Meter) -> MeterResponse:
    aggregation = meter.definition.get("aggregation", {})
    loaded = rfc3339(meter.loaded_at) if meter.loaded_at else None
    return MeterResponse(
        id=meter.id,
        name=meter.name,
        tenant_id=meter.tenant_id,
        event_name=meter.event_name,
        aggregation=MeterAggregation(
            type=meter.aggregation_type,
            field=meter.aggregation_field,
            expression=meter.aggregation_expression,
            multiplier=aggregation.get("multiplier"),
            bucket_size=meter.bucket_size,
            group_by=meter.group_by,
        ),
        filters=[MeterFilter(key=f["key"], values=list(f["values"]))
                 for f in meter.definition.get("filters", [])],
        reset_usage=meter.reset_usage,
        status=meter.status,
        created_at=loaded,
        updated_at=loaded,
    )


@router.get("", response_model=ListMetersResponse, response_model_exclude_none=True,
            summary="List meters", operation_id="listMeters")
def list_meters(
    warehouse: WarehouseDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ListMetersResponse:
    found = lookups.meters(warehouse, principal)
    return ListMetersResponse(
        items=[meter_response(m) for m in found[offset:offset + limit]],
        pagination=Pagination(total=len(found), limit=limit, offset=offset),
    )


@router.get("/{meter_id}", response_model=MeterResponse, response_model_exclude_none=True,
            summary="Get a meter", operation_id="getMeter")
def get_meter(
    warehouse: WarehouseDep,
    principal: PrincipalDep,
    meter_id: Annotated[str, Path(min_length=1, max_length=200)],
) -> MeterResponse:
    return meter_response(lookups.meter_by_id(warehouse, principal, meter_id, "id"))
