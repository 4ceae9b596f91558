"""GET /v1/meters and GET /v1/meters/{id}: the create-meter response shape, per tenant."""

from __future__ import annotations

import pytest

from tests.api.data import GLOBEX_KEY, acme

pytestmark = pytest.mark.slow


def test_list_meters_of_the_callers_tenant(client):
    response = client.get("/v1/meters", headers=acme())
    assert response.status_code == 200
    body = response.json()
    assert body["pagination"] == {"total": 7, "limit": 50, "offset": 0}
    assert [m["id"] for m in body["items"]] == sorted(m["id"] for m in body["items"])
    assert all(m["tenant_id"] == "acme" for m in body["items"])
    globex = client.get("/v1/meters", headers={"x-api-key": GLOBEX_KEY}).json()
    assert [m["id"] for m in globex["items"]] == ["mtr_calls", "mtr_globex_only"]


def test_pagination(client):
    page = client.get("/v1/meters?limit=2&offset=2", headers=acme()).json()
    everything = client.get("/v1/meters", headers=acme()).json()["items"]
    assert page["items"] == everything[2:4]
    assert client.get("/v1/meters?limit=0", headers=acme()).status_code == 400
    assert client.get("/v1/meters?offset=-1", headers=acme()).status_code == 400


def test_get_meter_in_the_create_meter_response_shape(client):
    response = client.get("/v1/meters/mtr_peak", headers=acme())
    assert response.status_code == 200
    meter = response.json()
    assert set(meter) == {"id", "name", "tenant_id", "event_name", "aggregation", "filters",
                          "reset_usage", "status", "created_at", "updated_at"}
    assert meter["aggregation"] == {"type": "MAX", "field": "gpus", "bucket_size": "HOUR",
                                    "group_by": "region"}
    assert (meter["status"], meter["reset_usage"]) == ("published", "BILLING_PERIOD")
    assert meter["created_at"].endswith("Z")
    calls = client.get("/v1/meters/mtr_calls", headers=acme()).json()
    assert calls["filters"] == [{"key": "method", "values": ["GET", "POST"]}]


@pytest.mark.parametrize("meter_id", ["mtr_nope", "mtr_globex_only"])
def test_unknown_and_other_tenants_meter_are_the_same_404(client, meter_id):
    response = client.get(f"/v1/meters/{meter_id}", headers=acme())
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "message": f"meter {meter_id!r} not found",
                               "http_status_code": 404, "details": {"field": "id"}}
