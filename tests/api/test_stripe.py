"""Stripe-compatible endpoints on DuckDB, called with Stripe's bracket query encoding:
GET /v1/billing/analytics/meter_usage and GET /v1/billing/meters/{id}/event_summaries."""

from __future__ import annotations

import pytest

from tests.api.checks import (
    check_event_summaries,
    check_stripe_meter_usage_matches_reference,
    stripe_get,
    stripe_query,
)
from tests.api.data import GLOBEX_KEY, T0, T1, bearer

pytestmark = pytest.mark.slow

USAGE = "/v1/billing/analytics/meter_usage"
SUMMARIES = "/v1/billing/meters/mtr_tokens/event_summaries"
START, END = int(T0.timestamp()), int(T1.timestamp())


def params(**overrides) -> dict:
    return {"customer": "cus_1", "starts_at": START, "ends_at": END, **overrides}


def test_stripe_encoding_helper_matches_stripes_wire_format():
    query = stripe_query({"meters": [{"meter": "m", "dimension_filters": {"model": ["a"]}}]})
    assert query == ("meters%5B0%5D%5Bmeter%5D=m&"
                     "meters%5B0%5D%5Bdimension_filters%5D%5Bmodel%5D%5B0%5D=a")


def test_meter_usage_matches_the_reference(client, expected):
    assert check_stripe_meter_usage_matches_reference(client, expected) > 20


def test_event_summaries_match_the_reference_and_page(client, expected):
    assert check_event_summaries(client, expected) > 6


def test_all_meters_when_none_are_named(client):
    response = stripe_get(client, USAGE, params())
    assert response.status_code == 200, response.text
    meters = {row["meter"] for row in response.json()["rows"]["data"]}
    assert meters == {"mtr_calls", "mtr_tokens", "mtr_latency", "mtr_peak", "mtr_users",
                      "mtr_level", "mtr_storage"}


def test_values_are_exact_json_numbers(client):
    response = stripe_get(client, USAGE, params(meters=[{"meter": "mtr_latency"}]))
    text = response.text
    (row,) = response.json()["rows"]["data"]
    assert isinstance(row["value"], float)
    digits = text.split('"value":')[1].split(",")[0]
    assert len(digits.replace(".", "").lstrip("0")) >= 15 and "e" not in digits.lower()


def test_unbracketed_brackets_also_parse(client):
    """Raw (not percent-encoded) brackets, as curl -g sends them."""
    query = (f"customer=cus_1&starts_at={START}&ends_at={END}&meters[0][meter]=mtr_calls"
             "&meters[0][dimension_group_by_keys][0]=model")
    response = client.get(f"{USAGE}?{query}", headers=bearer())
    assert response.status_code == 200, response.text
    assert {r["dimensions"]["model"] for r in response.json()["rows"]["data"]} >= {"5", "gpt-4"}


@pytest.mark.parametrize("overrides, param, words", [
    ({"starts_at": START + 30}, "starts_at", "minute boundaries"),
    ({"ends_at": END - 1}, "ends_at", "minute boundaries"),
    ({"starts_at": "yesterday"}, "starts_at", "Unix timestamp"),
    ({"ends_at": START}, "ends_at", "after starts_at"),
    ({"customer": ""}, "customer", "missing required parameter"),
    ({"timezone": "Mars/Olympus"}, "timezone", "unknown timezone"),
    ({"value_grouping_window": "minute"}, "value_grouping_window", "one of"),
    ({"value_grouping_window": "hour", "starts_at": 0}, "ends_at", "at most"),
    ({"colour": "blue"}, "colour", "unknown parameter"),
    ({"meters": {"x": {"meter": "mtr_calls"}}}, "meters", "must be a list"),
    ({"meters": [{"meter": ""}]}, "meters[0][meter]", "missing required"),
    ({"meters": [{"meter": "mtr_calls", "tenant_filters": {"a": "b"}}]},
     "meters[0][tenant_filters]", "not supported"),
    ({"meters": [{"meter": "mtr_calls", "unknown": "x"}]}, "meters[0][unknown]", "unknown"),
    ({"meters": [{"meter": "mtr_calls", "dimension_group_by_keys": ["a'b"]}]},
     "meters[0][dimension_group_by_keys][0]", "not a valid property name"),
    ({"meters": [{"meter": "mtr_calls",
                  "dimension_filters": {"x\") or true --": "1"}}]},
     "dimension_filters", "not a valid property name"),
])
def test_bad_input_is_a_400_in_both_error_shapes(client, overrides, param, words):
    response = stripe_get(client, USAGE, params(**overrides))
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "validation_error" and body["http_status_code"] == 400
    assert words in body["message"] and param in body["message"], body["message"]
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"] == body["message"]


def test_repeated_and_malformed_parameters_are_400s(client):
    headers = {"Authorization": "Bearer mh_test_acme_reader"}
    for query in (f"customer=cus_1&customer=cus_2&starts_at={START}&ends_at={END}",
                  f"customer=cus_1&starts_at={START}&ends_at={END}&meters[0]]=x",
                  f"customer[a]=cus_1&starts_at={START}&ends_at={END}",
                  f"customer=cus_1&starts_at={START}&ends_at={END}&a[b][c][d][e][f]=1"):
        response = client.get(f"{USAGE}?{query}", headers=headers)
        assert response.status_code == 400, (query, response.text)


def test_customer_is_the_catalog_id_and_scoped_to_the_tenant(client):
    assert stripe_get(client, USAGE, params(customer="cust_1")).status_code == 404
    assert stripe_get(client, USAGE, params(customer="cus_g")).status_code == 404
    response = stripe_get(client, USAGE, params(customer="cus_1", meters=[
        {"meter": "mtr_globex_only"}]))
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "meters[0][meter]"
    globex = stripe_get(client, USAGE, params(customer="cus_1"), key=GLOBEX_KEY)
    assert {r["meter"] for r in globex.json()["rows"]["data"]} == {"mtr_calls",
                                                                   "mtr_globex_only"}


@pytest.mark.parametrize("overrides, words", [
    ({"limit": 0}, "limit"),
    ({"limit": 101}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"value_grouping_window": "week"}, "one of hour, day"),
    ({"starting_after": "a", "ending_before": "b"}, "not both"),
    ({"starting_after": "mtrusg_nope"}, "not a summary"),
    ({"start_time": START + 1}, "minute boundaries"),
    ({"end_time": None}, "missing required parameter: end_time"),
])
def test_event_summaries_bad_input(client, overrides, words):
    query = {"customer": "cus_1", "start_time": START, "end_time": END, **overrides}
    query = {k: v for k, v in query.items() if v is not None}
    response = stripe_get(client, SUMMARIES, query)
    assert response.status_code == 400, response.text
    assert words in response.json()["message"]


def test_event_summaries_unknown_meter_is_a_404(client):
    response = stripe_get(client, "/v1/billing/meters/mtr_globex_only/event_summaries",
                          {"customer": "cus_1", "start_time": START, "end_time": END})
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"
