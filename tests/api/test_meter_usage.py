"""POST /v1/meter-usage/analytics on DuckDB: numbers equal the reference's, every window size
and aggregation type; one item per requested meter; bad input is a 400 that says why."""

from __future__ import annotations

import pytest

from tests.api.checks import (
    METERS,
    canonical,
    check_aggregation_override,
    check_meter_usage_matches_reference,
)
from tests.api.data import GLOBEX_KEY, T0, T1, acme, iso

pytestmark = pytest.mark.slow

URL = "/v1/meter-usage/analytics"


def body(**overrides) -> dict:
    return {"external_customer_id": "cust_1", "meter_ids": ["mtr_tokens"],
            "aggregation_type": "SUM", "start_time": iso(T0), "end_time": iso(T1),
            "window_size": "DAY", **overrides}


def test_every_meter_and_window_matches_the_reference(client, expected):
    assert check_meter_usage_matches_reference(client, expected) > 100


def test_request_aggregation_type_decides(client, expected):
    assert check_aggregation_override(client, expected) > 10


def test_one_item_per_requested_meter_in_order_zero_without_events(client):
    response = client.post(URL, headers=acme(), json=body(
        external_customer_id="cust_3", meter_ids=["mtr_tokens", "mtr_calls", "mtr_tokens"]))
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [i["meter_id"] for i in items] == ["mtr_tokens", "mtr_calls"]
    for item in items:
        assert (item["total_value"], item["event_count"], item["points"]) == ("0", 0, [])


def test_decimals_are_canonical_strings(client):
    response = client.post(URL, headers=acme(), json=body(
        meter_ids=["mtr_latency"], aggregation_type="AVG", window_size="HOUR"))
    item = response.json()["items"][0]
    assert isinstance(item["total_value"], str)
    canonical(item["total_value"])
    for point in item["points"]:
        canonical(point["value"])
        assert point["timestamp"].endswith("Z")
    # AVG keeps at least 15 significant digits (DESIGN 3b.11)
    assert any(len(p["value"].replace(".", "").lstrip("0")) >= 15 for p in item["points"])


def test_count_unique_needs_a_count_unique_meter(client):
    response = client.post(URL, headers=acme(), json=body(aggregation_type="COUNT_UNIQUE"))
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert "COUNT_UNIQUE" in response.json()["message"]


@pytest.mark.parametrize("meter_id", ["mtr_nope", "mtr_globex_only"])
def test_unknown_and_other_tenants_meters_are_the_same_404(client, meter_id):
    response = client.post(URL, headers=acme(), json=body(meter_ids=["mtr_tokens", meter_id]))
    assert response.status_code == 404
    error = response.json()
    assert error == {"code": "not_found", "message": f"meter {meter_id!r} not found",
                     "http_status_code": 404, "details": {"field": "meter_ids"}}


@pytest.mark.parametrize("customer", ["cust_nope", "cust_g"])
def test_unknown_and_other_tenants_customers_are_the_same_404(client, customer):
    response = client.post(URL, headers=acme(), json=body(external_customer_id=customer))
    assert response.status_code == 404
    assert response.json()["message"] == f"customer with external id {customer!r} not found"


def test_each_key_sees_its_own_tenant(client):
    """globex has a meter mtr_calls and a customer cust_1 too: its own, 30 events."""
    response = client.post(URL, headers={"x-api-key": GLOBEX_KEY}, json=body(
        meter_ids=["mtr_calls"], aggregation_type="COUNT", window_size=None))
    assert response.status_code == 200
    assert response.json()["items"][0]["total_value"] == "30"
    assert client.post(URL, headers={"x-api-key": GLOBEX_KEY},
                       json=body(meter_ids=["mtr_tokens"])).status_code == 404


@pytest.mark.parametrize("overrides, field, words", [
    ({"end_time": iso(T0)}, "end_time", "after start_time"),
    ({"start_time": "2024-03-08T00:00:30Z"}, "start_time", "whole minute"),
    ({"end_time": "2024-03-09T00:00:00.5+00:00"}, "end_time", "whole minute"),
    ({"start_time": "2024-03-08T00:00:00"}, "start_time", "timezone"),
    ({"start_time": "yesterday"}, "start_time", "datetime"),
    ({"window_size": "FORTNIGHT"}, "window_size", "MINUTE"),
    ({"aggregation_type": "MEDIAN"}, "aggregation_type", "COUNT"),
    ({"meter_ids": []}, "meter_ids", "at least 1"),
    ({"meter_ids": "mtr_tokens"}, "meter_ids", "list"),
    ({"external_customer_id": ""}, "external_customer_id", "at least 1"),
    ({"window_size": "MINUTE", "start_time": "2023-01-01T00:00:00Z",
      "end_time": "2024-02-05T00:00:00Z"}, "end_time", "larger window"),
    ({"start_time": "1900-01-01T00:00:00Z"}, "start_time", "1970"),
    ({"window_size": None, "start_time": "1971-01-01T00:00:00Z",
      "end_time": "2099-01-01T00:00:00Z"}, "end_time", "at most"),
    ({"billing_anchor": "the 15th"}, "billing_anchor", "datetime"),
])
def test_bad_input_is_a_400_naming_the_field(client, overrides, field, words):
    response = client.post(URL, headers=acme(), json=body(**overrides))
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["code"] == "validation_error" and error["http_status_code"] == 400
    assert field in error["message"] and words in error["message"], error["message"]


def test_missing_fields_are_all_named(client):
    response = client.post(URL, headers=acme(), json={"meter_ids": ["mtr_tokens"]})
    assert response.status_code == 400
    message = response.json()["message"]
    for field in ("aggregation_type", "start_time", "end_time", "external_customer_id"):
        assert field in message
    assert {e["field"] for e in response.json()["details"]["errors"]} >= {"start_time"}


@pytest.mark.parametrize("payload", ['{"meter_ids": [', "not json", "", "[1, 2]", "null"])
def test_malformed_json_is_a_400(client, payload):
    response = client.post(URL, headers={**acme(), "content-type": "application/json"},
                           content=payload)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "validation_error"


def test_unknown_fields_are_ignored_like_flexprice(client):
    response = client.post(URL, headers=acme(), json=body(external_customer_ids=["x"],
                                                          something_new=True))
    assert response.status_code == 200


def test_all_meters_at_once(client):
    response = client.post(URL, headers=acme(), json=body(meter_ids=METERS,
                                                          aggregation_type="COUNT"))
    assert response.status_code == 200
    assert [i["meter_id"] for i in response.json()["items"]] == METERS
