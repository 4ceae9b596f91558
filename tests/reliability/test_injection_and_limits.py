"""Hostile input to the read API: SQL and JSON-path injection through every name and value a
request can carry (group_by names, property_filters keys and values, meter, feature and
customer ids, Stripe's bracket parameters), and oversized requests and absurd ranges, which
are refused with a 400 at once instead of being served slowly. Never a 500, never another
environment's data, and the warehouse is unchanged afterwards."""

from __future__ import annotations

import time
from decimal import Decimal
from urllib.parse import quote

import pytest

from tests.api.checks import stripe_query
from tests.reliability.tenants import SHARED_EVENTS, T0, T1, key

pytestmark = pytest.mark.slow

SCOPE = ("acme", "production")
HEADERS = {"x-api-key": key(*SCOPE)}
START, END = T0.isoformat().replace("+00:00", "Z"), T1.isoformat().replace("+00:00", "Z")
S0, S1 = int(T0.timestamp()), int(T1.timestamp())
N = SHARED_EVENTS[SCOPE]
PAYLOADS = [
    "x' or '1'='1", "'; drop table catalog_meters; --", '" or 1=1 --', "1) or (1=1",
    "owner') or ('a'='a", "$.owner", "$[*]", "$..*", "owner\\", "a\\'b", "%", "_", "*", "?",
    "$1", ":name", "%(x)s", "{}", "{0}", "owner; select 1", "owner--", "owner/*", "`owner`",
    '"owner"', "properties.owner", "../owner", "owner owner", "😀", "a" * 65, "a" * 10_000,
    "\n", "\t", "x\x00y", "\u202eowner", "NaN", "1e400", "-0", "[]", "null", "true",
    "owner::int", "owner.x", "owner:x", "owner-x", "0owner",
]
BODY = {"external_customer_id": "cust_shared", "start_time": START, "end_time": END}


def post(client, path, body):
    return client.post(path, json=body, headers=HEADERS)


def usage_of(response) -> Decimal:
    return sum((Decimal(i["total_usage"]) for i in response.json()["items"]
                if i["feature_id"] == "feat_shared"), Decimal(0))


def catalog_state(client) -> dict:
    return client.get("/v1/meters?limit=1000", headers=HEADERS).json()


def test_nothing_is_injected_through_names_and_values(engine_client):
    before = catalog_state(engine_client)
    for payload in PAYLOADS:
        if len(payload) > 255 or "\x00" in payload:  # beyond the limits: a 400 anywhere
            refused = 400
        else:
            refused = None
        # group_by names: a 400 for names that are not property names, else groups of ""
        response = post(engine_client, "/v1/events/analytics",
                        {**BODY, "group_by": ["properties." + payload]})
        assert response.status_code in (200, 400), (payload, response.text)
        if response.status_code == 200:
            assert usage_of(response) == N
            assert {i["properties"][payload] for i in response.json()["items"]} == {""}
        # property_filters keys
        response = post(engine_client, "/v1/events/analytics",
                        {**BODY, "property_filters": {payload: ["a"]}})
        assert response.status_code in (200, 400), (payload, response.text)
        if response.status_code == 200:
            assert usage_of(response) == 0
        # property_filters values: matched as data, never as code
        response = post(engine_client, "/v1/events/analytics",
                        {**BODY, "property_filters": {"owner": [payload]}})
        if len(payload) > 1000 or "\x00" in payload:
            assert response.status_code == 400, (payload, response.text)
        else:
            assert response.status_code == 200, (payload, response.text)
            assert usage_of(response) == 0
        # sources
        response = post(engine_client, "/v1/events/analytics", {**BODY, "sources": [payload]})
        if len(payload) > 1000 or "\x00" in payload:
            assert response.status_code == 400, (payload, response.text)
        else:
            assert response.status_code == 200 and usage_of(response) == 0, payload
        # meter, feature and customer ids: not found
        for body in ({**BODY, "meter_ids": [payload], "aggregation_type": "COUNT"},
                     {**BODY, "external_customer_id": payload, "meter_ids": ["mtr_shared"],
                      "aggregation_type": "COUNT"}):
            response = post(engine_client, "/v1/meter-usage/analytics", body)
            assert response.status_code == (refused or 404), (payload, response.text)
        response = post(engine_client, "/v1/events/analytics", {**BODY, "feature_ids": [payload]})
        assert response.status_code == (refused or 404), (payload, response.text)
        response = engine_client.get(f"/v1/meters/{quote(payload, safe='')}", headers=HEADERS)
        assert response.status_code in (404, 400), (payload, response.text)
        # Stripe: customer, meter, dimension keys and values
        for params in (
            {"customer": payload}, {"meters": [{"meter": payload}]},
            {"meters": [{"meter": "mtr_shared", "dimension_filters": {payload: ["a"]}}]},
            {"meters": [{"meter": "mtr_shared", "dimension_filters": {"owner": [payload]}}]},
            {"meters": [{"meter": "mtr_shared", "dimension_group_by_keys": [payload]}]},
            {"timezone": payload}, {"value_grouping_window": payload},
        ):
            query = stripe_query({"customer": "cus_shared", "starts_at": S0, "ends_at": S1,
                                  **params})
            response = engine_client.get(f"/v1/billing/analytics/meter_usage?{query}",
                                          headers=HEADERS)
            assert response.status_code in (200, 400, 404), (params, response.text)
            if response.status_code == 200:
                rows = response.json()["rows"]["data"]
                assert all(r["meter"] == "mtr_shared" for r in rows) or "meter" not in str(
                    params)
        response = engine_client.get(
            f"/v1/billing/meters/{quote(payload, safe='')}/event_summaries?customer=cus_shared"
            f"&start_time={S0}&end_time={S1}", headers=HEADERS)
        assert response.status_code in (400, 404), (payload, response.text)
    assert catalog_state(engine_client) == before


