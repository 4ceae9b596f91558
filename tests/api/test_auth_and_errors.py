"""Authentication, the ErrorResponse shape of every failure, OpenAPI and docs."""

from __future__ import annotations

import base64

import duckdb
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.api.data import ACME_KEY, ACME_REVOKED_KEY, T0, T1, acme, bearer, iso

pytestmark = pytest.mark.slow

USAGE_BODY = {"external_customer_id": "cust_1", "meter_ids": ["mtr_tokens"],
              "aggregation_type": "SUM", "start_time": iso(T0), "end_time": iso(T1)}
STRIPE_QUERY = f"customer=cus_1&starts_at={int(T0.timestamp())}&ends_at={int(T1.timestamp())}"
ENDPOINTS = [
    ("POST", "/v1/meter-usage/analytics", USAGE_BODY),
    ("POST", "/v1/events/analytics", {**USAGE_BODY, "meter_ids": None}),
    ("GET", "/v1/meters", None),
    ("GET", "/v1/meters/mtr_tokens", None),
    ("GET", f"/v1/billing/analytics/meter_usage?{STRIPE_QUERY}", None),
    ("GET", "/v1/billing/meters/mtr_tokens/event_summaries?customer=cus_1&start_time="
            f"{int(T0.timestamp())}&end_time={int(T1.timestamp())}", None),
]


def call(client, method: str, url: str, body, headers: dict):
    return client.request(method, url, json=body, headers=headers)


@pytest.mark.parametrize("method, url, body", ENDPOINTS)
def test_every_endpoint_answers_with_either_key_header(client, method, url, body):
    for headers in (acme(), bearer(), {"authorization": "bearer " + ACME_KEY},
                    {"Authorization": "Basic " + base64.b64encode(
                        f"{ACME_KEY}:".encode()).decode()}):
        response = call(client, method, url, body, headers)
        assert response.status_code == 200, (headers, response.text)


@pytest.mark.parametrize("method, url, body", ENDPOINTS)
@pytest.mark.parametrize("headers, words", [
    ({}, "missing API key"),
    ({"x-api-key": "mh_wrong"}, "unknown API key"),
    ({"Authorization": "Bearer mh_wrong"}, "unknown API key"),
    ({"Authorization": "Bearer "}, "missing API key"),
    ({"Authorization": f"Token {ACME_KEY}"}, "missing API key"),
    ({"Authorization": "Basic !!!"}, "missing API key"),
    ({"x-api-key": ACME_REVOKED_KEY}, "revoked"),
])
def test_missing_unknown_and_revoked_keys_are_401(client, method, url, body, headers, words):
    response = call(client, method, url, body, headers)
    assert response.status_code == 401, response.text
    error = response.json()
    assert (error["code"], error["http_status_code"]) == ("permission_denied", 401)
    assert words in error["message"]
    if "/v1/billing/" in url:
        assert error["error"]["type"] == "authentication_error"


def test_unknown_route_and_method_are_error_responses(client):
    response = client.get("/v1/nothing", headers=acme())
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    response = client.delete("/v1/meters", headers=acme())
    assert response.status_code == 405
    assert response.json()["http_status_code"] == 405


def test_unexpected_errors_are_a_500_without_internals(duckdb_settings, monkeypatch):
    import api.routers.meter_usage as route

    def explode(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(route, "meter_usage", explode)
    with TestClient(create_app(duckdb_settings), raise_server_exceptions=False) as client:
        response = client.post("/v1/meter-usage/analytics", headers=acme(), json=USAGE_BODY)
    assert response.status_code == 500
    assert response.json() == {"code": "internal_error", "http_status_code": 500, "details": {},
                               "message": "internal error; the server log has the details"}
    assert "secret" not in response.text and "Traceback" not in response.text


@pytest.mark.parametrize("error, status", [
    (duckdb.IOException("Could not set lock on file"), 503),
    (duckdb.CatalogException("Table with name serving_x does not exist"), 503),
    (duckdb.InvalidInputException("boom"), 500),
])
def test_engine_errors_are_503_when_retrying_helps(duckdb_settings, monkeypatch, error, status):
    import api.routers.meter_usage as route

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(route, "meter_usage", fail)
    with TestClient(create_app(duckdb_settings), raise_server_exceptions=False) as client:
        response = client.post("/v1/meter-usage/analytics", headers=acme(), json=USAGE_BODY)
    assert response.status_code == status
    assert response.json()["code"] in ("service_unavailable", "database_error")
    if status == 503:
        assert response.headers["retry-after"] == "1"


def test_openapi_and_docs(client):
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert set(paths) >= {"/v1/meter-usage/analytics", "/v1/events/analytics", "/v1/meters",
                          "/v1/meters/{meter_id}", "/v1/billing/analytics/meter_usage",
                          "/v1/billing/meters/{meter_id}/event_summaries"}
    operation = paths["/v1/meter-usage/analytics"]["post"]
    assert operation["operationId"] == "getMeterUsageAnalytics"
    assert "ErrorResponse" in str(operation["responses"]["400"])
    assert paths["/v1/events/analytics"]["post"]["operationId"] == "getUsageAnalytics"
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert client.get("/health").json() == {"status": "ok"}
