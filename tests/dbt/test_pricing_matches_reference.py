"""The warehouse's priced usage equals the plain-Python pricing reference, on random data.

Hypothesis generates many tenants at once: meters of every aggregation type (bucketed MAX
with groups, WEIGHTED_SUM, NEVER resets), prices of every billing model with random tiers
and packages in usd, eur and jpy, subscriptions with random anchors, ends and every billing
period, commitments (amount or quantity, overage, true-up, windowed), and events around the
billing period boundaries in awkward timezones. One dbt build covers them all (plus a
tenant holding DESIGN's four examples); then every row of fct_priced_usage and
fct_priced_usage_points must equal models.pricing exactly, and every line item's periods
and points must be there.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import pricing, windows
from models import reference as ref
from models.catalog import Catalog, CatalogFile
from orchestration.calendar import write_calendars
from orchestration.catalog_tables import write_catalog
from orchestration.defs.dbt.project import run_dbt
from orchestration.ingest import ensure_raw_tables
from orchestration.subscription_periods import write_subscription_periods
from orchestration.warehouse import Warehouse, WarehouseConfig
from tests.support.pipeline import Case, _events_table, ref_meter

pytestmark = pytest.mark.slow

NOW = datetime(2024, 3, 20, tzinfo=UTC)
FAR_START = datetime(2023, 1, 1, tzinfo=UTC)
FAR_END = datetime(2026, 1, 1, tzinfo=UTC)
TIMEZONES = ["UTC", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu",
             "Europe/Berlin"]
WINDOWS = ["MINUTE", "15MIN", "30MIN", "HOUR", "3HOUR", "6HOUR", "12HOUR", "DAY", "WEEK",
           "MONTH"]
AGGREGATIONS = ["COUNT", "SUM", "SUM_WITH_MULTIPLIER", "AVG", "MAX", "MAX", "LATEST",
                "COUNT_UNIQUE", "WEIGHTED_SUM"]
PERIODS = ["DAILY", "WEEKLY", "MONTHLY", "MONTHLY", "QUARTERLY", "HALF_YEARLY", "ANNUAL"]

amounts = st.sampled_from(["0.01", "1", "0.0125", "2.5", "0.333333333333", "0.0000015", "7"])
values = st.one_of(
    st.integers(-3, 40),
    st.decimals(min_value=-5, max_value=50, places=3, allow_nan=False),
    st.sampled_from(["2.5", "abc", None, "0.0000000000001", "1e1"]),
)


# -- generated catalogs -----------------------------------------------------------------------
@st.composite
def meters(draw, index: int) -> dict:
    kind = draw(st.sampled_from(AGGREGATIONS))
    aggregation: dict = {"type": kind}
    if kind != "COUNT":
        aggregation["field"] = "v"
    if kind == "SUM_WITH_MULTIPLIER" or (kind in ("SUM", "WEIGHTED_SUM") and draw(st.booleans())):
        aggregation["multiplier"] = draw(st.sampled_from(["2", "0.5", "1.25"]))
    if kind == "MAX" and draw(st.booleans()):
        aggregation["bucket_size"] = draw(st.sampled_from(["HOUR", "DAY", "MONTH"]))
        if draw(st.booleans()):
            aggregation["group_by"] = "g"
    return {
        "id": f"m{index}",
        "name": f"meter {index}",
        "event_name": draw(st.sampled_from(["e", "e", "f"])),
        "aggregation": aggregation,
        "reset_usage": draw(st.sampled_from(["BILLING_PERIOD", "BILLING_PERIOD", "NEVER"])),
    }


@st.composite
def price_terms(draw) -> dict:
    model = draw(st.sampled_from(["FLAT_FEE", "PACKAGE", "TIERED", "TIERED"]))
    if model == "FLAT_FEE":
        return {"billing_model": model, "amount": draw(amounts)}
    if model == "PACKAGE":
        return {"billing_model": model, "amount": draw(st.sampled_from(["50", "0.5", "3.33"])),
                "transform_quantity": {"divide_by": draw(st.sampled_from([1, 3, 10])),
                                       "round": draw(st.sampled_from(["up", "down"]))}}
    bounds = sorted(draw(st.sets(st.sampled_from(["1", "2.5", "5", "10", "20", "40"]),
                                 max_size=3)), key=Decimal)
    tiers = []
    for up_to in [*bounds, None]:
        tier = {"up_to": up_to, "unit_amount": draw(st.sampled_from(
            ["0", "0.5", "1", "2", "3", "0.0125"]))}
        flat = draw(st.sampled_from([None, None, "0", "1", "5.55"]))
        if flat is not None:
            tier["flat_amount"] = flat
        tiers.append(tier)
    return {"billing_model": model, "tier_mode": draw(st.sampled_from(["VOLUME", "SLAB"])),
            "tiers": tiers}


@st.composite
def commitments(draw, price_id: str) -> dict:
    commitment = {"price_id": price_id,
                  "overage_factor": draw(st.sampled_from(["1", "1.5", "2"])),
                  "true_up_enabled": draw(st.booleans()),
                  "is_windowed": draw(st.booleans())}
    if draw(st.booleans()):
        commitment |= {"commitment_type": "amount",
                       "amount": draw(st.sampled_from(["1", "10", "12.345"]))}
    else:
        commitment |= {"commitment_type": "quantity",
                       "quantity": draw(st.sampled_from(["3", "10.5"]))}
    return commitment


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


@st.composite
def cases(draw, index: int) -> Case:
    tenant = f"t{index}"
    meter_list = [draw(meters(i)) for i in range(draw(st.integers(1, 3)))]
    currency = draw(st.sampled_from(["usd", "eur", "jpy"]))
    customers, subscriptions, plans, prices = [], [], [], []
    boundaries: list[datetime] = []
    for c in range(draw(st.integers(1, 2))):
        tz = draw(st.sampled_from(TIMEZONES))
        customers.append({"id": f"cus{c}", "external_id": f"c{c}", "timezone": tz})
        # the first customer always subscribes, so even the simplest example prices something
        for s in range(draw(st.integers(1 if c == 0 else 0, 2))):
            sub_id = f"sub{c}_{s}"
            period = draw(st.sampled_from(PERIODS))
            count = draw(st.integers(1, 2))
            start = datetime(2023, 12, 20, tzinfo=UTC) + timedelta(
                minutes=draw(st.integers(0, 60 * 24 * 50)), seconds=draw(st.sampled_from([0, 7])))
            end = None if draw(st.booleans()) else start + timedelta(
                days=draw(st.integers(2, 70)), minutes=draw(st.sampled_from([0, 30])))
            anchor = None if draw(st.booleans()) else start + timedelta(
                days=draw(st.integers(-40, 40)), minutes=draw(st.sampled_from([0, 15, 90])))
            price_ids = []
            for p in range(draw(st.integers(1, 3))):
                price_id = f"price_{sub_id}_{p}"
                price_ids.append(price_id)
                prices.append({
                    "id": price_id, "meter_id": draw(st.sampled_from(meter_list))["id"],
                    "currency": currency, "billing_period": period,
                    "billing_period_count": count, **draw(price_terms()),
                })
            plans.append({"id": f"plan_{sub_id}", "name": "Plan", "price_ids": price_ids})
            subscription = {
                "id": sub_id, "customer_id": f"cus{c}", "plan_id": f"plan_{sub_id}",
                "currency": currency, "start_date": _iso(start),
                "end_date": _iso(end) if end else None,
                "billing_anchor": _iso(anchor) if anchor else None,
                "billing_period": period, "billing_period_count": count,
                "commitments": [draw(commitments(price_id)) for price_id in price_ids
                                if draw(st.integers(0, 2)) == 0],
            }
            subscriptions.append(subscription)
            periods = pricing.subscription_periods(start, end, anchor, tz, period, count, NOW)
            boundaries += [period_start for period_start, _ in periods[:6]]
            if end is not None:
                boundaries.append(end)
    catalog = {
        "tenant_id": tenant, "environment_id": "prod", "meters": meter_list,
        "prices": prices, "plans": plans, "customers": customers,
        "subscriptions": subscriptions,
    }
    spots = boundaries or [datetime(2024, 1, 15, tzinfo=UTC)]
    events: list[ref.RefEvent] = []
    seq = index * 10_000
    for n in range(draw(st.integers(2, 30))):
        seq += 1
        properties = {}
        if draw(st.integers(0, 5)) > 0:
            properties["v"] = draw(values)
        if draw(st.booleans()):
            properties["g"] = draw(st.sampled_from(["g1", "g2"]))
        resend = events and draw(st.integers(0, 8)) == 0
        event_id = draw(st.sampled_from([e.event_id for e in events])) if resend else f"ev{n}"
        events.append(ref.RefEvent(
            tenant_id=tenant, environment_id="prod", event_id=event_id,
            event_name=draw(st.sampled_from(["e", "e", "e", "f"])),
            external_customer_id=draw(st.sampled_from([c["external_id"] for c in customers])),
            timestamp=draw(st.sampled_from(spots)) + timedelta(
                minutes=draw(st.integers(-90, 90)), seconds=draw(st.sampled_from([0, 0, 1, 59])),
                microseconds=draw(st.sampled_from([0, 1, 999_999]))),
            properties=properties,
            ingest_seq=seq,
        ))
    return Case(tenant_id=tenant, catalog=catalog, events=events)


@st.composite
def case_lists(draw) -> list[Case]:
    return [design_examples(), *(draw(cases(i)) for i in range(draw(st.integers(8, 14))))]


def design_examples() -> Case:
    """DESIGN's four examples as a tenant: one customer and subscription per example."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    price_terms_by_example = {
        "slab": {"billing_model": "TIERED", "tier_mode": "SLAB", "tiers": [
            {"up_to": 5, "unit_amount": "0"}, {"up_to": 10, "unit_amount": "2"},
            {"up_to": None, "unit_amount": "3"}]},
        "volume": {"billing_model": "TIERED", "tier_mode": "VOLUME", "tiers": [
            {"up_to": 10, "unit_amount": "50"}, {"up_to": 20, "unit_amount": "40"},
            {"up_to": None, "unit_amount": "30"}]},
        "package": {"billing_model": "PACKAGE", "amount": "50",
                    "transform_quantity": {"divide_by": 10, "round": "up"}},
        "commitment": {"billing_model": "FLAT_FEE", "amount": "1"},
    }
    counts = {"slab": 11, "volume": 15, "package": 25, "commitment": 15}
    catalog: dict = {
        "tenant_id": "examples", "environment_id": "prod",
        "meters": [{"id": "calls", "name": "Calls", "event_name": "call",
                    "aggregation": {"type": "COUNT"}}],
        "prices": [], "plans": [], "customers": [], "subscriptions": [],
    }
    events = []
    for name, terms in price_terms_by_example.items():
        catalog["prices"].append({"id": name, "meter_id": "calls", "currency": "usd",
                                  "billing_period": "MONTHLY", **terms})
        catalog["plans"].append({"id": name, "name": name, "price_ids": [name]})
        catalog["customers"].append({"id": name, "external_id": name})
        subscription = {"id": name, "customer_id": name, "plan_id": name, "currency": "usd",
                        "start_date": _iso(start), "billing_period": "MONTHLY"}
        if name == "commitment":
            subscription["commitments"] = [{
                "price_id": name, "commitment_type": "amount", "amount": "10",
                "overage_factor": "1.5", "true_up_enabled": True}]
        catalog["subscriptions"].append(subscription)
        events += [
            ref.RefEvent("examples", "prod", f"{name}{i}", "call", name,
                         start + timedelta(days=1, minutes=7 * i), {},
                         ingest_seq=1_000_000 + 100 * len(events) + i)
            for i in range(counts[name])
        ]
    return Case(tenant_id="examples", catalog=catalog, events=events)


