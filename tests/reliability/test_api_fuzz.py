"""API fuzzing: schemathesis generates requests from our own OpenAPI document (/openapi.json),
valid ones and invalid ones, and sends them to the in-process app over the four-environment test
warehouse (tests/reliability/tenants.py), on DuckDB and on Postgres, with a valid key, so they
reach the handlers. No request
may get a 500, and every response must match the document (status code, content type, body).

The operations are driven with hypothesis directly (`APIOperation.as_strategy`): schemathesis'
pytest fixture loader does not run under this pytest."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.reliability.tenants import T0, T1, key

pytestmark = pytest.mark.slow

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
AUTH_HEADERS = ("x-api-key", "authorization")
OPERATIONS = [
    "POST /v1/meter-usage/analytics", "POST /v1/events/analytics", "GET /v1/meters",
    "GET /v1/meters/{meter_id}", "GET /v1/billing/analytics/meter_usage",
    "GET /v1/billing/meters/{meter_id}/event_summaries",
]
# MH_FUZZ_EXAMPLES=500 for a longer hunt; the default keeps `make test` well under 2 minutes
EXAMPLES = int(os.environ.get("MH_FUZZ_EXAMPLES", "25"))
START, END = T0.isoformat().replace("+00:00", "Z"), T1.isoformat().replace("+00:00", "Z")
S0, S1 = int(T0.timestamp()), int(T1.timestamp())


@pytest.fixture(scope="module")
def api_schema(engine_client):
    """Our document, over the app on DuckDB and on Postgres (`engine_client`)."""
    return schemathesis.openapi.from_asgi("/openapi.json", engine_client.app)


def with_real_ids(case) -> None:
    """Half the examples name ids and a range that exist, so that they get past the lookups
    and into the usage code with the generated rest (windows, filters, group-bys...)."""
    if case.path_parameters and "meter_id" in case.path_parameters:
        case.path_parameters["meter_id"] = "mtr_shared"
    if isinstance(case.query, dict):
        if "meters[0][meter]" in case.query:
            case.query["meters[0][meter]"] = "mtr_tokens"
        if case.operation.path.endswith("meter_usage"):
            case.query.update(customer="cus_shared", starts_at=S0, ends_at=S1)
        elif case.operation.path.endswith("event_summaries"):
            case.query.update(customer="cus_shared", start_time=S0, end_time=S1)
    if isinstance(case.body, dict):
        case.body["external_customer_id"] = "cust_shared"
        case.body["start_time"], case.body["end_time"] = START, END
        if "meter_ids" in case.body:
            case.body["meter_ids"] = ["mtr_shared", "mtr_tokens"]
        if isinstance(case.body.get("feature_ids"), list):
            count = len(case.body["feature_ids"])
            case.body["feature_ids"] = ["feat_shared", "feat_tokens"][:count]


def operation(schema, label: str):
    for result in schema.get_all_operations():
        op = result.ok()
        if op.label == label:
            return op
    raise KeyError(label)


def test_the_document_lists_every_operation(api_schema):
    labels = {result.ok().label for result in api_schema.get_all_operations()}
    assert labels >= set(OPERATIONS)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=lambda m: m.value)
@pytest.mark.parametrize("label", OPERATIONS)
def test_no_generated_request_breaks_the_api(api_schema, label, mode):
    op = operation(api_schema, label)

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(op.as_strategy(generation_mode=mode), st.booleans())
    def run(case, realistic: bool) -> None:
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() not in AUTH_HEADERS}
        case.headers = {**headers, "x-api-key": key("acme", "production")}
        if realistic:
            with_real_ids(case)
        response = case.call()
        case.validate_response(response, checks=CHECKS)

    run()


# -- found by the fuzzer, kept as plain tests -------------------------------------------------


@pytest.mark.parametrize("field, value", [
    ("start_time", "0001-01-01T00:00:00+00:01"),  # UTC would be year 0: OverflowError, a 500
    ("end_time", "9999-12-31T23:59:00-00:01"),  # UTC would be year 10000
    ("billing_anchor", "0001-01-01T00:00:00+00:01"),
    ("billing_anchor", "9999-12-31T23:59:00-23:59"),
    ("billing_anchor", "1900-01-15T00:00:00Z"),
])
def test_instants_beyond_the_calendar_are_a_400(tenants_client, field, value):
    body = {"external_customer_id": "cust_shared", "meter_ids": ["mtr_shared"],
            "aggregation_type": "COUNT", "start_time": START, "end_time": END,
            "window_size": "MONTH", field: value}
    response = tenants_client.post("/v1/meter-usage/analytics", json=body,
                                   headers={"x-api-key": key("acme", "production")})
    assert response.status_code == 400, response.text
    assert response.json()["details"]["field"] == field


def test_stripe_values_are_documented_as_numbers(tenants_client):
    """The document said "string" for Stripe's `value` and `aggregated_value`, which are JSON
    numbers on the wire (as Stripe sends them)."""
    document = tenants_client.get("/openapi.json").json()["components"]["schemas"]
    assert document["StripeMeterUsageRow"]["properties"]["value"]["type"] == "number"
    summary = document["StripeMeterEventSummary"]["properties"]["aggregated_value"]
    assert summary["type"] == "number"
