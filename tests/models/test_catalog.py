"""The catalog format: what loads, what is refused, and how refusals are reported.

Every refusal is checked for the file name, the field path and a key word of the message, by
writing a mutated copy of the valid sample catalog (tests/fixtures/catalog) to a temp folder.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from models.catalog import (
    CatalogError,
    CatalogFile,
    CatalogProblem,
    canonical_decimal_text,
    canonical_filter_value,
    load_catalog_dir,
    load_catalog_file,
    meter_definition_hash,
    parse_yaml,
)
from models.enums import AggregationType, BillingPeriod, WindowSize, window_minutes

SAMPLE = Path(__file__).parents[1] / "fixtures" / "catalog" / "acme_production.yaml"
FILE = "acme_production.yaml"
KEY_HASH = "a" * 64

Mutation = Callable[[dict[str, Any]], None]


@pytest.fixture
def sample() -> dict[str, Any]:
    """The valid sample catalog as plain YAML data, ready to be broken."""
    return yaml.safe_load(SAMPLE.read_text())


def write_catalog_file(folder: Path, data: Any, name: str = FILE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def problems_of(folder: Path, data: Any, name: str = FILE) -> list[CatalogProblem]:
    write_catalog_file(folder, data, name)
    with pytest.raises(CatalogError) as info:
        load_catalog_dir(folder)
    return info.value.problems


def assert_problem(problems: list[CatalogProblem], path: str, word: str, file: str = FILE):
    listing = "\n".join(str(problem) for problem in problems)
    assert any(
        problem.file == file and problem.path == path and word.lower() in problem.message.lower()
        for problem in problems
    ), f"expected {file}: {path}: ...{word}... among:\n{listing}"


def set_at(path: list[Any], value: Any) -> Mutation:
    """A mutation that sets data[path...] = value."""

    def mutate(data: dict[str, Any]) -> None:
        target = data
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return mutate


def drop_at(path: list[Any]) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        target = data
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return mutate


def append_copy(section: str, index: int, **changes: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        item = copy.deepcopy(data[section][index])
        item.update(changes)
        data[section].append(item)

    return mutate


def both(*mutations: Mutation) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        for mutation in mutations:
            mutation(data)

    return mutate


AGG = ["meters", 1, "aggregation"]  # mtr_tokens: SUM of tokens
COUNT_AGG = ["meters", 0, "aggregation"]  # mtr_api_calls: COUNT
TIERS = ["prices", 0, "tiers"]  # price_api: TIERED SLAB
COMMITMENT = ["subscriptions", 0, "commitments", 0]

REFUSALS = [
    # -- meters: aggregation
    pytest.param(set_at(AGG + ["type"], "MEDIAN"), "meters[1].aggregation.type",
                 "unknown aggregation type", id="unknown-aggregation-type"),
    pytest.param(set_at(AGG + ["type"], "UNIQUE_COUNT"), "meters[1].aggregation.type",
                 "did you mean COUNT_UNIQUE", id="unique-count-hint"),
    *[
        pytest.param(set_at(AGG, {"type": kind, "multiplier": "2"}), "meters[1].aggregation.field",
                     f"{kind} needs aggregation.field", id=f"{kind.lower()}-without-field")
        for kind in ("SUM", "AVG", "MAX", "LATEST", "SUM_WITH_MULTIPLIER", "WEIGHTED_SUM")
    ],
    pytest.param(set_at(AGG, {"type": "COUNT_UNIQUE"}), "meters[1].aggregation.field",
                 "COUNT_UNIQUE needs aggregation.field", id="count-unique-without-field"),
    pytest.param(set_at(COUNT_AGG + ["field"], "bytes"), "meters[0].aggregation.field",
                 "COUNT counts events; remove aggregation.field", id="count-with-field"),
    pytest.param(set_at(COUNT_AGG + ["expression"], "bytes * 2"),
                 "meters[0].aggregation.expression", "COUNT counts events",
                 id="count-with-expression"),
    pytest.param(set_at(AGG + ["type"], "SUM_WITH_MULTIPLIER"), "meters[1].aggregation.multiplier",
                 "needs aggregation.multiplier", id="sum-with-multiplier-without-multiplier"),
    pytest.param(set_at(COUNT_AGG + ["multiplier"], "2"), "meters[0].aggregation.multiplier",
                 "no meaning for COUNT", id="multiplier-on-count"),
    pytest.param(set_at(["meters", 2, "aggregation", "multiplier"], "2"),
                 "meters[2].aggregation.multiplier", "no meaning for COUNT_UNIQUE",
                 id="multiplier-on-count-unique"),
    pytest.param(set_at(AGG + ["multiplier"], "0"), "meters[1].aggregation.multiplier",
                 "must not be 0", id="multiplier-zero"),
    pytest.param(set_at(AGG + ["multiplier"], "0.0000000000001"),
                 "meters[1].aggregation.multiplier", "decimal places",
                 id="multiplier-beyond-warehouse-scale"),
    pytest.param(set_at(AGG + ["bucket_size"], "HOUR"), "meters[1].aggregation.bucket_size",
                 "only supported for MAX", id="bucket-size-not-max"),
    pytest.param(drop_at(["meters", 3, "aggregation", "bucket_size"]),
                 "meters[3].aggregation.group_by", "needs aggregation.bucket_size",
                 id="group-by-without-bucket-size"),
    pytest.param(set_at(["meters", 3, "aggregation", "bucket_size"], "WEEK"),
                 "meters[3].aggregation.bucket_size", "'HOUR', 'DAY' or 'MONTH'",
                 id="bucket-size-not-hour-day-month"),
    pytest.param(set_at(AGG, {"type": "SUM", "expression": "tokens * bonus(2)"}),
                 "meters[1].aggregation.expression", "column 10: unknown function bonus()",
                 id="expression-unknown-function"),
    # -- meters: identity and filters
    pytest.param(set_at(["meters", 0, "id"], ""), "meters[0].id", "must not be empty",
                 id="empty-meter-id"),
    pytest.param(set_at(["meters", 0, "name"], "  "), "meters[0].name", "must not be empty",
                 id="blank-meter-name"),
    pytest.param(set_at(["meters", 0, "event_name"], ""), "meters[0].event_name",
                 "must not be empty", id="empty-event-name"),
    pytest.param(set_at(["meters", 0, "id"], " mtr_api_calls"), "meters[0].id", "whitespace",
                 id="padded-meter-id"),
    pytest.param(set_at(["meters", 1, "id"], "mtr_api_calls"), "meters[1].id", "duplicate id",
                 id="duplicate-meter-id"),
    pytest.param(set_at(["meters", 0, "filters", 0, "values"], []), "meters[0].filters[0].values",
                 "at least one value", id="filter-without-values"),
    pytest.param(set_at(["meters", 0, "filters", 1, "key"], "method"),
                 "meters[0].filters[1].key", "duplicate filter key", id="duplicate-filter-key"),
    pytest.param(set_at(["meters", 0, "filters", 1, "values"], [200, 200.0]),
                 "meters[0].filters[1].values[1]", "duplicate value '200'",
                 id="duplicate-filter-value"),
    pytest.param(set_at(["meters", 0, "filters", 0, "values"], [True]),
                 "meters[0].filters[0].values[0]", "boolean", id="boolean-filter-value"),
    pytest.param(set_at(["meters", 0, "filters", 0, "values"], [None]),
                 "meters[0].filters[0].values[0]", "quote", id="null-filter-value"),
    pytest.param(set_at(["meters", 0, "filters", 0, "key"], ""), "meters[0].filters[0].key",
                 "must not be empty", id="empty-filter-key"),
    pytest.param(set_at(["meters", 0, "reset_usage"], "MONTHLY"), "meters[0].reset_usage",
                 "BILLING_PERIOD", id="unknown-reset-usage"),
    pytest.param(set_at(["meters", 0, "aggregaton"], {"type": "SUM"}), "meters[0].aggregaton",
                 "unknown field", id="unknown-meter-field"),
    # -- features
    pytest.param(set_at(["features", 1, "meter_id"], "mtr_missing"), "features[1].meter_id",
                 "meter 'mtr_missing' does not exist", id="feature-missing-meter"),
    pytest.param(set_at(["features", 1, "id"], "feat_api_calls"), "features[1].id",
                 "duplicate id", id="duplicate-feature-id"),
    pytest.param(set_at(["features", 1, "meter_id"], "mtr_api_calls"), "features[1].meter_id",
                 "already has feature", id="two-features-one-meter"),
    pytest.param(set_at(["features", 0, "reporting_unit", "conversion_rate"], 0),
                 "features[0].reporting_unit.conversion_rate", "greater than 0",
                 id="reporting-unit-zero-rate"),
    # -- prices
    pytest.param(set_at(["prices", 1, "meter_id"], "mtr_missing"), "prices[1].meter_id",
                 "does not exist", id="price-missing-meter"),
    pytest.param(drop_at(["prices", 1, "meter_id"]), "prices[1].meter_id", "needs meter_id",
                 id="usage-price-without-meter"),
    pytest.param(set_at(["prices", 2, "amount"], "-1"), "prices[2].amount", "negative",
                 id="negative-amount"),
    pytest.param(set_at(TIERS + [1, "unit_amount"], "-0.01"), "prices[0].tiers[1].unit_amount",
                 "negative", id="negative-unit-amount"),
    pytest.param(set_at(TIERS + [2, "flat_amount"], "-1"), "prices[0].tiers[2].flat_amount",
                 "negative", id="negative-flat-amount"),
    pytest.param(set_at(TIERS + [1, "up_to"], 1000), "prices[0].tiers[1].up_to",
                 "greater than the previous", id="tiers-not-increasing"),
    pytest.param(set_at(TIERS + [0, "up_to"], None), "prices[0].tiers[0].up_to",
                 "only the last tier", id="null-up-to-not-last"),
    pytest.param(set_at(TIERS + [2, "up_to"], 500000), "prices[0].tiers[2].up_to",
                 "last tier must have up_to null", id="last-tier-bounded"),
    pytest.param(set_at(TIERS, []), "prices[0].tiers", "TIERED needs tiers",
                 id="tiered-without-tiers"),
    pytest.param(drop_at(["prices", 0, "tier_mode"]), "prices[0].tier_mode",
                 "TIERED needs tier_mode", id="tiered-without-tier-mode"),
    pytest.param(drop_at(["prices", 1, "transform_quantity"]),
                 "prices[1].transform_quantity.divide_by", "PACKAGE needs divide_by",
                 id="package-without-divide-by"),
    pytest.param(drop_at(["prices", 1, "amount"]), "prices[1].amount", "PACKAGE needs amount",
                 id="package-without-amount"),
    pytest.param(drop_at(["prices", 2, "amount"]), "prices[2].amount", "FLAT_FEE needs amount",
                 id="flat-fee-without-amount"),
    pytest.param(set_at(["prices", 1, "transform_quantity", "divide_by"], 0),
                 "prices[1].transform_quantity.divide_by", "greater than or equal to 1",
                 id="divide-by-zero"),
    pytest.param(set_at(["prices", 2, "tiers"], [{"up_to": None, "unit_amount": "1"}]),
                 "prices[2].tiers", "has no tiers", id="tiers-on-flat-fee"),
    pytest.param(set_at(["prices", 0, "currency"], "usx"), "prices[0].currency",
                 "unknown currency", id="unknown-currency"),
    pytest.param(set_at(["prices", 0, "billing_period"], "YEARLY"), "prices[0].billing_period",
                 "ANNUAL", id="unknown-billing-period"),
    pytest.param(set_at(["prices", 0, "billing_period_count"], 0),
                 "prices[0].billing_period_count", "greater than or equal to 1",
                 id="billing-period-count-zero"),
    pytest.param(set_at(["prices", 1, "id"], "price_api"), "prices[1].id", "duplicate id",
                 id="duplicate-price-id"),
    pytest.param(set_at(["prices", 0, "plan_id"], "plan_missing"), "prices[0].plan_id",
                 "does not exist", id="price-missing-plan"),
    # -- plans
    pytest.param(set_at(["plans", 0, "price_ids", 1], "price_missing"), "plans[0].price_ids[1]",
                 "price 'price_missing' does not exist", id="plan-missing-price"),
    pytest.param(set_at(["plans", 0, "price_ids", 2], "price_api"), "plans[0].price_ids[2]",
                 "listed twice", id="plan-price-twice"),
    pytest.param(append_copy("plans", 0, name="Copy"), "plans[1].id", "duplicate id",
                 id="duplicate-plan-id"),
    # -- customers
    pytest.param(set_at(["customers", 0, "timezone"], "America/Springfield"),
                 "customers[0].timezone", "unknown timezone", id="bad-timezone"),
    pytest.param(set_at(["customers", 1, "id"], "cus_1"), "customers[1].id", "duplicate id",
                 id="duplicate-customer-id"),
    pytest.param(set_at(["customers", 1, "external_id"], "cust_123"),
                 "customers[1].external_id", "duplicate external_id",
                 id="duplicate-external-id"),
    pytest.param(set_at(["customers", 1, "parent_customer_id"], "cus_9"),
                 "customers[1].parent_customer_id", "does not exist", id="missing-parent"),
    pytest.param(set_at(["customers", 0, "parent_customer_id"], "cus_2"),
                 "customers[0].parent_customer_id", "loops", id="parent-cycle"),
    pytest.param(set_at(["customers", 0, "parent_customer_id"], "cus_1"),
                 "customers[0].parent_customer_id", "loops", id="own-parent"),
    # -- subscriptions
    pytest.param(set_at(["subscriptions", 0, "customer_id"], "cus_9"),
                 "subscriptions[0].customer_id", "does not exist", id="sub-missing-customer"),
    pytest.param(set_at(["subscriptions", 0, "plan_id"], "plan_missing"),
                 "subscriptions[0].plan_id", "does not exist", id="sub-missing-plan"),
    pytest.param(set_at(["subscriptions", 0, "currency"], "eur"), "subscriptions[0].currency",
                 "differs from price", id="sub-currency-mismatch"),
    pytest.param(set_at(["subscriptions", 0, "billing_period"], "ANNUAL"),
                 "subscriptions[0].billing_period", "differs from price",
                 id="sub-billing-period-mismatch"),
    pytest.param(set_at(["subscriptions", 0, "end_date"], "2024-01-01T00:00:00Z"),
                 "subscriptions[0].end_date", "after start_date", id="end-not-after-start"),
    pytest.param(set_at(["subscriptions", 0, "start_date"], "2024-01-01T00:00:00"),
                 "subscriptions[0].start_date", "timezone", id="start-without-offset"),
    pytest.param(set_at(COMMITMENT + ["overage_factor"], "0.5"),
                 "subscriptions[0].commitments[0].overage_factor", "greater than or equal to 1",
                 id="overage-factor-below-one"),
    pytest.param(drop_at(COMMITMENT + ["amount"]), "subscriptions[0].commitments[0].amount",
                 "needs amount", id="amount-commitment-without-amount"),
    pytest.param(set_at(COMMITMENT + ["commitment_type"], "quantity"),
                 "subscriptions[0].commitments[0].quantity", "needs quantity",
                 id="quantity-commitment-without-quantity"),
    pytest.param(set_at(COMMITMENT + ["price_id"], "price_elsewhere"),
                 "subscriptions[0].commitments[0].price_id", "not in plan",
                 id="commitment-price-not-in-plan"),
    pytest.param(append_copy("subscriptions", 0), "subscriptions[1].id", "duplicate id",
                 id="duplicate-subscription-id"),
    # -- api keys and the file itself
    pytest.param(set_at(["api_keys", 0, "key_sha256"], "abc123"), "api_keys[0].key_sha256",
                 "64 lowercase hex", id="short-key-hash"),
    pytest.param(set_at(["api_keys", 0, "key_sha256"], "A" * 64), "api_keys[0].key_sha256",
                 "64 lowercase hex", id="uppercase-key-hash"),
    pytest.param(append_copy("api_keys", 0, key_sha256=KEY_HASH), "api_keys[1].name",
                 "duplicate name", id="duplicate-api-key-name"),
    pytest.param(append_copy("api_keys", 0, name="other"), "api_keys[1].key_sha256",
                 "duplicate key_sha256", id="duplicate-api-key-hash"),
    pytest.param(drop_at(["tenant_id"]), "tenant_id", "field required", id="missing-tenant"),
    pytest.param(set_at(["environment_id"], "prod/eu"), "environment_id", "landing folder",
                 id="environment-not-a-folder-name"),
    pytest.param(set_at(["metres"], []), "metres", "unknown field", id="unknown-section"),
]  # fmt: skip


@pytest.mark.parametrize(("mutation", "path", "word"), REFUSALS)
def test_refusal(tmp_path: Path, sample: dict[str, Any], mutation: Mutation, path: str, word: str):
    mutation(sample)
    assert_problem(problems_of(tmp_path / "catalog", sample), path, word)


def test_sample_catalog_loads(catalog_dir: Path):
    catalog = load_catalog_dir(catalog_dir)
    (env,) = catalog.environments
    assert (env.tenant_id, env.environment_id) == ("acme", "production")
    assert catalog.source_file(env) == FILE
    assert [m.aggregation.type for m in env.meters] == [
        AggregationType.COUNT,
        AggregationType.SUM,
        AggregationType.COUNT_UNIQUE,
        AggregationType.MAX,
    ]
    assert env.meters[0].filters[1].values == ["200", "201"]
    assert env.features[0].reporting_unit.conversion_rate == Decimal("0.001")
    assert env.prices[0].tiers[1].unit_amount == Decimal("0.002")
    assert env.prices[2].amount == Decimal("2.50")
    (sub,) = env.subscriptions
    assert sub.billing_anchor == datetime(2024, 1, 15, 5, tzinfo=UTC)
    assert sub.billing_period is BillingPeriod.MONTHLY
    assert sub.commitments[0].overage_factor == Decimal("1.5")
    assert len(catalog.catalog_hash) == 64


def test_load_catalog_file_returns_the_environment():
    env = load_catalog_file(SAMPLE)
    assert isinstance(env, CatalogFile)
    assert env.key == ("acme", "production")


def test_safe_dump_round_trip_keeps_the_catalog(tmp_path: Path, sample: dict[str, Any]):
    write_catalog_file(tmp_path / "catalog", sample)
    assert (
        load_catalog_dir(tmp_path / "catalog").catalog_hash
        == load_catalog_dir(SAMPLE.parent).catalog_hash
    )


@pytest.mark.parametrize(
    ("yaml_value", "expected"),
    [
        ("5", "5"),
        ("5.0", "5"),
        ("1.50", "1.5"),
        ("-0.0", "0"),
        ("1.0e+3", "1000"),
        ("0.000001", "0.000001"),
        ('"5.0"', "5.0"),  # quoted: text, kept as written
        ("no", "no"),  # YAML 1.1 would read a boolean
        ("010", "010"),  # YAML 1.1 would read octal 8
        ("1:30", "1:30"),  # YAML 1.1 would read sexagesimal 90
        ("1e3", "1e3"),  # not a number for YAML 1.1 either
    ],
)
def test_yaml_filter_values_become_canonical_text(tmp_path: Path, yaml_value: str, expected: str):
    text = SAMPLE.read_text().replace("values: [200, 201.0]", f"values: [{yaml_value}]")
    path = tmp_path / FILE
    path.write_text(text)
    assert load_catalog_file(path).meters[0].filters[1].values == [expected]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(5, "5"), (5.0, "5"), (1.50, "1.5"), (Decimal("1E+3"), "1000"), (1e-7, "0.0000001")],
)
def test_canonical_filter_value_of_python_numbers(value: object, expected: str):
    assert canonical_filter_value(value) == expected


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_canonical_decimal_text_is_exact_and_plain(value: Decimal):
    text = canonical_decimal_text(value)
    assert Decimal(text) == value
    assert "e" not in text.lower()
    assert not ("." in text and text.endswith("0"))
    assert not text.endswith(".")


def test_yaml_decimals_are_exact_not_floats():
    data, _ = parse_yaml("a: 0.1\nb: 1.10\nc: 7\n")
    assert data == {"a": Decimal("0.1"), "b": Decimal("1.10"), "c": 7}
    assert isinstance(data["a"], Decimal)


def test_every_problem_is_collected_with_file_path_and_line(tmp_path: Path, sample):
    sample["meters"][0]["aggregation"]["field"] = "bytes"
    sample["prices"][0]["currency"] = "usx"
    sample["features"][1]["meter_id"] = "mtr_missing"
    sample["customers"][0]["timezone"] = "Nowhere/City"
    problems = problems_of(tmp_path / "catalog", sample)
    assert len(problems) == 4
    assert all(problem.line is not None for problem in problems)
    assert [problem.line for problem in problems] == sorted(problem.line for problem in problems)
    error_text = str(CatalogError(problems))
    for problem in problems:
        assert f"{FILE}: {problem.path}: {problem.message}" in error_text


def test_broken_item_does_not_make_its_references_missing(tmp_path: Path, sample):
    sample["meters"][0]["aggregation"]["type"] = "MEDIAN"
    problems = problems_of(tmp_path / "catalog", sample)
    assert [problem.path for problem in problems] == ["meters[0].aggregation.type"]


def test_problem_line_points_at_the_field(tmp_path: Path):
    text = SAMPLE.read_text().replace(
        "aggregation: {type: SUM, field: tokens}", "aggregation: {type: SUM}"
    )
    folder = tmp_path / "catalog"
    folder.mkdir()
    (folder / FILE).write_text(text)
    with pytest.raises(CatalogError) as info:
        load_catalog_dir(folder)
    (problem,) = info.value.problems
    expected_line = text.splitlines().index("    aggregation: {type: SUM}") + 1
    assert problem.line == expected_line
    assert str(problem).endswith(f"(line {expected_line})")


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path):
    folder = tmp_path / "catalog"
    folder.mkdir()
    (folder / "broken.yaml").write_text("tenant_id: acme\nmeters: [\n  {id: a\nplans: x\n")
    with pytest.raises(CatalogError) as info:
        load_catalog_dir(folder)
    (problem,) = info.value.problems
    assert problem.file == "broken.yaml"
    assert problem.path.startswith("line ")
    assert problem.line is not None and problem.line >= 3
    assert "YAML" in problem.message


def test_yaml_duplicate_key_is_refused(tmp_path: Path):
    folder = tmp_path / "catalog"
    folder.mkdir()
    text = SAMPLE.read_text() + "\nmeters: []\n"
    (folder / FILE).write_text(text)
    with pytest.raises(CatalogError) as info:
        load_catalog_dir(folder)
    (problem,) = info.value.problems
    assert "duplicate key 'meters'" in problem.message
    assert problem.line == len(text.splitlines())


@pytest.mark.parametrize(("content", "word"), [("", "empty file"), ("- a\n- b\n", "list")])
def test_file_that_is_not_a_mapping(tmp_path: Path, content: str, word: str):
    folder = tmp_path / "catalog"
    folder.mkdir()
    (folder / FILE).write_text(content)
    with pytest.raises(CatalogError) as info:
        load_catalog_dir(folder)
    assert_problem(info.value.problems, "(file)", word)


def test_same_environment_in_two_files_is_refused(tmp_path: Path, sample):
    folder = tmp_path / "catalog"
    write_catalog_file(folder, sample, "a.yaml")
    sample["api_keys"][0]["key_sha256"] = KEY_HASH
    problems = problems_of(folder, sample, "b.yaml")
    assert_problem(problems, "environment_id", "also defined in a.yaml", file="b.yaml")


def test_same_api_key_in_two_environments_is_refused(tmp_path: Path, sample):
    folder = tmp_path / "catalog"
    write_catalog_file(folder, sample, "a.yaml")
    sample["environment_id"] = "staging"
    problems = problems_of(folder, sample, "b.yaml")
    assert_problem(problems, "api_keys[0].key_sha256", "also used in a.yaml", file="b.yaml")


def test_two_environments_load_in_file_order(tmp_path: Path, sample):
    folder = tmp_path / "catalog"
    write_catalog_file(folder, sample, "b.yml")
    sample["environment_id"] = "staging"
    sample["api_keys"][0]["key_sha256"] = KEY_HASH
    write_catalog_file(folder, sample, "a.yaml")
    (folder / "notes.txt").write_text("not a catalog")
    catalog = load_catalog_dir(folder)
    assert [env.environment_id for env in catalog.environments] == ["staging", "production"]
    assert catalog.source_files == {("acme", "staging"): "a.yaml", ("acme", "production"): "b.yml"}


def test_empty_folder_and_missing_folder_are_refused(tmp_path: Path):
    with pytest.raises(CatalogError, match="no catalog files"):
        load_catalog_dir(tmp_path)
    with pytest.raises(CatalogError, match="not a folder"):
        load_catalog_dir(tmp_path / "missing")


def test_billing_anchor_defaults_to_start_date(tmp_path: Path, sample):
    del sample["subscriptions"][0]["billing_anchor"]
    env = load_catalog_file(write_catalog_file(tmp_path, sample))
    assert env.subscriptions[0].billing_anchor == datetime(2024, 1, 1, tzinfo=UTC)


def test_currency_is_stored_lowercase(tmp_path: Path, sample):
    sample["prices"][0]["currency"] = "USD"
    env = load_catalog_file(write_catalog_file(tmp_path, sample))
    assert env.prices[0].currency == "usd"


def test_catalog_file_model_checks_references_on_its_own(sample):
    sample["features"][0]["meter_id"] = "mtr_missing"
    with pytest.raises(ValueError, match="mtr_missing"):
        CatalogFile.model_validate(yaml.safe_load(yaml.safe_dump(sample)))


def test_catalog_hash_follows_content(tmp_path: Path, sample):
    write_catalog_file(tmp_path / "one", sample)
    sample["prices"][2]["amount"] = "2.60"
    write_catalog_file(tmp_path / "two", sample)
    original = load_catalog_dir(SAMPLE.parent).catalog_hash
    assert load_catalog_dir(SAMPLE.parent).catalog_hash == original
    assert load_catalog_dir(tmp_path / "two").catalog_hash != original


def test_meter_definition_hash_tracks_what_decides_usage(tmp_path: Path, sample):
    base = load_catalog_file(SAMPLE).meters[0]
    renamed = base.model_copy(update={"name": "Renamed", "status": "archived"})
    reordered = base.model_copy(update={"filters": list(reversed(base.filters))})
    sample["meters"][0]["filters"][0]["values"] = ["GET"]
    narrowed = load_catalog_file(write_catalog_file(tmp_path, sample)).meters[0]
    assert meter_definition_hash(renamed) == meter_definition_hash(base)
    assert meter_definition_hash(reordered) == meter_definition_hash(base)
    assert meter_definition_hash(narrowed) != meter_definition_hash(base)


def test_catalog_module_is_pure_domain_code():
    code = (
        "import sys, models.catalog; "
        "print(sorted(m for m in ('dagster', 'fastapi', 'duckdb', 'psycopg2') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert out.stdout.strip() == "[]"


def test_window_minutes_covers_sub_day_windows_only():
    assert [window_minutes(w) for w in WindowSize] == [1, 15, 30, 60, 180, 360, 720, None, None,
                                                         None]  # fmt: skip
    assert WindowSize("15MIN") is WindowSize.MIN15
    assert window_minutes("3HOUR") == 180