# -- the warehouse ---------------------------------------------------------------------------------
def build_priced_warehouse(config: WarehouseConfig, all_cases: list[Case]) -> None:
    """Catalog, events, calendars and subscription periods of all cases, then one dbt build."""
    catalog = Catalog(environments=[CatalogFile.model_validate(c.catalog) for c in all_cases])
    with Warehouse(config) as warehouse:
        write_catalog(warehouse, catalog)
        ensure_raw_tables(warehouse)
        with warehouse.transaction():
            warehouse.append_arrow("raw_events", _events_table(all_cases))
        write_calendars(warehouse)
        write_subscription_periods(warehouse, now=NOW)
    run_dbt(["build"], config)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _rows(warehouse: Warehouse, table: str, columns: str, case: Case) -> list[tuple]:
    return warehouse.query(
        f"select {columns} from {warehouse.table(table)} where tenant_id = {warehouse.ph}",
        [case.tenant_id],
    )


def line_items(case: Case, until: datetime):
    """(subscription id, price id, LineItem, customer external id) of every metered item."""
    env = CatalogFile.model_validate(case.catalog)
    meters = {m["id"]: ref_meter(case.tenant_id, "prod", m) for m in case.catalog["meters"]}
    prices = {p.id: p for p in env.prices}
    plans = {p.id: p for p in env.plans}
    customers = {c.id: c for c in env.customers}
    for sub in env.subscriptions:
        customer = customers[sub.customer_id]
        periods = pricing.subscription_periods(
            sub.start_date, sub.end_date, sub.anchor, customer.timezone, sub.billing_period,
            sub.billing_period_count, until)
        commitments = {c.price_id: c for c in sub.commitments}
        for price_id in plans[sub.plan_id].price_ids:
            price = prices[price_id]
            commitment = commitments.get(price_id)
            item = pricing.LineItem(
                meter=meters[price.meter_id],
                price=pricing.PriceTerms.from_price(price),
                periods=periods,
                timezone=customer.timezone,
                month_anchor=case.customer_anchor(customer.external_id),
                commitment=pricing.CommitmentTerms.from_commitment(commitment)
                if commitment else None,
            )
            yield sub.id, price_id, item, customer.external_id


