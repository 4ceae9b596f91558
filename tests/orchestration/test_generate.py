"""The synthetic data generator: deterministic, counts that add up, a catalog in the DESIGN 2b
shape covering every aggregation type, and landing files with the promised untidiness.

The landing files are read back here with plain Python (json, csv, pyarrow), independently of
the ingest code, and classified with the rules of DESIGN 3b.10.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow.parquet as pq
import pytest
import yaml

from orchestration.generate import DEFAULT_START, GeneratedDataset, generate_dataset

EVENTS = 5_000
AGGREGATION_TYPES = {
    "COUNT",
    "SUM",
    "AVG",
    "COUNT_UNIQUE",
    "LATEST",
    "SUM_WITH_MULTIPLIER",
    "MAX",
    "WEIGHTED_SUM",
}
TIMEZONES = {
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/Los_Angeles",
}
CATALOG_SECTIONS = [
    "tenant_id",
    "environment_id",
    "api_keys",
    "meters",
    "features",
    "prices",
    "plans",
    "customers",
    "subscriptions",
]
OFFSET = re.compile(r"(Z|[+-]\d\d:\d\d)$")
PATH = re.compile(
    r"^[a-z]+/(production|sandbox)/\d{4}/\d{2}/\d{2}/events-\d{3}\.(parquet|jsonl|csv)$"
)


@dataclass
class Row:
    """One line or row of a landing file, in ingestion order (sorted path, then line)."""

    tenant_id: str
    environment_id: str
    path: str  # relative to the landing folder
    line: int
    event: dict[str, Any] | None  # None when the line must be rejected
    reject_reason: str | None

    @property
    def env_key(self) -> tuple[str, str]:
        return (self.tenant_id, self.environment_id)


def classify(obj: Any) -> tuple[dict[str, Any] | None, str | None]:
    """A parsed line as an event, or the reason ingest must reject it (DESIGN 3b.10)."""
    if not isinstance(obj, dict):
        return None, "not a JSON object"
    for key in ("event_id", "event_name", "external_customer_id", "timestamp"):
        if not obj.get(key):
            return None, f"missing {key}"
    if not OFFSET.search(obj["timestamp"]):
        return None, "timestamp without offset"
    properties = obj.get("properties")
    if properties is None:
        properties = {}
    elif isinstance(properties, str):
        properties = json.loads(properties)
    if not isinstance(properties, dict):
        return None, "properties is not an object"
    event = dict(obj, properties=properties)
    event["instant"] = datetime.fromisoformat(obj["timestamp"]).astimezone(UTC)
    return event, None


def read_landing(dataset: GeneratedDataset) -> list[Row]:
    rows: list[Row] = []
    for path in sorted(dataset.files, key=lambda p: p.relative_to(dataset.landing_dir).as_posix()):
        relative = path.relative_to(dataset.landing_dir).as_posix()
        tenant_id, environment_id = relative.split("/")[:2]
        records: list[tuple[dict[str, Any] | None, str | None]] = []
        if path.suffix == ".parquet":
            records = [classify(r) for r in pq.read_table(path).to_pylist()]
        elif path.suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                assert reader.fieldnames == [
                    "event_id",
                    "event_name",
                    "external_customer_id",
                    "source",
                    "timestamp",
                    "properties",
                ]
                records = [
                    classify({k: (v if v != "" else None) for k, v in r.items()}) for r in reader
                ]
        else:
            for text in path.read_text(encoding="utf-8").splitlines():
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError:
                    records.append((None, "bad JSON"))
                    continue
                records.append(classify(obj))
        for number, (event, reason) in enumerate(records, start=1):
            rows.append(Row(tenant_id, environment_id, relative, number, event, reason))
    return rows


def load_catalogs(dataset: GeneratedDataset) -> dict[tuple[str, str], dict[str, Any]]:
    catalogs = {}
    for path in sorted(dataset.catalog_dir.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert path.name == f"{doc['tenant_id']}_{doc['environment_id']}.yaml"
        catalogs[(doc["tenant_id"], doc["environment_id"])] = doc
    return catalogs


def file_bytes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> GeneratedDataset:
    return generate_dataset(tmp_path_factory.mktemp("generated"), events=EVENTS)


@pytest.fixture(scope="module")
def rows(dataset: GeneratedDataset) -> list[Row]:
    return read_landing(dataset)


@pytest.fixture(scope="module")
def catalogs(dataset: GeneratedDataset) -> dict[tuple[str, str], dict[str, Any]]:
    return load_catalogs(dataset)


def partition_day(relative_path: str) -> datetime:
    """The UTC day of a landing path `<tenant>/<env>/YYYY/MM/DD/<file>`."""
    day = datetime.strptime("/".join(relative_path.split("/")[2:5]), "%Y/%m/%d")
    return day.replace(tzinfo=UTC)


def first_occurrences(rows: list[Row]) -> dict[tuple[str, str, str], Row]:
    first: dict[tuple[str, str, str], Row] = {}
    for row in rows:
        if row.event is not None:
            first.setdefault((*row.env_key, row.event["event_id"]), row)
    return first


# -- determinism ---------------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_files(dataset: GeneratedDataset, tmp_path: Path) -> None:
    again = generate_dataset(tmp_path / "again", events=EVENTS)
    first, second = file_bytes(dataset.catalog_dir.parent), file_bytes(tmp_path / "again")
    assert first == second
    assert again.files == sorted(again.files)
    assert len(first) == len(dataset.files) + len(dataset.api_keys) + 1  # + api_keys.txt


def test_another_seed_gives_other_events(tmp_path: Path) -> None:
    seven = generate_dataset(tmp_path / "seven", events=300, days=2, seed=7)
    eight = generate_dataset(tmp_path / "eight", events=300, days=2, seed=8)
    assert file_bytes(seven.landing_dir) != file_bytes(eight.landing_dir)
    assert seven.events_written == eight.events_written == 300


# -- counts --------------------------------------------------------------------------------------


def test_rows_are_events_plus_resends_plus_malformed_lines(
    dataset: GeneratedDataset, rows: list[Row]
) -> None:
    assert dataset.events_written == EVENTS
    assert dataset.duplicates_written == round(EVENTS * 0.01)
    assert 0 < dataset.corrections_written < dataset.duplicates_written
    assert len(rows) == dataset.rows_written
    assert dataset.rows_written == (
        dataset.events_written + dataset.duplicates_written + dataset.malformed_written
    )
    valid = [r for r in rows if r.event is not None]
    assert len(rows) - len(valid) == dataset.malformed_written
    assert len(first_occurrences(rows)) == dataset.events_written
    assert len(valid) - dataset.events_written == dataset.duplicates_written
    by_extension = Counter(r.path.rsplit(".", 1)[1] for r in rows)
    assert dict(by_extension) == dataset.rows_by_format


def test_resends_follow_their_original_and_some_are_corrections(
    dataset: GeneratedDataset, rows: list[Row]
) -> None:
    versions: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    for row in rows:
        if row.event is not None:
            versions[(*row.env_key, row.event["event_id"])].append(row)
    corrections = 0
    next_day = 0
    for key, found in versions.items():
        original, *resends = found
        for resend in resends:
            assert resend.path.rsplit(".", 1)[1] == original.path.rsplit(".", 1)[1], key
            day_gap = (partition_day(resend.path) - partition_day(original.path)).days
            assert day_gap in (0, 1), key
            next_day += day_gap
            same = {k: v for k, v in resend.event.items() if k not in ("timestamp", "properties")}
            assert same == {
                k: v for k, v in original.event.items() if k not in ("timestamp", "properties")
            }, key
            corrections += resend.event["properties"] != original.event["properties"]
    assert corrections == dataset.corrections_written
    assert next_day > 0


# -- catalog -------------------------------------------------------------------------------------


def test_catalog_files_have_the_design_2b_shape(
    dataset: GeneratedDataset, catalogs: dict[tuple[str, str], dict[str, Any]]
) -> None:
    assert set(catalogs) == {
        ("acme", "production"),
        ("acme", "sandbox"),
        ("globex", "production"),
        ("initech", "production"),
    }
    for key, doc in catalogs.items():
        assert list(doc) == CATALOG_SECTIONS, key
        assert doc["api_keys"] == [
            {
                "name": "analytics-reader",
                "key_sha256": hashlib.sha256(dataset.api_keys[key].encode()).hexdigest(),
            }
        ]
        meter_ids = {m["id"] for m in doc["meters"]}
        price_ids = {p["id"] for p in doc["prices"]}
        for meter in doc["meters"]:
            assert set(meter) == {
                "id",
                "name",
                "event_name",
                "aggregation",
                "filters",
                "reset_usage",
            }
            assert meter["reset_usage"] in ("BILLING_PERIOD", "NEVER")
            assert "expression" not in meter["aggregation"]
            for meter_filter in meter["filters"]:
                assert set(meter_filter) == {"key", "values"}
                assert all(isinstance(v, str) for v in meter_filter["values"])
        for feature in doc["features"]:
            assert feature["meter_id"] in meter_ids
        for price in doc["prices"]:
            assert price["meter_id"] in meter_ids
            assert price["currency"] == ("eur" if key[0] == "globex" else "usd")
            assert price["amount"] is None or isinstance(price["amount"], str)
            for tier in price["tiers"] or []:
                assert isinstance(tier["unit_amount"], str)
                assert isinstance(tier.get("flat_amount", ""), str)
        for plan in doc["plans"]:
            assert set(plan["price_ids"]) <= price_ids
        customer_ids = {c["id"] for c in doc["customers"]}
        for customer in doc["customers"]:
            assert customer["id"].startswith("cus_")
            assert customer["external_id"].startswith("cust_")
            assert customer["parent_customer_id"] in customer_ids | {None}
        for subscription in doc["subscriptions"]:
            assert subscription["customer_id"] in customer_ids
            assert subscription["plan_id"] in {p["id"] for p in doc["plans"]}
            assert subscription["currency"] == doc["prices"][0]["currency"]
            assert subscription["billing_period"] == "MONTHLY"
            for field in ("start_date", "billing_anchor"):
                assert datetime.fromisoformat(subscription[field]).tzinfo is not None
            for commitment in subscription["commitments"]:
                assert commitment["price_id"] in price_ids
                assert isinstance(commitment["amount"], str)


def test_catalog_covers_every_aggregation_type_and_billing_model(
    catalogs: dict[tuple[str, str], dict[str, Any]],
) -> None:
    doc = catalogs[("acme", "production")]
    meters = {m["id"]: m for m in doc["meters"]}
    assert {m["aggregation"]["type"] for m in meters.values()} == AGGREGATION_TYPES
    assert meters["mtr_api_calls"]["aggregation"] == {"type": "COUNT"}
    assert meters["mtr_api_calls"]["filters"] == [{"key": "method", "values": ["GET", "POST"]}]
    assert meters["mtr_egress_mb"]["aggregation"]["multiplier"] == "0.000001"
    assert meters["mtr_cpu_hours"]["aggregation"] == {
        "type": "MAX",
        "field": "cpu",
        "bucket_size": "HOUR",
        "group_by": "instance_id",
    }
    prices = doc["prices"]
    assert {p["billing_model"] for p in prices} == {"FLAT_FEE", "PACKAGE", "TIERED"}
    assert {p["tier_mode"] for p in prices if p["billing_model"] == "TIERED"} == {"SLAB", "VOLUME"}
    assert {
        p["transform_quantity"]["round"] for p in prices if p["billing_model"] == "PACKAGE"
    } == {
        "up",
        "down",
    }
    for price in prices:
        if price["billing_model"] == "TIERED":
            bounds = [t["up_to"] for t in price["tiers"]]
            assert bounds[-1] is None and all(isinstance(b, int) for b in bounds[:-1])
            assert bounds[:-1] == sorted(bounds[:-1])
    assert any("flat_amount" in t for p in prices for t in p["tiers"] or [])
    assert sum("reporting_unit" in f for f in doc["features"]) >= 3


def test_customers_and_subscriptions_cover_the_awkward_cases(
    catalogs: dict[tuple[str, str], dict[str, Any]],
) -> None:
    doc = catalogs[("acme", "production")]
    assert {c["timezone"] for c in doc["customers"]} == TIMEZONES
    assert any(c["parent_customer_id"] for c in doc["customers"])
    subscribed = {s["customer_id"] for s in doc["subscriptions"]}
    assert 0 < len(doc["customers"]) - len(subscribed) < len(doc["customers"]) / 3
    timezone_of = {c["id"]: c["timezone"] for c in doc["customers"]}
    anchor_days = set()
    for subscription in doc["subscriptions"]:
        anchor = datetime.fromisoformat(subscription["billing_anchor"])
        # written at the customer's wall time, so the day of month reads directly
        zone = ZoneInfo(timezone_of[subscription["customer_id"]])
        assert anchor.utcoffset() == anchor.astimezone(zone).utcoffset()
        anchor_days.add(anchor.day)
    assert {1, 15, 31} <= anchor_days
    assert any(s["end_date"] for s in doc["subscriptions"])
    assert any(s["commitments"] for s in doc["subscriptions"])


def test_api_keys_file_holds_the_demo_keys(dataset: GeneratedDataset) -> None:
    text = dataset.api_keys_file.read_text(encoding="utf-8")
    assert "DEMO ONLY" in text
    listed = {
        (tenant, env): key
        for tenant, env, key in (
            line.split() for line in text.splitlines() if line and not line.startswith("#")
        )
    }
    assert listed == dataset.api_keys
    assert dataset.api_keys[("acme", "production")] == "mh_acme_production_key"


def test_catalog_validates_with_the_catalog_loader(dataset: GeneratedDataset) -> None:
    catalog_module = pytest.importorskip("models.catalog")
    if not hasattr(catalog_module, "load_catalog_dir"):
        pytest.skip("models.catalog.load_catalog_dir not available")
    catalog = catalog_module.load_catalog_dir(dataset.catalog_dir)
    assert len(catalog.environments) == len(dataset.api_keys)


# -- landing files -------------------------------------------------------------------------------


def test_layout_and_every_file_type_per_environment(dataset: GeneratedDataset) -> None:
    formats: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path in dataset.files:
        relative = path.relative_to(dataset.landing_dir).as_posix()
        assert PATH.match(relative), relative
        tenant, env = relative.split("/")[:2]
        formats[(tenant, env)].add(path.suffix)
    assert set(formats) == set(dataset.api_keys)
    for key, found in formats.items():
        assert found == {".parquet", ".jsonl", ".csv"}, key
    parquet = next(p for p in dataset.files if p.suffix == ".parquet")
    schema = pq.read_schema(parquet)
    assert schema.names == [
        "event_id",
        "event_name",
        "external_customer_id",
        "source",
        "timestamp",
        "properties",
    ]
    assert {str(t) for t in schema.types} == {"string"}


def test_malformed_lines_are_only_in_jsonl_and_cover_every_kind(
    dataset: GeneratedDataset, rows: list[Row]
) -> None:
    rejected = [r for r in rows if r.event is None]
    assert rejected and all(r.path.endswith(".jsonl") for r in rejected)
    first_file = {}
    for row in rows:
        if row.path.endswith(".jsonl"):
            first_file.setdefault(row.env_key, row.path)
    for key, path in first_file.items():
        reasons = {r.reject_reason for r in rejected if r.path == path}
        assert reasons == {
            "bad JSON",
            "not a JSON object",
            "missing event_id",
            "missing external_customer_id",
            "timestamp without offset",
        }, key
    # a bad line without offset re-uses the id of the last valid line before it
    by_position = {(r.path, r.line): r for r in rows}
    for row in rejected:
        if row.reject_reason == "timestamp without offset":
            before = row.line - 1
            while by_position[(row.path, before)].event is None:
                before -= 1  # several bad lines may follow the same valid line
            line = (dataset.landing_dir / row.path).read_text().splitlines()[row.line - 1]
            assert json.loads(line)["event_id"] == by_position[(row.path, before)].event["event_id"]


def test_events_carry_the_promised_variety(
    dataset: GeneratedDataset, rows: list[Row], catalogs: dict[tuple[str, str], dict[str, Any]]
) -> None:
    first = first_occurrences(rows)
    start, end = DEFAULT_START, DEFAULT_START + timedelta(days=31)
    unmatched_customers = unmatched_names = 0
    names = Counter()
    for (tenant, env, _), row in first.items():
        event = row.event
        doc = catalogs[(tenant, env)]
        assert start <= event["instant"] < end
        # without late_fraction an event lands in the file of its own UTC day
        assert partition_day(row.path).date() == event["instant"].date()
        known = {c["external_id"] for c in doc["customers"]}
        unmatched_customers += event["external_customer_id"] not in known
        unmatched_names += event["event_name"] not in {m["event_name"] for m in doc["meters"]}
        names[event["event_name"]] += 1
    assert unmatched_customers == dataset.unmatched_customer_events > 0
    assert unmatched_names == dataset.unmatched_name_events > 0
    assert {"api_request", "storage_change", "seats_update", "compute", "active_user"} <= set(names)

    events = [r.event for r in first.values()]
    props = [e["properties"] for e in events]
    assert any(isinstance(p.get("tokens"), str) and p["tokens"].isdigit() for p in props)
    assert any(isinstance(p.get("user_id"), int) for p in props)
    assert any(isinstance(p.get("user_id"), str) for p in props)
    deltas = [float(p["storage_delta_gb"]) for p in props if "storage_delta_gb" in p]
    assert min(deltas) < 0 < max(deltas)
    api = [e for e in events if e["event_name"] == "api_request"]
    assert {"method", "region", "latency_ms"} <= set(api[0]["properties"])
    assert any("tokens" not in e["properties"] for e in api)
    assert all(e["properties"] == {} for e in events if e["event_name"] == "heartbeat")
    compute = [e for e in events if e["event_name"] == "compute"]
    assert all("cpu" in e["properties"] and "instance_id" in e["properties"] for e in compute)
    offsets = {e["timestamp"][-6:] for e in events if not e["timestamp"].endswith("Z")}
    assert "+05:30" in offsets
    assert all(re.search(r"\.\d{6}(Z|[+-]\d\d:\d\d)$", e["timestamp"]) for e in events)


def test_customer_activity_is_skewed(rows: list[Row]) -> None:
    per_customer = Counter(
        (*r.env_key, r.event["external_customer_id"]) for r in first_occurrences(rows).values()
    )
    counts = sorted(per_customer.values(), reverse=True)
    top_tenth = counts[: max(1, len(counts) // 10)]
    assert sum(top_tenth) > 0.5 * sum(counts)


def test_late_fraction_moves_timestamps_into_the_past(tmp_path: Path) -> None:
    dataset = generate_dataset(tmp_path, events=2_000, days=5, late_fraction=0.2)
    assert 300 < dataset.late_events < 500
    rows = read_landing(dataset)
    before_their_day = 0
    for row in first_occurrences(rows).values():
        day = partition_day(row.path)
        assert row.event["instant"] < day + timedelta(days=1)
        before_their_day += row.event["instant"] < day
    assert 0 < before_their_day <= dataset.late_events


def test_progress_and_empty_dataset(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    dataset = generate_dataset(
        tmp_path / "small", events=300, days=3, progress=lambda *a: calls.append(a)
    )
    assert calls[-1] == (300, 300)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    empty = generate_dataset(tmp_path / "empty", events=0, days=2)
    assert empty.files == [] and empty.rows_written == 0
    assert len(list(empty.catalog_dir.glob("*.yaml"))) == 4
    assert dataset.rows_written == len(read_landing(dataset))


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_dataset(tmp_path, events=10, customers=2)
    with pytest.raises(ValueError):
        generate_dataset(tmp_path, events=10, start=datetime(2026, 10, 1))
