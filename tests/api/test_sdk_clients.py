"""`meterhouse serve` as a real process, called by the official client libraries: the
`flexprice` SDK from PyPI (`events.get_usage_analytics`, parsed into its own response
models) and the `stripe` package (its request encoding and HTTP client, pointed at us).
Numbers are checked against the plain-Python reference (models.reference, models.pricing).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from models import reference as ref
from tests.api.checks import END, KINDS, PRICES, START, close
from tests.api.data import ACME_KEY, T0, T1, Expected
from tests.api.server import running_server

flexprice = pytest.importorskip("flexprice")
stripe = pytest.importorskip("stripe")

pytestmark = pytest.mark.slow

FEATURE_METERS = {"feat_calls": "mtr_calls", "feat_tokens": "mtr_tokens",
                  "feat_peak": "mtr_peak", "feat_storage": "mtr_storage"}


@pytest.fixture(scope="module")
def server(duckdb_warehouse):
    with running_server(["--warehouse", duckdb_warehouse.duckdb_path]) as http:
        yield str(http.base_url).rstrip("/")


def test_flexprice_sdk_reads_usage_and_costs(server, expected: Expected):
    sdk = flexprice.Flexprice(api_key_auth=ACME_KEY, server_url=f"{server}/v1")
    response = sdk.events.get_usage_analytics(
        external_customer_id="cust_1", start_time=START, end_time=END, window_size="HOUR",
        expand=["price", "meter", "feature", "plan", "subscription_line_item"])
    assert isinstance(response, flexprice.models.GetUsageAnalyticsResponse)
    assert response.currency == "usd"
    items = {item.feature_id: item for item in response.items}
    assert set(items) == set(FEATURE_METERS)
    total = Decimal(0)
    for feature_id, meter_id in FEATURE_METERS.items():
        item = items[feature_id]
        want = expected.usage(meter_id, "cust_1", START, END, "HOUR")
        assert item.event_count == want.event_count
        assert close(KINDS[meter_id], Decimal(item.total_usage), want.total), feature_id
        assert [p.event_count for p in item.points] == [p.event_count for p in want.points]
        cost = expected.cost(PRICES[feature_id], ["cust_1"], START, END)
        assert Decimal(item.total_cost) == cost, feature_id
        total += cost
        # the expansions parse into the SDK's own models
        assert item.price.id == PRICES[feature_id] and item.meter.id == meter_id
        assert item.feature.id == feature_id and item.plan.id == "plan_pro"
        assert item.subscription_line_item.id == f"sub_1:{PRICES[feature_id]}"
    assert Decimal(response.total_cost) == total
    calls = items["feat_calls"]
    assert calls.reporting_unit.conversion_rate == 0.001
    assert calls.commitment_info.amount == "2.5" and calls.commitment_info.true_up_enabled


def test_flexprice_sdk_group_by_filters_and_children(server, expected: Expected):
    sdk = flexprice.Flexprice(api_key_auth=ACME_KEY, server_url=f"{server}/v1")
    response = sdk.events.get_usage_analytics(
        external_customer_id="cust_1", start_time=T0, end_time=T1, window_size="DAY",
        feature_ids=["feat_tokens"], group_by=["properties.model"],
        property_filters={"model": ["gpt-4", "o1"]}, include_children=True)
    groups = {item.properties["model"]: item for item in response.items}
    assert set(groups) == {"gpt-4", "o1"}
    for value, item in groups.items():
        def where(event, v=value):
            return event.properties.get("model") == v
        want = ref.usage(expected.meter("mtr_tokens"), expected.events(["cust_1", "cust_2"],
                                                                        where),
                         T0, T1, "DAY", "America/New_York")
        assert item.event_count == want.event_count
        assert Decimal(item.total_usage) == want.total
        assert Decimal(item.total_cost) == expected.cost(
            "price_tokens", ["cust_1", "cust_2"], T0, T1, where)


def test_flexprice_sdk_errors_are_error_responses(server):
    errors = flexprice.models.errors
    sdk = flexprice.Flexprice(api_key_auth="wrong-key", server_url=f"{server}/v1")
    with pytest.raises(errors.FlexpriceError) as raised:  # 401: the SDK's generic 4XX error
        sdk.events.get_usage_analytics(external_customer_id="cust_1", start_time=T0,
                                       end_time=T1)
    assert raised.value.status_code == 401
    sdk = flexprice.Flexprice(api_key_auth=ACME_KEY, server_url=f"{server}/v1")
    with pytest.raises(errors.ErrorResponse) as raised:  # 400, parsed as ErrorResponse
        sdk.events.get_usage_analytics(external_customer_id="cust_1", start_time=T1,
                                       end_time=T0)
    assert raised.value.data.code == "validation_error"
    assert raised.value.data.http_status_code == 400
    assert "end_time must be after start_time" in raised.value.data.message


def _stripe(server: str, key: str = ACME_KEY):
    return stripe.StripeClient(key, base_addresses={"api": server}, max_network_retries=0)


def test_stripe_client_meter_usage_analytics(server, expected: Expected):
    """Stripe's own parameter encoding (brackets, nested lists) and HTTP client."""
    client = _stripe(server)
    answer = client.raw_request(
        "get", "/v1/billing/analytics/meter_usage", customer="cus_1",
        starts_at=int(T0.timestamp()), ends_at=int(T1.timestamp()), value_grouping_window="day",
        timezone="America/New_York",
        meters=[{"meter": "mtr_tokens", "dimension_group_by_keys": ["model"],
                 "dimension_filters": {"model": ["gpt-4"]}}])
    usage = client.deserialize(answer, api_mode="V1")
    assert usage.object == "billing.analytics.meter_usage"
    rows = usage["rows"]["data"]
    assert rows and all(row["dimensions"].to_dict() == {"model": "gpt-4"} for row in rows)
    want = expected.usage("mtr_tokens", "cust_1", T0, T1, "DAY", tz="America/New_York",
                          where=lambda e: e.properties.get("model") == "gpt-4")
    assert [(row["starts_at"], Decimal(str(row["value"]))) for row in rows] == [
        (max(int(p.start.timestamp()), int(T0.timestamp())), p.value) for p in want.points]