BRACKETS = [
    "meters[x][meter]=mtr_shared", "meters[0][meter][0]=mtr_shared", "meters[][meter]=mtr_shared",
    "meters[99999999999999999999999][meter]=mtr_shared", "meters[0]=mtr_shared",
    "meters[-1][meter]=mtr_shared", "meters=mtr_shared",
    "meters[0][dimension_filters][a][b][c][d]=x", "meters[0][dimension_filters]=x",
    "meters[0][dimension_group_by_keys]=owner", "meters[0][dimension_group_by_keys][x]=owner",
    "meters[0][meter]=mtr_shared&meters[0][meter]=mtr_tokens", "meters[0][meter=mtr_shared",
    "meters]0[[meter]=mtr_shared", "meters[0]]meter[=mtr_shared", "[0][meter]=mtr_shared",
    "meters[0][meter]=mtr_shared&meters[0]=x", "meters[0][unknown]=x", "customer[0]=cus_shared",
    "starts_at[]=1", "meters[0][tenant_filters][x]=y",
    "meters[0][meter]=mtr_shared&meters[2][meter]=mtr_tokens",
    "%5B%5D=1", "a" * 5000 + "=1", "meters" + "[0]" * 50 + "=x",
]


@pytest.mark.parametrize("extra", BRACKETS)
def test_odd_stripe_brackets_are_a_400_or_an_answer(engine_client, extra):
    url = (f"/v1/billing/analytics/meter_usage?customer=cus_shared&starts_at={S0}"
           f"&ends_at={S1}&{extra}")
    response = engine_client.get(url, headers=HEADERS)
    assert response.status_code in (200, 400), response.text
    body = response.json()
    if response.status_code == 400:
        assert body["code"] == "validation_error" and body["error"]["type"]
    else:
        assert sum(Decimal(str(r["value"])) for r in body["rows"]["data"]
                   if r["meter"] == "mtr_shared") in (0, N)


# -- oversized requests and absurd ranges: a quick 400 --------------------------------------

