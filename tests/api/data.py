"""The read API tests' data: two tenants' catalogs and events, and the expected answers.

Two tenants share the warehouse: `acme` (every aggregation type, features with and without
reporting units, a parent customer with a child, a subscription anchored on the 15th whose
plan prices four features (SLAB, PACKAGE, VOLUME on a bucketed meter, FLAT_FEE on
WEIGHTED_SUM) with amount, quantity and windowed commitments, events
with sources and properties across New York's spring-forward) and `globex`, whose meter and
customer ids partly coincide with acme's so that any leak across tenants would show.
Events are deterministic; `tests.support.pipeline` builds the warehouse and the reference
(`models.reference`) gives the expected numbers.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from models import pricing
from models import reference as ref
from models.catalog import Catalog, CatalogFile
from orchestration.calendar import write_calendars
from orchestration.catalog_tables import write_catalog
from orchestration.defs.dbt.project import run_dbt
from orchestration.ingest import ensure_raw_tables
from orchestration.subscription_periods import write_subscription_periods
from orchestration.warehouse import Warehouse, WarehouseConfig
from tests.support.pipeline import Case, _events_table, ref_meter

ACME_KEY = "mh_test_acme_reader"
ACME_REVOKED_KEY = "mh_test_acme_revoked"
GLOBEX_KEY = "mh_test_globex_reader"
T0 = datetime(2024, 3, 8, 0, 0, tzinfo=UTC)
T1 = datetime(2024, 3, 13, 0, 0, tzinfo=UTC)
# cust_1's billing periods (anchor Jan 15 00:00 New York): this one ends on Mar 15 04:00Z
PERIOD_START = datetime(2024, 2, 15, 5, 0, tzinfo=UTC)
PERIOD_END = datetime(2024, 3, 15, 4, 0, tzinfo=UTC)
# "now" of the test warehouse's subscription periods
PERIODS_UNTIL = datetime(2024, 6, 1, tzinfo=UTC)
MODELS = ["gpt-4", "gpt-4o", 5, 5.0, "o1"]
REGIONS = ["us", "eu", None]
SOURCES = ["web", "batch", None]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


ACME_CATALOG = {
    "tenant_id": "acme",
    "environment_id": "production",
    "api_keys": [
        {"name": "reader", "key_sha256": sha(ACME_KEY)},
        {"name": "old", "key_sha256": sha(ACME_REVOKED_KEY), "revoked": True},
    ],
    "meters": [
        {"id": "mtr_calls", "name": "API calls", "event_name": "api_request",
         "aggregation": {"type": "COUNT"},
         "filters": [{"key": "method", "values": ["GET", "POST"]}]},
        {"id": "mtr_tokens", "name": "Tokens", "event_name": "llm",
         "aggregation": {"type": "SUM", "field": "tokens"}, "reset_usage": "NEVER"},
        {"id": "mtr_latency", "name": "Latency", "event_name": "api_request",
         "aggregation": {"type": "AVG", "field": "ms"}},
        {"id": "mtr_peak", "name": "Peak GPUs", "event_name": "gpu",
         "aggregation": {"type": "MAX", "field": "gpus", "bucket_size": "HOUR",
                         "group_by": "region"}},
        {"id": "mtr_users", "name": "Users", "event_name": "api_request",
         "aggregation": {"type": "COUNT_UNIQUE", "field": "user_id"}},
        {"id": "mtr_level", "name": "Level", "event_name": "storage",
         "aggregation": {"type": "LATEST", "field": "level"}},
        {"id": "mtr_storage", "name": "Storage", "event_name": "storage",
         "aggregation": {"type": "WEIGHTED_SUM", "field": "delta"}},
    ],
    "features": [
        {"id": "feat_calls", "name": "API calls", "meter_id": "mtr_calls",
         "unit_singular": "call", "unit_plural": "calls",
         "reporting_unit": {"unit_singular": "k-call", "unit_plural": "k-calls",
                            "conversion_rate": "0.001"}},
        {"id": "feat_tokens", "name": "Tokens", "meter_id": "mtr_tokens",
         "unit_singular": "token", "unit_plural": "tokens"},
        {"id": "feat_peak", "name": "GPU peak", "meter_id": "mtr_peak"},
        {"id": "feat_storage", "name": "Storage", "meter_id": "mtr_storage"},
    ],
    "prices": [
        {"id": "price_calls", "meter_id": "mtr_calls", "type": "USAGE", "currency": "usd",
         "billing_model": "TIERED", "tier_mode": "SLAB", "billing_period": "MONTHLY",
         "tiers": [{"up_to": 40, "unit_amount": "0"},
                   {"up_to": 120, "unit_amount": "0.013", "flat_amount": "1"},
                   {"up_to": None, "unit_amount": "0.0125"}]},
        {"id": "price_tokens", "meter_id": "mtr_tokens", "type": "USAGE", "currency": "usd",
         "billing_model": "PACKAGE", "amount": "3.33", "billing_period": "MONTHLY",
         "transform_quantity": {"divide_by": 1000, "round": "up"}},
        {"id": "price_peak", "meter_id": "mtr_peak", "type": "USAGE", "currency": "usd",
         "billing_model": "TIERED", "tier_mode": "VOLUME", "billing_period": "MONTHLY",
         "tiers": [{"up_to": 4, "unit_amount": "0.5"},
                   {"up_to": None, "unit_amount": "0.25", "flat_amount": "1"}]},
        {"id": "price_storage", "meter_id": "mtr_storage", "type": "USAGE", "currency": "usd",
         "billing_model": "FLAT_FEE", "amount": "0.0123", "billing_period": "MONTHLY"},
    ],
    "plans": [{"id": "plan_pro", "name": "Pro", "price_ids": [
        "price_calls", "price_tokens", "price_peak", "price_storage"]}],
    "customers": [
        {"id": "cus_1", "external_id": "cust_1", "name": "Parent",
         "timezone": "America/New_York"},
        {"id": "cus_2", "external_id": "cust_2", "timezone": "Europe/Berlin",
         "parent_customer_id": "cus_1"},
        {"id": "cus_3", "external_id": "cust_3", "timezone": "UTC"},
    ],
    "subscriptions": [
        {"id": "sub_1", "customer_id": "cus_1", "plan_id": "plan_pro", "currency": "usd",
         "start_date": "2024-01-01T00:00:00Z", "billing_anchor": "2024-01-15T05:00:00Z",
         "billing_period": "MONTHLY", "billing_period_count": 1,
         "commitments": [
             {"price_id": "price_calls", "commitment_type": "amount", "amount": "2.5",
              "overage_factor": "1.5", "true_up_enabled": True},
             {"price_id": "price_storage", "commitment_type": "quantity", "quantity": "500",
              "overage_factor": "1", "true_up_enabled": True},
             {"price_id": "price_peak", "commitment_type": "amount", "amount": "3",
              "overage_factor": "2", "true_up_enabled": False, "is_windowed": True},
         ]},
    ],
}

GLOBEX_CATALOG = {
    "tenant_id": "globex",
    "environment_id": "production",
    "api_keys": [{"name": "reader", "key_sha256": sha(GLOBEX_KEY)}],
    "meters": [
        {"id": "mtr_calls", "name": "Globex calls", "event_name": "api_request",
         "aggregation": {"type": "COUNT"}},
        {"id": "mtr_globex_only", "name": "Globex only", "event_name": "api_request",
         "aggregation": {"type": "COUNT"}},
    ],
    "customers": [
        {"id": "cus_1", "external_id": "cust_1", "timezone": "UTC"},
        {"id": "cus_g", "external_id": "cust_g", "timezone": "UTC"},
    ],
}


def _acme_events() -> list[ref.RefEvent]:
    rng = random.Random(20240310)
    events: list[ref.RefEvent] = []
    seq = 0

    def add(name: str, customer: str, at: datetime, properties: dict, source=None) -> None:
        nonlocal seq
        seq += 1
        events.append(ref.RefEvent("acme", "production", f"ev{seq:04d}", name, customer, at,
                                   properties, source=source, ingest_seq=seq))

    span = int((T1 - T0).total_seconds())
    for _ in range(260):
        at = T0 + timedelta(seconds=rng.randrange(span), microseconds=rng.choice([0, 1, 7]))
        customer = rng.choice(["cust_1", "cust_1", "cust_1", "cust_2"])
        source = rng.choice(SOURCES)
        props = {"method": rng.choice(["GET", "POST", "PUT"]), "ms": rng.randrange(1, 900),
                 "user_id": rng.choice([1, "1", 2, 3, "u4"]), "model": rng.choice(MODELS)}
        region = rng.choice(REGIONS)
        if region:
            props["region"] = region
        add("api_request", customer, at, props, source)
    for _ in range(120):
        at = T0 + timedelta(seconds=rng.randrange(span))
        props = {"tokens": rng.choice([rng.randrange(0, 5000), str(rng.randrange(0, 99)),
                                       "n/a"]), "model": rng.choice(MODELS)}
        add("llm", rng.choice(["cust_1", "cust_2"]), at, props, rng.choice(SOURCES))
    for _ in range(80):
        at = T0 + timedelta(seconds=rng.randrange(span))
        props = {"gpus": rng.randrange(0, 16), "region": rng.choice(["us", "eu"])}
        add("gpu", rng.choice(["cust_1", "cust_2"]), at, props, "batch")
    for _ in range(60):
        at = T0 + timedelta(seconds=rng.randrange(span))
        props = {"delta": rng.choice([5, -2, "1.5", 10]), "level": rng.randrange(0, 100),
                 "model": rng.choice(MODELS)}
        add("storage", rng.choice(["cust_1", "cust_2"]), at, props, rng.choice(SOURCES))
    # a correction: the same id sent again with other properties (the latest version counts)
    first = events[0]
    add("api_request", first.external_customer_id, first.timestamp,
        {**first.properties, "method": "GET", "model": "gpt-4"}, "web")
    events[-1] = ref.RefEvent(**{**events[-1].__dict__, "event_id": first.event_id})
    # a few events after T1, across cust_1's billing period boundary (Mar 15 04:00Z)
    for hour in range(-30, 60, 6):
        at = PERIOD_END + timedelta(hours=hour, minutes=17)
        add("api_request", "cust_1", at, {"method": "GET", "ms": 10, "user_id": hour,
                                          "model": "o1"}, "web")
        add("llm", "cust_1", at, {"tokens": 700 + hour, "model": "o1"}, "web")
        add("storage", "cust_1", at, {"delta": 3, "level": hour, "model": "o1"}, "web")
        add("gpu", "cust_1", at, {"gpus": 3 + hour % 5, "region": "us"}, "batch")
    return events


def _globex_events() -> list[ref.RefEvent]:
    return [
        ref.RefEvent("globex", "production", f"g{i}", "api_request", "cust_1",
                     T0 + timedelta(hours=i), {"method": "GET", "model": "gpt-4"},
                     source="web", ingest_seq=100_000 + i)
        for i in range(30)
    ]


# What the API reads, and only that: models other sessions are building meanwhile (pricing)
# stay out of these tests' way.
API_MODELS = ("+serving_meter_event_values +fct_meter_usage +fct_meter_usage_minutely "
              "+fct_meter_distinct_values_minutely")


def build_api_warehouse(config: WarehouseConfig, cases: list[Case]) -> None:
    """Catalog, events and calendars of `cases`, then a dbt build of what the API reads."""
    catalog = Catalog(environments=[CatalogFile.model_validate(c.catalog) for c in cases])
    with Warehouse(config) as warehouse:
        write_catalog(warehouse, catalog)
        ensure_raw_tables(warehouse)
        with warehouse.transaction():
            warehouse.append_arrow("raw_events", _events_table(cases))
        write_calendars(warehouse)
        write_subscription_periods(warehouse, now=PERIODS_UNTIL)
    run_dbt(["build", "--select", API_MODELS], config)


ACME = Case("acme", ACME_CATALOG, _acme_events())
GLOBEX = Case("globex", GLOBEX_CATALOG, _globex_events())
CASES = [ACME, GLOBEX]


@dataclass(frozen=True)
class Expected:
    """The reference's answers for the acme tenant."""

    case: Case

    def meter(self, meter_id: str) -> ref.RefMeter:
        for meter in self.case.catalog["meters"]:
            if meter["id"] == meter_id:
                return ref_meter(self.case.tenant_id, self.case.environment_id, meter)
        raise KeyError(meter_id)

    def events(self, customers: list[str], where=None) -> list[ref.RefEvent]:
        latest = ref.deduplicate(self.case.events)
        return [e for e in latest if e.external_customer_id in customers
                and (where is None or where(e))]

    def periods(self, customer: str):
        from models import windows

        return windows.billing_periods(self.case.customer_anchor(customer),
                                       self.case.customer_timezone(customer),
                                       datetime(2022, 1, 1, tzinfo=UTC),
                                       datetime(2026, 1, 1, tzinfo=UTC))

    def usage(self, meter_id: str, customer: str, start: datetime, end: datetime,
              window: str | None, tz: str | None = None, anchor: datetime | None = None,
              aggregation_type: str | None = None, where=None) -> ref.UsageResult:
        meter = self.meter(meter_id)
        if aggregation_type:
            meter = ref.RefMeter(**{**meter.__dict__, "aggregation_type": aggregation_type})
        tz = tz or self.case.customer_timezone(customer)
        bucket_anchor = anchor
        if meter.bucket_size == "MONTH":
            bucket_anchor = self.case.customer_anchor(customer)
        return ref.usage(meter, self.events([customer], where), start, end, window, tz,
                         bucket_anchor, self.periods(customer),
                         bucket_tz=self.case.customer_timezone(customer))


    # -- prices (models.pricing) ----------------------------------------------------------
    def line_item(self, price_id: str, customer: str = "cust_1") -> pricing.LineItem:
        """The line item pricing `price_id` in `customer`'s subscription."""
        env = CatalogFile.model_validate(self.case.catalog)
        price = next(p for p in env.prices if p.id == price_id)
        plans = {p.id: p for p in env.plans}
        customers = {c.id: c for c in env.customers}
        sub = next(s for s in env.subscriptions
                   if customers[s.customer_id].external_id == customer
                   and price_id in plans[s.plan_id].price_ids)
        timezone = customers[sub.customer_id].timezone
        commitment = next((c for c in sub.commitments if c.price_id == price_id), None)
        return pricing.LineItem(
            meter=self.meter(price.meter_id),
            price=pricing.PriceTerms.from_price(price),
            periods=pricing.subscription_periods(
                sub.start_date, sub.end_date, sub.anchor, timezone, sub.billing_period,
                sub.billing_period_count, PERIODS_UNTIL),
            timezone=timezone,
            month_anchor=self.case.customer_anchor(customer),
            commitment=(pricing.CommitmentTerms.from_commitment(commitment)
                        if commitment else None),
        )

    def priced_item(self, price_id: str, customers: list[str], where=None,
                subscriber: str = "cust_1") -> pricing.LineItemPricing:
        """The reference pricing of `subscriber`'s line item on `customers`' events."""
        return pricing.LineItemPricing(self.line_item(price_id, subscriber),
                                       self.events(customers, where))

    def cost(self, price_id: str, customers: list[str], start: datetime, end: datetime,
             where=None) -> Decimal:
        """The cost of [start, end) (DESIGN 3b.8): the rounded cumulative differences in each
        billing period, plus the true-up of every period ending in (start, end]."""
        priced = self.priced_item(price_id, customers, where)
        total = priced.point_cost(start, end) or Decimal(0)
        currency = priced.item.price.currency
        for period in priced.item.periods:
            if start < period[1] <= end:
                charged = pricing.round_money(priced.charged_cost(period, period[1]), currency)
                total += priced.period_charge(period).total_cost - charged
        return total

    def point_cost(self, price_id: str, customers: list[str], start: datetime,
                   end: datetime, where=None) -> Decimal:
        return self.priced_item(price_id, customers, where).point_cost(start, end) or Decimal(0)


def acme(headers: dict | None = None) -> dict:
    return {"x-api-key": ACME_KEY, **(headers or {})}


def bearer(key: str = ACME_KEY) -> dict:
    return {"Authorization": f"Bearer {key}"}


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def dec(text: str) -> Decimal:
    return Decimal(text)


def close(kind: str, actual: Decimal, expected_value: Decimal) -> bool:
    """Exact, except AVG and WEIGHTED_SUM divisions (34 digits against the reference's)."""
    if kind in ("AVG", "WEIGHTED_SUM"):
        return abs(actual - expected_value) <= Decimal("1e-20") * max(Decimal(1),
                                                                      abs(expected_value))
    return actual == expected_value


def snapshot_dir(config: WarehouseConfig) -> Path:
    return Path(f"{Path(config.duckdb_path).resolve()}.serving")
