"""POST /v1/events/analytics on DuckDB: usage by feature, filtered and grouped, equal to the
reference; costs from the customer's subscription equal the pricing reference
(models.pricing); names and values from the request never reach SQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.api.checks import (
    END,
    PRICES,
    START,
    assert_costs,
    assert_usage,
    check_events_analytics_matches_reference,
    check_include_children,
)
from tests.api.data import PERIOD_END, PERIOD_START, T0, T1, acme, iso

pytestmark = pytest.mark.slow

URL = "/v1/events/analytics"


def body(**overrides) -> dict:
    return {"external_customer_id": "cust_1", "start_time": iso(T0), "end_time": iso(T1),
            **overrides}


def test_usage_by_feature_group_and_filter_matches_the_reference(client, expected):
    assert check_events_analytics_matches_reference(client, expected) > 50


def test_include_children_folds_the_child_in(client, expected):
    check_include_children(client, expected)
    alone = client.post(URL, headers=acme(), json=body(feature_ids=["feat_tokens"])).json()
    folded = client.post(URL, headers=acme(), json=body(feature_ids=["feat_tokens"],
                                                        include_children=True)).json()
    assert folded["items"][0]["event_count"] > alone["items"][0]["event_count"]


def test_month_windows_start_at_the_subscription_anchor(client, expected):
    """cust_1's subscription is anchored on Jan 15 00:00 New York time."""
    response = client.post(URL, headers=acme(), json=body(feature_ids=["feat_tokens"],
                                                          window_size="MONTH"))
    (item,) = response.json()["items"]
    assert [p["timestamp"] for p in item["points"]] == ["2024-02-15T05:00:00Z"]
    anchor = expected.case.customer_anchor("cust_1")
    want = expected.usage("mtr_tokens", "cust_1", T0, T1, "MONTH", anchor=anchor)
    assert_usage("SUM", item["total_usage"], item["event_count"],
                 [(p["timestamp"], p["usage"], p["event_count"]) for p in item["points"]],
                 want, "MONTH")


def test_items_only_where_there_are_events(client):
    response = client.post(URL, headers=acme(), json=body(external_customer_id="cust_3"))
    assert response.status_code == 200
    assert response.json() == {"currency": None, "total_cost": "0", "items": []}
    response = client.post(URL, headers=acme(), json=body(property_filters={"model": ["none"]}))
    assert response.json()["items"] == []


def test_expand_meter_feature_price_plan_and_line_item(client):
    response = client.post(URL, headers=acme(), json=body(
        feature_ids=["feat_calls"],
        expand=["meter", "feature", "price", "plan", "subscription_line_item", "addon"]))
    (item,) = response.json()["items"]
    assert item["meter"]["id"] == "mtr_calls"
    assert item["meter"]["filters"] == [{"key": "method", "values": ["GET", "POST"]}]
    assert item["feature"]["id"] == "feat_calls"
    assert item["feature"]["reporting_unit"]["conversion_rate"] == 0.001
    price = item["price"]
    assert (price["id"], price["billing_model"], price["tier_mode"]) == (
        "price_calls", "TIERED", "SLAB")
    assert price["tiers"] == [{"up_to": 40, "unit_amount": "0"},
                              {"up_to": 120, "unit_amount": "0.013", "flat_amount": "1"},
                              {"unit_amount": "0.0125"}]
    assert item["plan"] == {"id": "plan_pro", "name": "Pro", "tenant_id": "acme",
                            "environment_id": "production", "status": "published"}
    line = item["subscription_line_item"]
    assert (line["id"], line["subscription_id"], line["price_id"]) == (
        "sub_1:price_calls", "sub_1", "price_calls")
    assert (line["commitment_type"], line["commitment_amount"]) == ("amount", "2.5")
    assert "addon" not in item and "add_on_id" not in item  # the catalog has no add-ons
    plain = client.post(URL, headers=acme(), json=body(feature_ids=["feat_calls"])).json()
    assert not {"meter", "feature", "price", "plan", "subscription_line_item"} & set(
        plain["items"][0])
    assert plain["items"][0]["price_id"] == "price_calls"