PERIOD_COLUMNS = (
    "subscription_id, price_id, period_index, period_start, period_end, quantity, "
    "opening_quantity, event_count, usage_cost, commitment_amount, commitment_utilized_amount, "
    "overage_amount, true_up_amount, total_cost"
)


def check_periods(warehouse: Warehouse, case: Case, until: datetime) -> int:
    actual = {(r[0], r[1], r[2]): r[3:] for r in _rows(warehouse, "fct_priced_usage",
                                                      PERIOD_COLUMNS, case)}
    latest = ref.deduplicate(case.events)
    expected = {}
    for sub_id, price_id, item, customer in line_items(case, until):
        item_pricing = pricing.LineItemPricing(
            item, [e for e in latest if e.external_customer_id == customer])
        for index, period in enumerate(item.periods):
            c = item_pricing.period_charge(period)
            expected[(sub_id, price_id, index)] = (
                c.period_start, c.period_end, c.quantity, c.opening_quantity, c.event_count,
                c.usage_cost, c.commitment_amount, c.commitment_utilized_amount,
                c.overage_amount, c.true_up_amount, c.total_cost)
    assert set(actual) == set(expected), (case.tenant_id, set(actual) ^ set(expected))
    for key, want in expected.items():
        got = actual[key]
        got = (_utc(got[0]), _utc(got[1]), *got[2:])
        assert got == want, (case.tenant_id, key, got, want, case.catalog)
    return len(expected)