MANY = 100_000
OVERSIZED = [
    ("/v1/meter-usage/analytics", {**BODY, "aggregation_type": "COUNT",
                                   "meter_ids": [f"mtr_{i}" for i in range(MANY)]}),
    ("/v1/meter-usage/analytics", {**BODY, "aggregation_type": "COUNT",
                                   "meter_ids": ["mtr_shared"] * MANY}),
    ("/v1/events/analytics", {**BODY, "feature_ids": ["feat_shared"] * MANY}),
    ("/v1/events/analytics", {**BODY, "group_by": [f"properties.p{i}" for i in range(2_000)]}),
    ("/v1/events/analytics", {**BODY, "property_filters": {f"p{i}": ["a"] for i in
                                                           range(10_000)}}),
    ("/v1/events/analytics", {**BODY, "property_filters": {"owner": [str(i) for i in
                                                                     range(MANY)]}}),
    ("/v1/events/analytics", {**BODY, "sources": [f"s{i}" for i in range(MANY)]}),
    ("/v1/events/analytics", {**BODY, "expand": ["price"] * MANY}),
    ("/v1/events/analytics", {**BODY, "external_customer_id": "c" * 5_000}),
    ("/v1/events/analytics", {**BODY, "external_customer_id": "c" * 5_000_000}),  # 413
]
ABSURD_RANGES = [
    ({"start_time": "1970-01-01T00:00:00Z", "end_time": "2100-01-01T00:00:00Z"}, None),
    ({"start_time": "2000-01-01T00:00:00Z", "end_time": "2011-01-01T00:00:00Z"}, None),
    ({"start_time": "2024-01-01T00:00:00Z", "end_time": "2025-01-01T00:00:00Z"}, "MINUTE"),
    ({"start_time": "2024-01-01T00:00:00Z", "end_time": "2034-01-01T00:00:00Z"}, "15MIN"),
    ({"start_time": "2024-03-03T00:00:00Z", "end_time": "2024-03-01T00:00:00Z"}, None),
    ({"start_time": "2024-03-01T00:00:00Z", "end_time": "2024-03-01T00:00:00Z"}, None),
    ({"start_time": "1969-12-31T23:00:00Z", "end_time": "2024-03-01T00:00:00Z"}, None),
    ({"start_time": "2024-03-01T00:00:00Z", "end_time": "2100-01-01T00:01:00Z"}, None),
    ({"start_time": "0001-01-01T00:00:00Z", "end_time": "9999-12-31T00:00:00Z"}, "MINUTE"),
]
FAST = 3.0  # seconds: a refusal does no work (generous for a loaded 2-core machine)


@pytest.mark.parametrize("path, body", OVERSIZED, ids=range(len(OVERSIZED)))
def test_oversized_requests_are_refused_quickly(tenants_client, path, body):
    started = time.monotonic()
    response = post(tenants_client, path, body)
    elapsed = time.monotonic() - started
    assert response.status_code in (400, 413), response.text[:300]
    assert response.json()["code"] == "validation_error"
    assert elapsed < FAST, elapsed


@pytest.mark.parametrize("times, window", ABSURD_RANGES, ids=range(len(ABSURD_RANGES)))
def test_absurd_ranges_are_refused_quickly(tenants_client, times, window):
    window_part = {"window_size": window} if window else {}
    for path, body in (
        ("/v1/meter-usage/analytics", {**BODY, **times, **window_part, "aggregation_type": "COUNT",
                                       "meter_ids": ["mtr_shared"]}),
        ("/v1/events/analytics", {**BODY, **times, **window_part}),
    ):
        started = time.monotonic()
        response = post(tenants_client, path, body)
        assert response.status_code == 400, (path, response.text)
        assert time.monotonic() - started < FAST


@pytest.mark.parametrize("params", [
    {"starts_at": 0, "ends_at": 4_102_444_800, "value_grouping_window": "hour"},
    {"starts_at": S0, "ends_at": 10**20},
    {"starts_at": -60, "ends_at": S1},
    {"starts_at": S1, "ends_at": S0},
    {"starts_at": "1e9", "ends_at": S1},
    {"meters": [{"meter": "mtr_shared"}] * 500},
    {"meters": [{"meter": "mtr_shared", "dimension_group_by_keys": [f"k{i}" for i in
                                                                    range(500)]}]},
    {"meters": [{"meter": "mtr_shared", "dimension_filters": {f"k{i}": ["a"] for i in
                                                              range(500)}}]},
    {"meters": [{"meter": "mtr_shared", "dimension_filters": {"owner": [str(i) for i in
                                                                        range(500)]}}]},
])
def test_absurd_stripe_requests_are_refused_quickly(tenants_client, params):
    query = stripe_query({"customer": "cus_shared", "starts_at": S0, "ends_at": S1, **params})
    started = time.monotonic()
    response = tenants_client.get(f"/v1/billing/analytics/meter_usage?{query}", headers=HEADERS)
    assert response.status_code == 400, response.text[:300]
    assert time.monotonic() - started < FAST