def test_stripe_client_event_summaries(server, expected: Expected):
    client = _stripe(server)
    summaries = client.v1.billing.meters.event_summaries.list(
        "mtr_tokens", {"customer": "cus_1", "start_time": int(T0.timestamp()),
                       "end_time": int(T1.timestamp()), "value_grouping_window": "day",
                       "limit": 2})
    seen = list(summaries.auto_paging_iter())  # follows our cursors
    want = expected.usage("mtr_tokens", "cust_1", T0, T1, "DAY", tz="UTC")
    assert sorted((s.start_time, Decimal(str(s.aggregated_value))) for s in seen) == [
        (int(p.start.timestamp()), p.value) for p in want.points]


def test_stripe_client_errors(server):
    with pytest.raises(stripe.AuthenticationError):
        _stripe(server, "sk_nope").raw_request(
            "get", "/v1/billing/analytics/meter_usage", customer="cus_1",
            starts_at=int(T0.timestamp()), ends_at=int(T1.timestamp()))
    with pytest.raises(stripe.InvalidRequestError) as raised:  # not minute-aligned
        _stripe(server).raw_request(
            "get", "/v1/billing/analytics/meter_usage", customer="cus_1",
            starts_at=int(T0.timestamp()) + 7, ends_at=int(T1.timestamp()))
    assert "minute" in str(raised.value)
    with pytest.raises(stripe.InvalidRequestError):  # another tenant's customer: 404
        _stripe(server).raw_request(
            "get", "/v1/billing/analytics/meter_usage", customer="cus_g",
            starts_at=int(T0.timestamp()), ends_at=int(T1.timestamp()))