def check_points(warehouse: Warehouse, case: Case, until: datetime) -> int:
    actual = {
        (r[0], r[1], r[2], _utc(r[3])): (_utc(r[4]), r[5])
        for r in _rows(warehouse, "fct_priced_usage_points",
                       "subscription_id, price_id, window_size, window_start, window_end, cost",
                       case)
    }
    latest = ref.deduplicate(case.events)
    expected = {}
    for sub_id, price_id, item, customer in line_items(case, until):
        mine = [e for e in latest if e.external_customer_id == customer]
        item_pricing = pricing.LineItemPricing(item, mine)
        anchor = case.customer_anchor(customer)
        customer_periods = windows.billing_periods(
            anchor, item.timezone, FAR_START, FAR_END) if anchor else None
        for window in WINDOWS:
            usage = ref.usage(item.meter, mine, FAR_START, FAR_END, window, item.timezone,
                              anchor, customer_periods)
            for point in usage.points:
                cost = item_pricing.point_cost(point.start, point.end)
                if cost is not None:
                    expected[(sub_id, price_id, window, point.start)] = (point.end, cost)
    assert set(actual) == set(expected), (case.tenant_id, set(actual) ^ set(expected))
    for key, want in expected.items():
        assert actual[key] == want, (case.tenant_id, key, actual[key], want)
    return len(expected)


def check_design_examples(warehouse: Warehouse) -> None:
    totals = dict(warehouse.query(
        f"select subscription_id, total_cost from {warehouse.table('fct_priced_usage')} "
        f"where tenant_id = 'examples' and period_index = 0"))
    assert totals == {"slab": 13, "volume": 600, "package": 150, "commitment": Decimal("17.5")}


SETTINGS = settings(
    max_examples=2,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture, HealthCheck.large_base_example],
)


def _run(config: WarehouseConfig, all_cases: list[Case]) -> None:
    build_priced_warehouse(config, all_cases)
    last_event = max((e.timestamp for c in all_cases for e in c.events), default=NOW)
    until = max(NOW, last_event)
    periods = points = 0
    with Warehouse(config) as warehouse:
        check_design_examples(warehouse)
        for case in all_cases:
            periods += check_periods(warehouse, case, until)
            points += check_points(warehouse, case, until)
    print(f"compared {periods} priced periods and {points} priced points")
    assert periods > 0 and points > 0


@SETTINGS
@given(all_cases=case_lists())
def test_duckdb_priced_usage_matches_reference(tmp_path_factory, all_cases):
    path = tmp_path_factory.mktemp("pricing") / "warehouse.duckdb"
    _run(WarehouseConfig(target="duckdb", duckdb_path=str(path)), all_cases)


@pytest.mark.postgres
@SETTINGS
@given(all_cases=case_lists())
def test_postgres_priced_usage_matches_reference(pg_server, all_cases):
    with pg_server() as config:
        _run(config, all_cases)