def test_costs_of_a_whole_billing_period_are_the_invoice(client, expected):
    """[period start, period end) costs what the reference charges for the period, with the
    commitment's parts; the points add up to it without the true-up."""
    response = client.post(URL, headers=acme(), json=body(
        start_time=iso(PERIOD_START), end_time=iso(PERIOD_END), window_size="DAY"))
    assert response.status_code == 200, response.text
    items = {item["feature_id"]: item for item in response.json()["items"]}
    assert set(items) == set(PRICES)
    for feature_id, price_id in PRICES.items():
        item = items[feature_id]
        priced = expected.priced_item(price_id, ["cust_1"])
        charge = priced.period_charge((PERIOD_START, PERIOD_END))
        assert Decimal(item["total_cost"]) == charge.total_cost, feature_id
        info = item.get("commitment_info")
        if charge.commitment_amount is None:
            assert info is None
            continue
        assert Decimal(info["amount"]) == charge.commitment_amount
        assert Decimal(info["computed_commitment_utilized_amount"]) == (
            charge.commitment_utilized_amount)
        assert Decimal(info["computed_overage_amount"]) == charge.overage_amount
        assert Decimal(info["computed_true_up_amount"]) == charge.true_up_amount
        points = sum(Decimal(p["cost"]) for p in item["points"])
        if item["aggregation_type"] != "WEIGHTED_SUM":
            assert points + charge.true_up_amount == charge.total_cost, feature_id
    assert items["feat_calls"]["commitment_info"]["true_up_enabled"] is True
    peak = items["feat_peak"]
    assert peak["commitment_info"]["is_windowed"] is True
    # windowed commitments break every point down; the parts add up to the item's
    for part in ("computed_commitment_utilized_amount", "computed_overage_amount",
                 "computed_true_up_amount"):
        assert sum(Decimal(p[part]) for p in peak["points"]) == Decimal(
            peak["commitment_info"][part]), part
    assert all(Decimal(p["computed_commitment_utilized_amount"])
               + Decimal(p["computed_overage_amount"]) == Decimal(p["cost"])
               for p in peak["points"])
    assert "computed_overage_amount" not in items["feat_calls"]["points"][0]


@pytest.mark.parametrize("start, end", [
    # inside one period, across its end, and a range ending exactly at the period's end
    (T0, T1),
    (datetime(2024, 3, 14, 1, 0, tzinfo=UTC), datetime(2024, 3, 17, 3, 30, tzinfo=UTC)),
    (datetime(2024, 3, 12, 0, 0, tzinfo=UTC), PERIOD_END),
])
def test_costs_of_any_range_match_the_reference(client, expected, start, end):
    """Ranges that are not billing periods: marginal cost in each period they meet
    (DESIGN 3b.8), the true-up only when a period ends inside (start, end]."""
    response = client.post(URL, headers=acme(), json=body(
        start_time=iso(start), end_time=iso(end), window_size="HOUR"))
    assert response.status_code == 200, response.text
    payload = response.json()
    for item in payload["items"]:
        assert_costs(item, expected, ["cust_1"], start, end, "HOUR")
    assert Decimal(payload["total_cost"]) == sum(Decimal(i["total_cost"])
                                                 for i in payload["items"])


