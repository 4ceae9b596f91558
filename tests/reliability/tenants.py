"""Four tenant environments that share ids, for the isolation and fuzzing tests.

`acme` and `globex`, each with `production` and `staging`. Every environment has the same
meter, feature, price, plan, customer and subscription ids (`mtr_shared`, `cus_shared`, ...) plus
ids of its own (`mtr_only_<tenant>_<env>`), and a different number of events for the shared
customer, with a flat price of its own: any answer that mixes environments shows in the numbers.
Each environment has a reader key and a revoked key (`key(...)`); the catalog holds their
sha256 only.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from models import reference as ref
from tests.support.pipeline import Case

TENANTS = ("acme", "globex")
ENVIRONMENTS = ("production", "staging")
SCOPES = [(t, e) for t in TENANTS for e in ENVIRONMENTS]
T0 = datetime(2024, 3, 1, tzinfo=UTC)
T1 = datetime(2024, 3, 3, tzinfo=UTC)
# events of the shared customer per environment (distinct, so a leak changes every count)
SHARED_EVENTS = {("acme", "production"): 3, ("acme", "staging"): 5,
                 ("globex", "production"): 7, ("globex", "staging"): 11}
FLAT_AMOUNT = {("acme", "production"): "1", ("acme", "staging"): "10",
               ("globex", "production"): "100", ("globex", "staging"): "1000"}


def key(tenant: str, env: str, revoked: bool = False) -> str:
    return f"mh_iso_{tenant}_{env}" + ("_revoked" if revoked else "")


def only(kind: str, tenant: str, env: str) -> str:
    """The id of a `kind` (mtr, feat, cus, cust) that exists in one environment only."""
    return f"{kind}_only_{tenant}_{env}"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def catalog(tenant: str, env: str) -> dict:
    return {
        "tenant_id": tenant,
        "environment_id": env,
        "api_keys": [
            {"name": "reader", "key_sha256": sha(key(tenant, env))},
            {"name": "old", "key_sha256": sha(key(tenant, env, revoked=True)), "revoked": True},
        ],
        "meters": [
            {"id": "mtr_shared", "name": f"Calls of {tenant} {env}", "event_name": "api_request",
             "aggregation": {"type": "COUNT"}},
            {"id": "mtr_tokens", "name": "Tokens", "event_name": "api_request",
             "aggregation": {"type": "SUM", "field": "tokens"}},
            {"id": only("mtr", tenant, env), "name": "Own", "event_name": "api_request",
             "aggregation": {"type": "COUNT"}},
        ],
        "features": [
            {"id": "feat_shared", "name": "Calls", "meter_id": "mtr_shared"},
            {"id": "feat_tokens", "name": "Tokens", "meter_id": "mtr_tokens"},
            {"id": only("feat", tenant, env), "name": "Own", "meter_id": only("mtr", tenant, env)},
        ],
        "prices": [
            {"id": "price_shared", "meter_id": "mtr_shared", "type": "USAGE", "currency": "usd",
             "billing_model": "FLAT_FEE", "amount": FLAT_AMOUNT[(tenant, env)],
             "billing_period": "MONTHLY"},
        ],
        "plans": [{"id": "plan_shared", "name": "Plan", "price_ids": ["price_shared"]}],
        "customers": [
            {"id": "cus_shared", "external_id": "cust_shared", "timezone": "UTC"},
            {"id": only("cus", tenant, env), "external_id": only("cust", tenant, env),
             "timezone": "UTC"},
        ],
        "subscriptions": [
            {"id": "sub_shared", "customer_id": "cus_shared", "plan_id": "plan_shared",
             "currency": "usd", "start_date": "2024-01-01T00:00:00Z",
             "billing_period": "MONTHLY", "billing_period_count": 1},
        ],
    }


def events(tenant: str, env: str, first_seq: int) -> list[ref.RefEvent]:
    out = []
    owner = f"{tenant}_{env}"

    def add(customer: str, i: int) -> None:
        out.append(ref.RefEvent(
            tenant, env, f"ev_{i}", "api_request", customer, T0 + timedelta(hours=i, minutes=7),
            {"owner": owner, "tokens": i + 1, "model": "gpt"}, source=f"src_{owner}",
            ingest_seq=first_seq + len(out)))

    for i in range(SHARED_EVENTS[(tenant, env)]):
        add("cust_shared", i)
    for i in range(2):
        add(only("cust", tenant, env), 100 + i)
    return out


CASES = [Case(t, catalog(t, e), events(t, e, 1000 * (n + 1)))
         for n, (t, e) in enumerate(SCOPES)]
