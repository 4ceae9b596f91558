"""`meterhouse serve` over DuckDB as a real process, called over HTTP with httpx: the same
answers as the reference, concurrent requests, OpenAPI and docs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.api.checks import (
    check_event_summaries,
    check_events_analytics_matches_reference,
    check_meter_usage_matches_reference,
    check_stripe_meter_usage_matches_reference,
)
from tests.api.data import T0, T1, acme, iso
from tests.api.server import running_server

pytestmark = pytest.mark.slow


def test_meterhouse_serve_on_duckdb(duckdb_warehouse, expected):
    with running_server(["--warehouse", duckdb_warehouse.duckdb_path]) as http:
        assert check_meter_usage_matches_reference(http, expected) > 100
        assert check_events_analytics_matches_reference(http, expected) > 50
        assert check_stripe_meter_usage_matches_reference(http, expected) > 20
        assert check_event_summaries(http, expected) > 6
        assert http.get("/v1/meters").status_code == 401
        assert http.get("/openapi.json").json()["info"]["title"] == "Meterhouse read API"
        assert http.get("/docs").status_code == 200

        body = {"external_customer_id": "cust_1", "start_time": iso(T0), "end_time": iso(T1),
                "group_by": ["properties.model"], "window_size": "HOUR"}
        first = http.post("/v1/events/analytics", headers=acme(), json=body).json()
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(
                lambda _: http.post("/v1/events/analytics", headers=acme(), json=body).json(),
                range(24)))
        assert all(answer == first for answer in answers)