def test_consecutive_ranges_add_up(client):
    """Costs are marginal: [a, b) + [b, c) = [a, c), across a billing period's end, for
    prices without a true-up in between."""
    a, b, c = (datetime(2024, 3, 14, tzinfo=UTC), datetime(2024, 3, 15, 13, 0, tzinfo=UTC),
               datetime(2024, 3, 17, tzinfo=UTC))

    def cost(start, end) -> dict[str, Decimal]:
        answer = client.post(URL, headers=acme(), json=body(
            start_time=iso(start), end_time=iso(end), feature_ids=["feat_tokens"])).json()
        return {i["feature_id"]: Decimal(i["total_cost"]) for i in answer["items"]}

    assert cost(a, b)["feat_tokens"] + cost(b, c)["feat_tokens"] == cost(a, c)["feat_tokens"]
    assert cost(a, c)["feat_tokens"] > 0


def test_a_customer_without_subscription_gets_usage_at_zero_cost(client):
    response = client.post(URL, headers=acme(), json=body(external_customer_id="cust_2"))
    payload = response.json()
    assert payload["currency"] is None and payload["total_cost"] == "0"
    assert payload["items"] and all(i["total_cost"] == "0" and "price_id" not in i
                                    for i in payload["items"])
    assert any(Decimal(i["total_usage"]) > 0 for i in payload["items"])


def test_a_property_nobody_sends_groups_everything_under_empty(client):
    response = client.post(URL, headers=acme(), json=body(
        feature_ids=["feat_tokens"], group_by=["properties.nonexistent"]))
    (item,) = response.json()["items"]
    assert item["properties"] == {"nonexistent": ""}


def test_unknown_feature_is_a_404(client):
    response = client.post(URL, headers=acme(), json=body(feature_ids=["feat_nope"]))
    assert response.status_code == 404
    assert response.json()["details"] == {"field": "feature_ids[0]"}


@pytest.mark.parametrize("overrides, words", [
    ({"external_customer_id": None}, "external_customer_id is required"),
    ({"start_time": None}, "start_time is required"),
    ({"end_time": iso(datetime(2024, 3, 1, tzinfo=UTC))}, "after start_time"),
    ({"group_by": ["region"]}, "unknown group_by"),
    ({"group_by": ["properties."]}, "not a valid property name"),
    ({"group_by": ["properties.a b"]}, "not a valid property name"),
    ({"group_by": ["properties.x') or 1=1 --"]}, "not a valid property name"),
    ({"group_by": ['properties.x"]']}, "not a valid property name"),
    ({"property_filters": {"model; drop table catalog_meters": ["a"]}},
     "not a valid property name"),
    ({"property_filters": {"model": []}}, "at least one value"),
    ({"property_filters": {"model": [True]}}, "boolean"),
    ({"property_filters": ["model"]}, "valid dictionary"),
    ({"expand": ["everything"]}, "unknown value"),
    ({"window_size": "DECADE"}, "window_size"),
    ({"include_children": "maybe"}, "include_children"),
])
def test_bad_input_is_a_400(client, overrides, words):
    response = client.post(URL, headers=acme(), json=body(**overrides))
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "validation_error"
    assert words in response.json()["message"], response.json()["message"]


@pytest.mark.parametrize("value", ["' or '1'='1", "gpt-4'; drop table serving_meter_event_values;"
                                   " --", "$.model", '"}', "%"])
def test_filter_values_are_data_not_sql(client, value):
    response = client.post(URL, headers=acme(), json=body(property_filters={"model": [value]},
                                                          sources=[value]))
    assert response.status_code == 200
    assert response.json()["items"] == []
    still = client.post(URL, headers=acme(), json=body(feature_ids=["feat_tokens"]))
    assert still.json()["items"][0]["event_count"] > 0


def test_range_and_timezone_of_points(client):
    """Points are bucket starts in UTC with a Z; a range cut mid-bucket keeps the bucket start."""
    response = client.post(URL, headers=acme(), json=body(
        feature_ids=["feat_tokens"], window_size="DAY", start_time=iso(START),
        end_time=iso(END)))
    points = response.json()["items"][0]["points"]
    assert points[0]["timestamp"] <= iso(START)
    assert all(p["timestamp"].endswith(("04:00:00Z", "05:00:00Z")) for p in points)
