"""Isolation: two tenants with two environments each share ids (tests/reliability/tenants.py).
No key reads another environment's meters, customers, features, usage or costs through any
endpoint or parameter: another environment's id answers exactly like an id that exists nowhere.
Unknown and revoked keys get 401; the warehouse holds key hashes only."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from tests.api.checks import stripe_query
from tests.reliability.tenants import (
    FLAT_AMOUNT,
    SCOPES,
    SHARED_EVENTS,
    T0,
    T1,
    key,
    only,
    sha,
)

pytestmark = pytest.mark.slow

START, END = T0.isoformat().replace("+00:00", "Z"), T1.isoformat().replace("+00:00", "Z")
S0, S1 = int(T0.timestamp()), int(T1.timestamp())
NOWHERE = {"mtr": "mtr_nowhere", "feat": "feat_nowhere", "cus": "cus_nowhere",
           "cust": "cust_nowhere"}


def requests(meter: str, feature: str, customer: str, external: str) -> list[tuple]:
    """(method, url, body) of every endpoint, naming the given ids wherever one can be named."""
    usage = {"external_customer_id": external, "meter_ids": [meter], "aggregation_type": "COUNT",
             "start_time": START, "end_time": END, "window_size": "HOUR"}
    stripe = {"customer": customer, "starts_at": S0, "ends_at": S1,
              "meters": [{"meter": meter}], "value_grouping_window": "hour"}
    return [
        ("POST", "/v1/meter-usage/analytics", usage),
        ("POST", "/v1/events/analytics", {"external_customer_id": external, "start_time": START,
                                          "end_time": END, "feature_ids": [feature],
                                          "expand": ["price", "meter", "feature"]}),
        ("POST", "/v1/events/analytics", {"external_customer_id": external, "start_time": START,
                                          "end_time": END, "group_by": ["properties.owner"]}),
        ("GET", f"/v1/meters/{meter}", None),
        ("GET", f"/v1/billing/analytics/meter_usage?{stripe_query(stripe)}", None),
        ("GET", f"/v1/billing/meters/{meter}/event_summaries?customer={customer}"
                f"&start_time={S0}&end_time={S1}", None),
    ]


def call(client, scope, method, url, body, headers=None):
    return client.request(method, url, json=body,
                          headers={"x-api-key": key(*scope), **(headers or {})})


def masked(response, ids: dict[str, str]) -> tuple[int, str]:
    text = response.text
    for kind, value in sorted(ids.items(), key=lambda item: -len(item[1])):
        text = text.replace(value, f"<{kind}>")
    return response.status_code, text


def total(response) -> Decimal:
    (item,) = response.json()["items"]
    return Decimal(item["total_value"])


@pytest.mark.parametrize("scope", SCOPES, ids=lambda s: "/".join(s))
def test_each_key_sees_exactly_its_own_data(engine_client, scope):
    n = SHARED_EVENTS[scope]
    usage = requests("mtr_shared", "feat_shared", "cus_shared", "cust_shared")
    response = call(engine_client, scope, *usage[0])
    assert response.status_code == 200, response.text
    assert total(response) == n
    response = call(engine_client, scope, "POST", "/v1/events/analytics",
                    {"external_customer_id": "cust_shared", "start_time": START,
                     "end_time": END, "group_by": ["properties.owner", "source"]})
    body = response.json()
    assert {item["properties"]["owner"] for item in body["items"]} == {"_".join(scope)}
    assert {item["source"] for item in body["items"]} == {"src_" + "_".join(scope)}
    calls = next(i for i in body["items"] if i["feature_id"] == "feat_shared")
    assert Decimal(calls["total_usage"]) == n
    assert Decimal(body["total_cost"]) == n * Decimal(FLAT_AMOUNT[scope])
    meters = call(engine_client, scope, "GET", "/v1/meters?limit=1000", None).json()
    assert {m["id"] for m in meters["items"]} == {"mtr_shared", "mtr_tokens",
                                                  only("mtr", *scope)}
    assert {m["tenant_id"] for m in meters["items"]} == {scope[0]}
    stripe = call(engine_client, scope, *usage[4]).json()
    assert sum(Decimal(str(r["value"])) for r in stripe["rows"]["data"]) == n
    summaries = call(engine_client, scope, *usage[5]).json()
    assert sum(Decimal(str(s["aggregated_value"])) for s in summaries["data"]) == n


@pytest.mark.parametrize("scope", SCOPES, ids=lambda s: "/".join(s))
def test_another_environments_ids_are_indistinguishable_from_unknown_ones(engine_client, scope):
    nowhere = [masked(call(engine_client, scope, *r), NOWHERE)
               for r in requests(*NOWHERE.values())]
    assert all(status in (200, 404) for status, _ in nowhere), nowhere
    assert any(status == 404 for status, _ in nowhere)
    for other in SCOPES:
        if other == scope:
            continue
        ids = {kind: only(kind, *other) for kind in NOWHERE}
        theirs = [masked(call(engine_client, scope, *r), ids) for r in requests(*ids.values())]
        assert theirs == nowhere, (scope, other)
        for _, text in theirs:
            assert other[0] + "_" + other[1] not in text


@pytest.mark.parametrize("scope", SCOPES, ids=lambda s: "/".join(s))
def test_no_parameter_or_header_moves_a_key_to_another_scope(engine_client, scope):
    n = SHARED_EVENTS[scope]
    usage = requests("mtr_shared", "feat_shared", "cus_shared", "cust_shared")[0][2]
    for other in SCOPES:
        smuggled = {**usage, "tenant_id": other[0], "environment_id": other[1]}
        headers = {"x-tenant-id": other[0], "x-environment-id": other[1],
                   "x-flexprice-tenant-id": other[0], "environment-id": other[1]}
        response = call(engine_client, scope, "POST", "/v1/meter-usage/analytics", smuggled,
                        headers)
        assert response.status_code == 200 and total(response) == n, response.text
        # filtering on another environment's property values finds nothing
        response = call(engine_client, scope, "POST", "/v1/events/analytics",
                        {"external_customer_id": "cust_shared", "start_time": START,
                         "end_time": END, "property_filters": {"owner": ["_".join(other)]}})
        items = response.json()["items"]
        expected = n if other == scope else 0
        assert sum(Decimal(i["total_usage"]) for i in items
                   if i["feature_id"] == "feat_shared") == expected
        # Stripe refuses tenant parameters outright
        query = stripe_query({"customer": "cus_shared", "starts_at": S0, "ends_at": S1,
                              "tenant_id": other[0], "environment_id": other[1]})
        response = call(engine_client, scope, "GET",
                        f"/v1/billing/analytics/meter_usage?{query}", None)
        assert response.status_code == 400, response.text


@pytest.mark.parametrize("scope", SCOPES, ids=lambda s: "/".join(s))
def test_revoked_unknown_and_lookalike_keys_are_401_everywhere(engine_client, scope):
    good = key(*scope)
    # (HTTP strips blanks around a header value, so " key " is the key itself)
    bad_keys = [key(*scope, revoked=True), good.upper(), good + "\t_", "_" + good, good[:-1],
                good + "x", sha(good), "mh_iso", "", "' or 1=1 --", "%", "*", good + "\x00"]
    for bad in bad_keys:
        for method, url, body in requests("mtr_shared", "feat_shared", "cus_shared",
                                          "cust_shared") + [("GET", "/v1/meters", None)]:
            try:
                response = engine_client.request(method, url, json=body,
                                                  headers={"x-api-key": bad})
            except Exception:  # httpx refuses some header values before sending: fine
                continue
            assert response.status_code == 401, (bad, url, response.text)
            error = response.json()
            assert (error["code"], error["http_status_code"]) == ("permission_denied", 401)
            if bad == key(*scope, revoked=True):
                assert "revoked" in error["message"]


def test_keys_are_stored_only_as_hashes(tenants_warehouse, tmp_path):
    """No text column of any table (catalog, raw, marts, serving) holds a key in plain text,
    and catalog_api_keys holds the sha256 of every key."""
    plaintext = [key(*s, revoked=r) for s in SCOPES for r in (False, True)]
    copy = tmp_path / "copy.duckdb"  # this process may hold the file open already
    shutil.copy(tenants_warehouse.duckdb_path, copy)
    if Path(f"{tenants_warehouse.duckdb_path}.wal").exists():
        shutil.copy(f"{tenants_warehouse.duckdb_path}.wal", f"{copy}.wal")
    with duckdb.connect(str(copy), read_only=True) as db:
        columns = db.execute(
            "select table_name, column_name from information_schema.columns "
            "where data_type = 'VARCHAR' and table_schema = 'main'").fetchall()
        assert len(columns) > 50
        for table, column in columns:
            hits = db.execute(
                f'select count(*) from main."{table}" where '
                + " or ".join(f'contains("{column}", ?)' for _ in plaintext), plaintext,
            ).fetchone()[0]
            assert hits == 0, (table, column)
        stored = db.execute("select tenant_id, environment_id, key_sha256, revoked "
                            "from catalog_api_keys order by all").fetchall()
    assert sorted(stored) == sorted(
        (t, e, sha(key(t, e, revoked=r)), r) for t, e in SCOPES for r in (False, True))
