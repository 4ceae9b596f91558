"""Request and response models, with the field names of the specs (../shared/spec/).

Flexprice shapes carry decimals as strings; Stripe shapes carry numbers (written exactly
by `api.encoding.ExactJSONResponse`). Requests ignore fields they do not know, as the
Flexprice server does, so newer SDKs keep working; values of known fields are checked.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from models.catalog import canonical_filter_value
from models.enums import AggregationType, WindowSize


def _nul_location(value: Any, path: tuple = ()) -> tuple | None:
    """Where a string (or a key) holding a NUL character is, or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = (*path, key) if "\x00" in str(key) else _nul_location(item, (*path, key))
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_location(item, (*path, index))
            if found is not None:
                return found
    return None


class Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _no_nul_characters(cls, data: Any) -> Any:
        # No id, name or value can hold NUL (ingest rejects it, Postgres text cannot store
        # it), so it is a 400 on every engine rather than a driver error on one.
        where = _nul_location(data)
        if where is not None:
            name = ".".join(str(part) for part in where) or "body"
            raise ValueError(f"{name} contains a NUL character")
        return data


class Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Request limits: generous for any real query, small enough that a refusal is immediate and a
# request can never make the API do unbounded work (docs/RELIABILITY.md).
MAX_ID_CHARS = 255
MAX_VALUE_CHARS = 1_000
MAX_LIST_ITEMS = 100
MAX_GROUP_BY = 10
MAX_PROPERTY_FILTERS = 20

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]
FilterValue = Annotated[str, Field(max_length=MAX_VALUE_CHARS),
                        BeforeValidator(canonical_filter_value)]
# Stripe values are exact JSON numbers (api.encoding.ExactJSONResponse writes the Decimal's
# digits); pydantic would document a Decimal as a string.
ExactNumber = Annotated[Decimal, WithJsonSchema({"type": "number"})]


# -- meters (the create-meter response) -------------------------------------------------------
class MeterAggregation(Response):
    type: AggregationType
    field: str | None = None
    expression: str | None = None
    multiplier: str | None = None
    bucket_size: str | None = None
    group_by: str | None = None


class MeterFilter(Response):
    key: str
    values: list[str]


class MeterResponse(Response):
    id: str
    name: str
    tenant_id: str
    event_name: str
    aggregation: MeterAggregation
    filters: list[MeterFilter]
    reset_usage: str
    status: str
    created_at: str | None = None
    updated_at: str | None = None


class Pagination(Response):
    total: int
    limit: int
    offset: int


class ListMetersResponse(Response):
    items: list[MeterResponse]
    pagination: Pagination


# -- POST /v1/meter-usage/analytics ------------------------------------------------------------
class MeterUsageAnalyticsRequest(Request):
    aggregation_type: AggregationType
    billing_anchor: AwareDatetime | None = None
    end_time: AwareDatetime = Field(examples=["2024-02-01T00:00:00Z"])
    external_customer_id: str = Field(min_length=1, max_length=MAX_ID_CHARS,
                                      examples=["cust_123"])
    meter_ids: list[Id] = Field(min_length=1, max_length=MAX_LIST_ITEMS,
                                examples=[["mtr_abc"]])
    start_time: AwareDatetime = Field(examples=["2024-01-01T00:00:00Z"])
    window_size: WindowSize | None = None


class MeterUsagePoint(Response):
    timestamp: str = Field(examples=["2024-01-01T00:00:00Z"])
    value: str = Field(examples=["100"])
    event_count: int


class MeterUsageQueryResponse(Response):
    meter_id: str
    aggregation_type: AggregationType
    total_value: str = Field(examples=["1234.5678"])
    event_count: int
    points: list[MeterUsagePoint]


class MeterUsageAnalyticsResponse(Response):
    items: list[MeterUsageQueryResponse]


