"""Bad catalogs: every invalid definition is refused with a message naming the field, and the
previous valid catalog stays in force, table for table, through the Dagster `catalog` asset and
through `meterhouse run`.

The named refusals add to tests/models/test_catalog.py (same helpers, same style); the type
confusion test replaces every field of the valid sample, one at a time, with values of the wrong
kind and checks that loading either succeeds or is refused naming that field — never a crash.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from models.catalog import CatalogError, load_catalog_dir
from orchestration.catalog_tables import CATALOG_TABLES
from orchestration.defs.catalog.assets import catalog as catalog_asset
from orchestration.resources import MeterhouseResource
from orchestration.warehouse import Warehouse, WarehouseConfig
from tests.models.test_catalog import (
    AGG,
    COMMITMENT,
    FILE,
    SAMPLE,
    TIERS,
    append_copy,
    assert_problem,
    both,
    drop_at,
    problems_of,
    set_at,
)


@pytest.fixture
def sample() -> dict[str, Any]:
    return yaml.safe_load(SAMPLE.read_text())


MORE_REFUSALS = [
    # -- wrong kinds where a definition expects a scalar, a list or an object
    pytest.param(set_at(["meters", 0, "id"], {"nested": "id"}), "meters[0].id", "string",
                 id="meter-id-object"),
    pytest.param(set_at(["meters", 0, "id"], ["mtr"]), "meters[0].id", "string",
                 id="meter-id-list"),
    pytest.param(set_at(["meters", 0, "aggregation"], "COUNT"), "meters[0].aggregation",
                 "dictionary", id="aggregation-a-string"),
    pytest.param(set_at(["meters", 0, "filters"], {"method": ["GET"]}), "meters[0].filters",
                 "list", id="filters-a-mapping"),
    pytest.param(set_at(["meters", 0, "filters", 0, "values"], "GET"),
                 "meters[0].filters[0].values", "list", id="filter-values-a-string"),
    pytest.param(set_at(["meters", 0, "filters", 0, "values"], [{"a": 1}]),
                 "meters[0].filters[0].values[0]", "", id="filter-value-object"),
    pytest.param(set_at(["meters"], {"mtr": {}}), "meters", "list", id="meters-a-mapping"),
    pytest.param(set_at(["meters", 0], "mtr_api_calls"), "meters[0]", "", id="meter-a-string"),
    # -- numbers that are not numbers
    pytest.param(set_at(AGG + ["multiplier"], float("nan")), "meters[1].aggregation.multiplier",
                 "", id="multiplier-nan"),
    pytest.param(set_at(AGG + ["multiplier"], float("inf")), "meters[1].aggregation.multiplier",
                 "", id="multiplier-infinity"),
    pytest.param(set_at(AGG + ["multiplier"], "1e400"), "meters[1].aggregation.multiplier",
                 "", id="multiplier-1e400"),
    pytest.param(set_at(AGG + ["multiplier"], "two"), "meters[1].aggregation.multiplier",
                 "decimal", id="multiplier-not-a-number"),
    pytest.param(set_at(["prices", 2, "amount"], float("nan")), "prices[2].amount", "",
                 id="amount-nan"),
    pytest.param(set_at(["prices", 2, "amount"], "Infinity"), "prices[2].amount", "",
                 id="amount-infinity"),
    pytest.param(set_at(["prices", 2, "amount"], "1e400"), "prices[2].amount", "",
                 id="amount-1e400"),
    pytest.param(set_at(["prices", 2, "amount"], "1" * 40), "prices[2].amount", "",
                 id="amount-too-many-digits"),
    pytest.param(set_at(["prices", 2, "amount"], "0.0000000000001"), "prices[2].amount",
                 "decimal places", id="amount-beyond-scale"),
    pytest.param(set_at(["prices", 2, "amount"], "ten"), "prices[2].amount", "decimal",
                 id="amount-not-a-number"),
    pytest.param(set_at(["prices", 2, "amount"], True), "prices[2].amount", "",
                 id="amount-boolean"),
    pytest.param(set_at(TIERS + [0, "up_to"], -5), "prices[0].tiers[0].up_to", "",
                 id="tier-up-to-negative"),
    pytest.param(set_at(TIERS + [0, "up_to"], "lots"), "prices[0].tiers[0].up_to", "",
                 id="tier-up-to-text"),
    pytest.param(set_at(TIERS + [1, "unit_amount"], float("nan")),
                 "prices[0].tiers[1].unit_amount", "", id="tier-unit-amount-nan"),
    pytest.param(set_at(["prices", 1, "transform_quantity", "divide_by"], -1000),
                 "prices[1].transform_quantity.divide_by", "", id="divide-by-negative"),
    pytest.param(set_at(["prices", 1, "transform_quantity", "round"], "nearest"),
                 "prices[1].transform_quantity.round", "", id="round-unknown"),
    pytest.param(set_at(["prices", 0, "billing_period_count"], -1),
                 "prices[0].billing_period_count", "", id="billing-period-count-negative"),
    pytest.param(set_at(["prices", 0, "billing_period_count"], 1.5),
                 "prices[0].billing_period_count", "", id="billing-period-count-fraction"),
    pytest.param(set_at(["features", 0, "reporting_unit", "conversion_rate"], -0.5),
                 "features[0].reporting_unit.conversion_rate", "greater than 0",
                 id="conversion-rate-negative"),
    pytest.param(set_at(["features", 0, "reporting_unit", "conversion_rate"], "NaN"),
                 "features[0].reporting_unit.conversion_rate", "",
                 id="conversion-rate-nan"),
    pytest.param(set_at(COMMITMENT + ["amount"], "-100"),
                 "subscriptions[0].commitments[0].amount", "", id="commitment-negative"),
    pytest.param(set_at(COMMITMENT + ["overage_factor"], "NaN"),
                 "subscriptions[0].commitments[0].overage_factor", "",
                 id="overage-factor-nan"),
    # -- unknown enumerations
    pytest.param(set_at(["prices", 0, "billing_model"], "PER_UNIT"), "prices[0].billing_model",
                 "", id="unknown-billing-model"),
    pytest.param(set_at(["prices", 0, "tier_mode"], "GRADUATED"), "prices[0].tier_mode", "",
                 id="unknown-tier-mode"),
    pytest.param(set_at(["prices", 0, "type"], "ONE_OFF"), "prices[0].type", "",
                 id="unknown-price-type"),
    pytest.param(set_at(["meters", 3, "aggregation", "bucket_size"], "FORTNIGHT"),
                 "meters[3].aggregation.bucket_size", "", id="unknown-bucket-size"),
    pytest.param(set_at(COMMITMENT + ["commitment_type"], "percent"),
                 "subscriptions[0].commitments[0].commitment_type", "",
                 id="unknown-commitment-type"),
    pytest.param(set_at(["prices", 0, "currency"], ""), "prices[0].currency", "",
                 id="empty-currency"),
    pytest.param(set_at(["prices", 0, "currency"], "US Dollar"), "prices[0].currency", "",
                 id="currency-a-name"),
    # -- dates and timezones
    pytest.param(set_at(["subscriptions", 0, "start_date"], "yesterday"),
                 "subscriptions[0].start_date", "", id="start-date-text"),
    pytest.param(set_at(["subscriptions", 0, "start_date"], "2024-02-30T00:00:00Z"),
                 "subscriptions[0].start_date", "", id="start-date-impossible"),
    pytest.param(set_at(["subscriptions", 0, "start_date"], 20240101),
                 "subscriptions[0].start_date", "not read as a Unix time", id="start-date-number"),
    pytest.param(set_at(["subscriptions", 0, "start_date"], 1704067200),
                 "subscriptions[0].start_date", "not read as a Unix time", id="start-date-epoch"),
    pytest.param(set_at(["subscriptions", 0, "start_date"], "0001-01-01T00:00:00+00:01"),
                 "subscriptions[0].start_date", "between 1970", id="start-date-year-1"),
    pytest.param(set_at(["subscriptions", 0, "end_date"], "9999-12-31T23:59:59-23:59"),
                 "subscriptions[0].end_date", "between 1970", id="end-date-year-9999"),
    pytest.param(set_at(["subscriptions", 0, "billing_anchor"], "1900-01-15T00:00:00Z"),
                 "subscriptions[0].billing_anchor", "between 1970", id="anchor-1900"),
    pytest.param(set_at(["prices", 0, "billing_period_count"], 10**40),
                 "prices[0].billing_period_count", "less than or equal to 100",
                 id="billing-period-count-huge"),
    pytest.param(set_at(["subscriptions", 0, "billing_period_count"], 1000),
                 "subscriptions[0].billing_period_count", "less than or equal to 100",
                 id="subscription-period-count-huge"),
    pytest.param(set_at(["subscriptions", 0, "billing_anchor"], "2024-01-15T00:00:00"),
                 "subscriptions[0].billing_anchor", "timezone", id="anchor-without-offset"),
    pytest.param(set_at(["subscriptions", 0, "billing_anchor"], "soon"),
                 "subscriptions[0].billing_anchor", "", id="anchor-text"),
    pytest.param(set_at(["customers", 0, "timezone"], "EST5EDT+junk"), "customers[0].timezone",
                 "unknown timezone", id="timezone-junk"),
    pytest.param(set_at(["customers", 0, "timezone"], "localtime"), "customers[0].timezone",
                 "", id="timezone-localtime"),
    pytest.param(set_at(["customers", 0, "timezone"], ""), "customers[0].timezone", "",
                 id="timezone-empty"),
    pytest.param(set_at(["customers", 0, "timezone"], "+05:00"), "customers[0].timezone", "",
                 id="timezone-an-offset"),
    # -- missing and empty identities
    pytest.param(drop_at(["meters", 0, "id"]), "meters[0].id", "required", id="meter-no-id"),
    pytest.param(drop_at(["meters", 0, "event_name"]), "meters[0].event_name", "required",
                 id="meter-no-event-name"),
    pytest.param(drop_at(["meters", 0, "aggregation"]), "meters[0].aggregation", "required",
                 id="meter-no-aggregation"),
    pytest.param(set_at(["features", 0, "id"], ""), "features[0].id", "empty",
                 id="empty-feature-id"),
    pytest.param(drop_at(["features", 0, "meter_id"]), "features[0].meter_id", "",
                 id="feature-no-meter"),
    pytest.param(set_at(["prices", 0, "id"], " "), "prices[0].id", "",
                 id="blank-price-id"),
    pytest.param(set_at(["plans", 0, "id"], ""), "plans[0].id", "empty", id="empty-plan-id"),
    pytest.param(set_at(["customers", 0, "external_id"], ""), "customers[0].external_id",
                 "empty", id="empty-external-id"),
    pytest.param(drop_at(["customers", 0, "external_id"]), "customers[0].external_id",
                 "required", id="customer-no-external-id"),
    pytest.param(set_at(["subscriptions", 0, "id"], ""), "subscriptions[0].id", "empty",
                 id="empty-subscription-id"),
    pytest.param(drop_at(["subscriptions", 0, "customer_id"]), "subscriptions[0].customer_id",
                 "", id="subscription-no-customer"),
    pytest.param(set_at(["tenant_id"], ""), "tenant_id", "", id="empty-tenant"),
    pytest.param(set_at(["tenant_id"], "../etc"), "tenant_id", "", id="tenant-path-traversal"),
    pytest.param(set_at(["environment_id"], "."), "environment_id", "", id="environment-dot"),
    # -- keys
    pytest.param(drop_at(["api_keys", 0, "key_sha256"]), "api_keys[0].key_sha256", "required",
                 id="key-without-hash"),
    pytest.param(set_at(["api_keys", 0, "key_sha256"], "mh_live_acme_production_analytics_reader"),
                 "api_keys[0].key_sha256", "64 lowercase hex", id="plaintext-key"),
    pytest.param(set_at(["api_keys", 0, "key_sha256"], "g" * 64), "api_keys[0].key_sha256",
                 "64 lowercase hex", id="key-hash-not-hex"),
    pytest.param(set_at(["api_keys", 0, "key_sha256"], "a" * 65), "api_keys[0].key_sha256",
                 "64 lowercase hex", id="key-hash-too-long"),
    pytest.param(set_at(["api_keys", 0, "key"], "mh_live_plaintext"), "api_keys[0].key",
                 "unknown field", id="plaintext-key-field"),
    pytest.param(set_at(["api_keys", 0, "revoked"], "sometimes"), "api_keys[0].revoked", "",
                 id="revoked-not-boolean"),
    pytest.param(set_at(["api_keys", 0, "name"], ""), "api_keys[0].name", "",
                 id="key-empty-name"),
    # -- references across sections after a change elsewhere
    pytest.param(both(set_at(["meters", 0, "id"], "mtr_renamed")), "features[0].meter_id",
                 "does not exist", id="renamed-meter-leaves-feature-dangling"),
    pytest.param(append_copy("customers", 0, id="cus_3", external_id="cust_3",
                             parent_customer_id="cus_3"),
                 "customers[2].parent_customer_id", "loops", id="appended-own-parent"),
]  # fmt: skip


@pytest.mark.parametrize(("mutation", "path", "word"), MORE_REFUSALS)
def test_more_refusals_name_the_field(tmp_path: Path, sample, mutation, path, word):
    mutation(sample)
    assert_problem(problems_of(tmp_path, sample), path, word)


# -- type confusion: every field, wrong kinds of value ---------------------------------------

WRONG_VALUES = [
    {"nested": {"a": 1}}, [1, [2]], [], {}, None, "", " ", True, -1, 0, 10**40, 1.5,
    float("nan"), float("inf"), "NaN", "1e400", "x" * 5000, "\u0000", "日本",
]


def leaf_paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in leaf_paths(v, (*prefix, k))]
    if isinstance(node, list) and node:
        return [p for i, v in enumerate(node) for p in leaf_paths(v, (*prefix, i))]
    return [prefix]


def loc_text(path: tuple) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def test_every_field_with_a_wrong_kind_of_value_is_refused_naming_it_or_loads(tmp_path, sample):
    paths = leaf_paths(sample)
    assert len(paths) > 80
    refused = loaded = 0
    for path in paths:
        for value in WRONG_VALUES:
            data = copy.deepcopy(sample)
            set_at(list(path), value)(data)
            folder = tmp_path / f"case{refused + loaded}"
            folder.mkdir()
            (folder / FILE).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
            try:
                load_catalog_dir(folder)
            except CatalogError as exc:
                refused += 1
                named = loc_text(path)
                where = [p.path for p in exc.problems]
                assert all(p.file == FILE and p.message for p in exc.problems)
                # the field itself, its item (a duplicate or a cross-field rule), or a
                # reference to it from another section
                item = loc_text(path[:2]) if len(path) >= 2 else named
                assert any(w.startswith(named) or named.startswith(w) or w.startswith(item)
                           or "_id" in w for w in where), (named, repr(value), where)
            else:
                loaded += 1
            shutil.rmtree(folder)
    assert refused > loaded > 0


# -- the previous catalog stays in force -----------------------------------------------------


def catalog_content(config: WarehouseConfig) -> dict[str, list[tuple]]:
    with Warehouse(config) as warehouse:
        return {t.name: sorted(warehouse.query(f"select * from {warehouse.table(t.name)}"),
                               key=repr) for t in CATALOG_TABLES}


def materialize_catalog(catalog_dir: Path, config: WarehouseConfig) -> dg.ExecuteInProcessResult:
    resource = MeterhouseResource(catalog_dir=str(catalog_dir), landing_dir="",
                                  target="duckdb", duckdb_path=config.duckdb_path)
    return dg.materialize([catalog_asset], resources={"meterhouse": resource},
                          raise_on_error=False)


BREAKAGES = [
    pytest.param(set_at(["prices", 0, "tiers"], []), id="invalid-price"),
    pytest.param(set_at(["meters", 1, "aggregation", "type"], "MEDIAN"), id="invalid-meter"),
    pytest.param(set_at(["api_keys", 0, "key_sha256"], "plaintext"), id="invalid-key"),
    pytest.param(set_at(["subscriptions", 0, "plan_id"], "plan_missing"), id="dangling-plan"),
]


@pytest.mark.parametrize("mutation", BREAKAGES)
def test_the_catalog_asset_keeps_the_previous_catalog(tmp_path, sample, mutation):
    config = WarehouseConfig(target="duckdb", duckdb_path=str(tmp_path / "w.duckdb"))
    folder = tmp_path / "catalog"
    folder.mkdir()
    (folder / FILE).write_text(yaml.safe_dump(sample, sort_keys=False), encoding="utf-8")
    assert materialize_catalog(folder, config).success
    before = catalog_content(config)
    assert before["catalog_meters"] and before["catalog_api_keys"]
    mutation(sample)
    sample["meters"].append({"id": "mtr_new", "name": "New", "event_name": "x",
                             "aggregation": {"type": "COUNT"}})  # a change that must not land
    (folder / FILE).write_text(yaml.safe_dump(sample, sort_keys=False), encoding="utf-8")
    result = materialize_catalog(folder, config)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert FILE in failure.event_specific_data.error.to_string()
    assert catalog_content(config) == before
    # a new valid file next to the broken one does not land either: the folder is one unit
    other = yaml.safe_load(SAMPLE.read_text())
    other["environment_id"] = "staging"
    other["api_keys"][0]["key_sha256"] = "b" * 64
    (folder / "acme_staging.yaml").write_text(yaml.safe_dump(other), encoding="utf-8")
    assert not materialize_catalog(folder, config).success
    assert catalog_content(config) == before


def test_meterhouse_run_with_a_bad_catalog_fails_naming_the_field_and_keeps_tables(
        tmp_path, sample, capsys):
    from orchestration.cli import main

    warehouse = tmp_path / "w.duckdb"
    config = WarehouseConfig(target="duckdb", duckdb_path=str(warehouse))
    folder = tmp_path / "catalog"
    folder.mkdir()
    (folder / FILE).write_text(yaml.safe_dump(sample, sort_keys=False), encoding="utf-8")
    assert materialize_catalog(folder, config).success
    before = catalog_content(config)
    set_at(["prices", 2, "amount"], "-1")(sample)
    (folder / FILE).write_text(yaml.safe_dump(sample, sort_keys=False), encoding="utf-8")
    landing = tmp_path / "landing"
    landing.mkdir()
    code = main(["run", "--catalog", str(folder), "--landing", str(landing),
                 "--warehouse", str(warehouse)])
    out = capsys.readouterr().out
    assert code == 1
    assert "prices[2].amount" in out and "Traceback" not in out
    assert catalog_content(config) == before
