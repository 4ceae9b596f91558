"""POST /v1/events/analytics on DuckDB: usage by feature, filtered and grouped, equal to the
reference; costs are the pricing placeholder (0, currency null); names and values from the
request never reach SQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.api.checks import (
    END,
    START,
    assert_usage,
    check_events_analytics_matches_reference,
    check_include_children,
)
from tests.api.data import T0, T1, acme, iso

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


def test_expand_meter_and_feature(client):
    response = client.post(URL, headers=acme(), json=body(
        feature_ids=["feat_calls"], expand=["meter", "feature", "price", "plan"]))
    (item,) = response.json()["items"]
    assert item["meter"]["id"] == "mtr_calls"
    assert item["meter"]["filters"] == [{"key": "method", "values": ["GET", "POST"]}]
    assert item["feature"]["id"] == "feat_calls"
    assert item["feature"]["reporting_unit"]["conversion_rate"] == 0.001
    assert "price" not in item and "plan" not in item  # no prices yet
    plain = client.post(URL, headers=acme(), json=body(feature_ids=["feat_calls"])).json()
    assert "meter" not in plain["items"][0] and "feature" not in plain["items"][0]


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