# -- POST /v1/events/analytics -----------------------------------------------------------------
class GetUsageAnalyticsRequest(Request):
    external_customer_id: str | None = Field(default=None, max_length=MAX_ID_CHARS)
    start_time: AwareDatetime | None = None
    end_time: AwareDatetime | None = None
    feature_ids: list[Id] | None = Field(default=None, max_length=MAX_LIST_ITEMS)
    sources: list[Annotated[str, Field(max_length=MAX_VALUE_CHARS)]] | None = Field(
        default=None, max_length=MAX_LIST_ITEMS)
    property_filters: dict[
        Annotated[str, Field(max_length=MAX_ID_CHARS)],
        Annotated[list[FilterValue], Field(max_length=MAX_LIST_ITEMS)],
    ] | None = Field(default=None, max_length=MAX_PROPERTY_FILTERS)
    group_by: list[Annotated[str, Field(max_length=MAX_ID_CHARS)]] | None = Field(
        default=None, max_length=MAX_GROUP_BY,
        description='"source", "feature_id" or "properties.<field_name>"')
    window_size: WindowSize | None = None
    expand: list[Annotated[str, Field(max_length=MAX_ID_CHARS)]] | None = Field(
        default=None, max_length=MAX_LIST_ITEMS,
        description='"price", "meter", "feature", "subscription_line_item", "plan", "addon"')
    include_children: bool = False


class ReportingUnit(Response):
    unit_singular: str | None = None
    unit_plural: str | None = None
    conversion_rate: float | None = None


class FeatureResponse(Response):
    id: str
    name: str
    meter_id: str
    tenant_id: str
    environment_id: str
    type: str = "metered"
    status: str = "published"
    unit_singular: str | None = None
    unit_plural: str | None = None
    reporting_unit: ReportingUnit | None = None


class UsageAnalyticPoint(Response):
    timestamp: str
    usage: str
    event_count: int
    cost: str = "0"
    computed_commitment_utilized_amount: str | None = None
    computed_overage_amount: str | None = None
    computed_true_up_amount: str | None = None


class UsageAnalyticItem(Response):
    feature_id: str
    name: str
    event_name: str
    meter_id: str
    aggregation_type: AggregationType
    source: str | None = None
    sources: list[str] | None = None
    properties: dict[str, str] | None = None
    total_usage: str
    total_usage_display: str
    unit: str | None = None
    unit_plural: str | None = None
    reporting_unit: ReportingUnit | None = None
    window_size: WindowSize | None = None
    event_count: int
    points: list[UsageAnalyticPoint]
    total_cost: str = "0"
    currency: str | None = None
    price_id: str | None = None
    plan_id: str | None = None
    subscription_id: str | None = None
    sub_line_item_id: str | None = None
    add_on_id: str | None = None
    commitment_info: dict[str, Any] | None = None
    meter: MeterResponse | None = None
    feature: FeatureResponse | None = None
    price: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    subscription_line_item: dict[str, Any] | None = None
    addon: dict[str, Any] | None = None


class GetUsageAnalyticsResponse(Response):
    currency: str | None = None
    total_cost: str = "0"
    items: list[UsageAnalyticItem]


# -- Stripe -----------------------------------------------------------------------------------
class StripeMeterUsageRow(Response):
    object: Literal["billing.analytics.meter_usage_row"] = "billing.analytics.meter_usage_row"
    meter: str
    starts_at: int
    ends_at: int
    value: ExactNumber
    dimensions: dict[str, str]


class StripeMeterUsageRows(Response):
    url: str = "/v1/billing/analytics/meter_usage"
    has_more: bool = False
    total: int
    data: list[StripeMeterUsageRow]


class StripeMeterUsage(Response):
    object: Literal["billing.analytics.meter_usage"] = "billing.analytics.meter_usage"
    refreshed_at: int
    livemode: bool = False
    rows: StripeMeterUsageRows


class StripeMeterEventSummary(Response):
    id: str
    object: Literal["billing.meter_event_summary"] = "billing.meter_event_summary"
    aggregated_value: ExactNumber
    start_time: int
    end_time: int
    livemode: bool = False
    meter: str


class StripeMeterEventSummaryList(Response):
    object: Literal["list"] = "list"
    data: list[StripeMeterEventSummary]
    has_more: bool
    url: str
