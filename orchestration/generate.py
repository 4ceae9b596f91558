"""Synthetic catalogs and usage events: the data behind `meterhouse demo`, `meterhouse generate`
and the benchmark.

`generate_dataset` writes, under one output folder:

- `catalog/<tenant>_<environment>.yaml`: one catalog per tenant environment in the format of
  DESIGN 2b, with a meter for every aggregation type, features (some with reporting units),
  prices of every billing model, plans, customers in awkward timezones (Lord Howe's half-hour
  DST, Kathmandu's +05:45) and subscriptions anchored on the 1st, 15th and 31st;
- `landing/<tenant>/<environment>/YYYY/MM/DD/events-NNN.{parquet,jsonl,csv}`: usage events,
  partitioned by the UTC day they arrived, with the untidiness real pipelines see;
- `api_keys.txt`: the plaintext demo keys whose sha256 the catalogs hold (demo data only).

What the events contain, so tests and the demo summary can rely on it:

- `events` distinct valid events over `days` days, split over environments (a sandbox gets a
  quarter of a production's share) and days (weekends quieter), with a diurnal hour pattern
  and Zipf-skewed customers; about 1% of timestamps sit exactly on a minute boundary;
- about 0.4% of events name a customer the environment's catalog does not have (unknown ids
  and ids of other environments' customers) and about 1% use event names no meter matches
  (`page_view`, `api_request_v2`, and `heartbeat`, which has no properties at all);
- numeric properties sometimes arrive as numeric strings (`"12"`), a few `tokens` values are
  the non-numeric `"n/a"`, `tokens` is missing from ~15% of api requests, storage deltas are
  positive and negative, `user_id` is a number or the same number as a string;
- `round(events * duplicate_rate)` re-sends of an earlier event id in the same format, after
  the original in ingestion order (same file, or the next day's file); about 10% of them
  carry new properties (corrections), the rest are identical (JSONL re-sends may render the
  same instant with another UTC offset);
- `late_fraction` of events carry a timestamp 1 to 72 hours before they arrive (never before
  `start`), so the file of one day holds events of earlier days;
- malformed JSONL lines (truncated JSON, a JSON array, no event_id, no external_customer_id,
  a timestamp without offset that re-uses the id of the last valid line before it): five in
  each environment's first JSONL file, then about 0.05% of JSONL lines.

Rows across all landing files = events_written + duplicates_written + malformed_written.
Event ids are `evt_` + 16 hex digits, unique within a tenant environment and derived from
(seed, start, environment), so a second batch with a later `start` has fresh ids. Files of
an earlier run in `out_dir` are overwritten when their names recur, never deleted.

Values are drawn with numpy and text is built with pyarrow compute, one (environment, day,
slice of at most 500k rows) at a time, so 10M events need a few hundred MB. Each slice has
its own random stream derived from the seed, and the same seed gives byte-identical files.
"""

from __future__ import annotations

import calendar
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

DEFAULT_START = datetime(2026, 10, 1, tzinfo=UTC)
TENANT_NAMES = ("acme", "globex", "initech", "umbrella", "hooli", "initrode", "soylent", "vandelay")
TIMEZONES = (
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/Los_Angeles",
)
TIMEZONE_WEIGHTS = (0.25, 0.2, 0.15, 0.1, 0.1, 0.1, 0.1)
SANDBOX_WEIGHT = 0.25
SLICE_ROWS = 500_000
CSV_HEADER = "event_id,event_name,external_customer_id,source,timestamp,properties\n"

MICROS_PER_SECOND = 1_000_000
MICROS_PER_HOUR = 3_600 * MICROS_PER_SECOND
MICROS_PER_DAY = 24 * MICROS_PER_HOUR
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Event kinds, in the order of the per-kind tables below.
API_REQUEST, STORAGE_CHANGE, SEATS_UPDATE, COMPUTE, ACTIVE_USER = range(5)
PAGE_VIEW, API_REQUEST_V2, HEARTBEAT = range(5, 8)
EVENT_NAMES = (
    "api_request",
    "storage_change",
    "seats_update",
    "compute",
    "active_user",
    "page_view",
    "api_request_v2",
    "heartbeat",
)
EVENT_WEIGHTS = (0.55, 0.06, 0.02, 0.17, 0.19, 0.006, 0.002, 0.002)
EVENT_SOURCES = (
    "api-gateway",
    "storage-service",
    "billing-app",
    "k8s-agent",
    "web-app",
    "web-app",
    "api-gateway",
    "k8s-agent",
)
UNMATCHED_NAME_KINDS = (PAGE_VIEW, API_REQUEST_V2, HEARTBEAT)

PARQUET, JSONL, CSV = range(3)
FORMAT_EXTENSIONS = ("parquet", "jsonl", "csv")
FORMAT_WEIGHTS = (0.80, 0.12, 0.08)

UNMATCHED_CUSTOMER_RATE = 0.004
CORRECTION_RATE = 0.10
NEXT_DAY_RESEND_RATE = 0.30
MINUTE_ALIGNED_RATE = 0.01
JSONL_OFFSET_RATE = 0.35
JSONL_OFFSETS = ("+05:30", "-04:00", "+01:00", "+05:45", "-07:00", "+10:30", "+00:00")
MALFORMED_KINDS = (
    "truncated_json",
    "json_array",
    "missing_event_id",
    "missing_external_customer_id",
    "timestamp_without_offset",
)
MALFORMED_RATE = 0.0005


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class TenantEnvironment:
    """One tenant environment: its own catalog file and landing folder."""

    index: int
    tenant_id: str
    environment_id: str
    currency: str
    first_customer: int  # global customer number of the first customer (numbers are 1-based)
    customer_count: int
    event_count: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant_id, self.environment_id)

    @property
    def api_key(self) -> str:
        return demo_api_key(self.tenant_id, self.environment_id)


@dataclass(frozen=True)
class GeneratedDataset:
    """What `generate_dataset` wrote. Rows in landing files = events + duplicates + malformed."""

    catalog_dir: Path
    landing_dir: Path
    events_written: int
    files: list[Path]
    api_keys: dict[tuple[str, str], str]
    api_keys_file: Path
    duplicates_written: int = 0
    corrections_written: int = 0
    malformed_written: int = 0
    late_events: int = 0
    unmatched_customer_events: int = 0
    unmatched_name_events: int = 0
    rows_by_format: dict[str, int] = field(default_factory=dict)
    environments: list[TenantEnvironment] = field(default_factory=list)

    @property
    def rows_written(self) -> int:
        return self.events_written + self.duplicates_written + self.malformed_written

    def summary(self) -> str:
        by_format = ", ".join(f"{fmt} {rows:,}" for fmt, rows in self.rows_by_format.items())
        return "\n".join(
            [
                f"catalogs: {len(self.api_keys)} tenant environments in {self.catalog_dir}",
                f"landing:  {len(self.files)} files in {self.landing_dir} ({by_format} rows)",
                f"events:   {self.events_written:,} distinct, {self.duplicates_written:,} re-sent"
                f" ids ({self.corrections_written:,} corrections),"
                f" {self.malformed_written:,} malformed lines",
                f"          {self.unmatched_customer_events:,} for unknown customers,"
                f" {self.unmatched_name_events:,} with unmetered names,"
                f" {self.late_events:,} late",
            ]
        )


def demo_api_key(tenant_id: str, environment_id: str) -> str:
    """The plaintext demo key of a tenant environment (its sha256 is in the catalog)."""
    return f"mh_{tenant_id}_{environment_id}_key"


# --------------------------------------------------------------------------------------------
# Entry point


def generate_dataset(
    out_dir: Path,
    events: int = 1_000_000,
    days: int = 31,
    seed: int = 7,
    tenants: int = 3,
    customers: int = 300,
    start: datetime = DEFAULT_START,
    duplicate_rate: float = 0.01,
    late_fraction: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
) -> GeneratedDataset:
    """Write synthetic catalogs, landing files and demo API keys under `out_dir`.

    `customers` is the total over all tenant environments. `progress(done, total)` is called
    after each slice with the number of distinct events written so far and `events`.
    """
    if events < 0 or days < 1 or tenants < 1:
        raise ValueError("events must be >= 0, days and tenants >= 1")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    if not 0.0 <= duplicate_rate <= 1.0 or not 0.0 <= late_fraction <= 1.0:
        raise ValueError("duplicate_rate and late_fraction must be within [0, 1]")
    out_dir = Path(out_dir)
    environments = plan_environments(tenants, customers, events)
    catalog_dir = out_dir / "catalog"
    landing_dir = out_dir / "landing"
    catalog_dir.mkdir(parents=True, exist_ok=True)
    landing_dir.mkdir(parents=True, exist_ok=True)

    for env in environments:
        catalog = build_catalog(env, environments, start, days, seed)
        write_catalog(catalog_dir / f"{env.tenant_id}_{env.environment_id}.yaml", catalog, seed)
    api_keys = {env.key: env.api_key for env in environments}
    api_keys_file = write_api_keys(out_dir / "api_keys.txt", api_keys)

    writer = _LandingWriter(landing_dir, environments, start, days, seed, progress, events)
    duplicates = apportion(round(events * duplicate_rate), [e.event_count for e in environments])
    for env, env_duplicates in zip(environments, duplicates, strict=True):
        writer.write_environment(env, min(int(env_duplicates), env.event_count), late_fraction)
    return GeneratedDataset(
        catalog_dir=catalog_dir,
        landing_dir=landing_dir,
        events_written=writer.stats["events"],
        files=sorted(writer.files),
        api_keys=api_keys,
        api_keys_file=api_keys_file,
        duplicates_written=writer.stats["duplicates"],
        corrections_written=writer.stats["corrections"],
        malformed_written=writer.stats["malformed"],
        late_events=writer.stats["late"],
        unmatched_customer_events=writer.stats["unmatched_customers"],
        unmatched_name_events=writer.stats["unmatched_names"],
        rows_by_format={ext: writer.stats[f"rows_{ext}"] for ext in FORMAT_EXTENSIONS},
        environments=environments,
    )


def plan_environments(tenants: int, customers: int, events: int) -> list[TenantEnvironment]:
    """Tenant environments: every tenant has production, the first also a sandbox; the second
    bills in eur. Customers and events are shared out by weight (sandbox a quarter)."""
    keys: list[tuple[str, str, str]] = []
    for t in range(tenants):
        tenant_id = TENANT_NAMES[t] if t < len(TENANT_NAMES) else f"tenant{t + 1:02d}"
        currency = "eur" if t == 1 else "usd"
        keys.append((tenant_id, "production", currency))
        if t == 0:
            keys.append((tenant_id, "sandbox", currency))
    if customers < len(keys):
        raise ValueError(f"need at least {len(keys)} customers, one per tenant environment")
    weights = np.array([SANDBOX_WEIGHT if env == "sandbox" else 1.0 for _, env, _ in keys])
    customer_counts = apportion(customers - len(keys), weights) + 1
    event_counts = apportion(events, weights)
    environments = []
    first = 1
    for i, (tenant_id, environment_id, currency) in enumerate(keys):
        environments.append(
            TenantEnvironment(
                index=i,
                tenant_id=tenant_id,
                environment_id=environment_id,
                currency=currency,
                first_customer=first,
                customer_count=int(customer_counts[i]),
                event_count=int(event_counts[i]),
            )
        )
        first += int(customer_counts[i])
    return environments


def apportion(total: int, weights: np.ndarray) -> np.ndarray:
    """Integers proportional to `weights` summing exactly to `total` (largest remainder)."""
    weights = np.asarray(weights, dtype=np.float64)
    if total <= 0 or weights.sum() <= 0:
        return np.zeros(len(weights), dtype=np.int64)
    quota = total * weights / weights.sum()
    counts = np.floor(quota).astype(np.int64)
    missing = total - int(counts.sum())
    if missing > 0:
        order = np.argsort(-(quota - counts), kind="stable")
        counts[order[:missing]] += 1
    return counts


# --------------------------------------------------------------------------------------------
# Catalog


def customer_external_id(number: int) -> str:
    return f"cust_{number:05d}"


def build_catalog(
    env: TenantEnvironment,
    environments: Sequence[TenantEnvironment],
    start: datetime,
    days: int,
    seed: int,
) -> dict[str, Any]:
    """The catalog document of one tenant environment (DESIGN 2b shape)."""
    rng = np.random.default_rng([seed, 1, env.index])
    customers, subscriptions = build_customers_and_subscriptions(env, start, days, rng)
    return {
        "tenant_id": env.tenant_id,
        "environment_id": env.environment_id,
        "api_keys": [
            {
                "name": "analytics-reader",
                "key_sha256": hashlib.sha256(env.api_key.encode()).hexdigest(),
            }
        ],
        "meters": catalog_meters(),
        "features": catalog_features(),
        "prices": catalog_prices(env.currency),
        "plans": catalog_plans(),
        "customers": customers,
        "subscriptions": subscriptions,
    }


def catalog_meters() -> list[dict[str, Any]]:
    """One meter per aggregation type, plus filters (numeric values, AND across keys)."""

    def meter(id_, name, event_name, aggregation, filters=(), reset="BILLING_PERIOD"):
        return {
            "id": id_,
            "name": name,
            "event_name": event_name,
            "aggregation": aggregation,
            "filters": [{"key": k, "values": list(v)} for k, v in filters],
            "reset_usage": reset,
        }

    return [
        meter(
            "mtr_api_calls",
            "API Usage Meter",
            "api_request",
            {"type": "COUNT"},
            [("method", ["GET", "POST"])],
        ),
        meter(
            "mtr_api_errors",
            "API Server Errors",
            "api_request",
            {"type": "COUNT"},
            [("status", ["500", "502", "503"])],
        ),
        meter("mtr_tokens", "LLM Tokens", "api_request", {"type": "SUM", "field": "tokens"}),
        meter(
            "mtr_tokens_eu_post",
            "LLM Tokens (EU, POST)",
            "api_request",
            {"type": "SUM", "field": "tokens"},
            [("region", ["eu-west-1", "eu-central-1"]), ("method", ["POST"])],
        ),
        meter(
            "mtr_egress_mb",
            "Egress (MB)",
            "api_request",
            {"type": "SUM_WITH_MULTIPLIER", "field": "bytes", "multiplier": "0.000001"},
        ),
        meter(
            "mtr_latency_avg",
            "Average Latency (ms)",
            "api_request",
            {"type": "AVG", "field": "latency_ms"},
        ),
        meter("mtr_cpu_peak", "Peak CPU", "compute", {"type": "MAX", "field": "cpu"}),
        meter(
            "mtr_cpu_hours",
            "CPU Hours (hourly peak per instance)",
            "compute",
            {"type": "MAX", "field": "cpu", "bucket_size": "HOUR", "group_by": "instance_id"},
        ),
        meter(
            "mtr_seats",
            "Seats",
            "seats_update",
            {"type": "LATEST", "field": "seats"},
            reset="NEVER",
        ),
        meter(
            "mtr_active_users",
            "Monthly Active Users",
            "active_user",
            {"type": "COUNT_UNIQUE", "field": "user_id"},
        ),
        meter(
            "mtr_storage_gb",
            "Storage (GB, time-weighted)",
            "storage_change",
            {"type": "WEIGHTED_SUM", "field": "storage_delta_gb"},
        ),
    ]


def catalog_features() -> list[dict[str, Any]]:
    def feature(id_, name, meter_id, singular, plural, reporting=None):
        item: dict[str, Any] = {
            "id": id_,
            "name": name,
            "meter_id": meter_id,
            "unit_singular": singular,
            "unit_plural": plural,
        }
        if reporting:
            r_singular, r_plural, rate = reporting
            item["reporting_unit"] = {
                "unit_singular": r_singular,
                "unit_plural": r_plural,
                "conversion_rate": rate,
            }
        return item

    return [
        feature("feat_api_calls", "API calls", "mtr_api_calls", "call", "calls",
                ("k-call", "k-calls", 0.001)),
        feature("feat_api_errors", "API server errors", "mtr_api_errors", "error", "errors"),
        feature("feat_tokens", "LLM tokens", "mtr_tokens", "token", "tokens",
                ("k-token", "k-tokens", 0.001)),
        feature("feat_tokens_eu_post", "LLM tokens (EU, POST)", "mtr_tokens_eu_post", "token",
                "tokens"),
        feature("feat_egress", "Egress", "mtr_egress_mb", "MB", "MB", ("GB", "GB", 0.001)),
        feature("feat_latency", "Average latency", "mtr_latency_avg", "millisecond",
                "milliseconds", ("second", "seconds", 0.001)),
        feature("feat_cpu_peak", "Peak CPU", "mtr_cpu_peak", "core", "cores"),
        feature("feat_cpu_hours", "CPU hours", "mtr_cpu_hours", "core-hour", "core-hours",
                ("core-minute", "core-minutes", 60)),
        feature("feat_seats", "Seats", "mtr_seats", "seat", "seats"),
        feature("feat_active_users", "Active users", "mtr_active_users", "user", "users"),
        feature("feat_storage", "Storage", "mtr_storage_gb", "GB", "GB"),
    ]  # fmt: skip


def catalog_prices(currency: str) -> list[dict[str, Any]]:
    """Prices of every billing model: FLAT_FEE, PACKAGE (round up and down), TIERED SLAB and
    VOLUME with inclusive `up_to`, a null last tier and flat amounts. Money is decimal text."""

    def price(
        id_,
        meter_id,
        billing_model,
        *,
        amount=None,
        tiers=None,
        tier_mode=None,
        divide_by=None,
        round_=None,
    ):
        return {
            "id": id_,
            "meter_id": meter_id,
            "type": "USAGE",
            "currency": currency,
            "billing_model": billing_model,
            "tier_mode": tier_mode,
            "tiers": tiers,
            "transform_quantity": (
                {"divide_by": divide_by, "round": round_} if divide_by is not None else None
            ),
            "amount": amount,
            "billing_period": "MONTHLY",
            "billing_period_count": 1,
        }

    def tier(up_to, unit_amount, flat_amount=None):
        item: dict[str, Any] = {"up_to": up_to, "unit_amount": unit_amount}
        if flat_amount is not None:
            item["flat_amount"] = flat_amount
        return item

    return [
        # starter
        price("price_starter_api_calls", "mtr_api_calls", "TIERED", tier_mode="SLAB",
              tiers=[tier(1000, "0"), tier(100000, "0.002"), tier(None, "0.0015", "10")]),
        price("price_starter_tokens", "mtr_tokens", "PACKAGE", amount="0.5",
              divide_by=1000, round_="up"),
        price("price_starter_egress", "mtr_egress_mb", "FLAT_FEE", amount="0.00012"),
        # pro
        price("price_pro_api_calls", "mtr_api_calls", "TIERED", tier_mode="VOLUME",
              tiers=[tier(10000, "0.001"), tier(1000000, "0.0008"),
                     tier(None, "0.0005", "25")]),
        price("price_pro_tokens", "mtr_tokens", "PACKAGE", amount="0.4",
              divide_by=1000, round_="up"),
        price("price_pro_egress", "mtr_egress_mb", "FLAT_FEE", amount="0.0001"),
        price("price_pro_cpu_hours", "mtr_cpu_hours", "FLAT_FEE", amount="0.045"),
        price("price_pro_seats", "mtr_seats", "TIERED", tier_mode="VOLUME",
              tiers=[tier(10, "12"), tier(50, "10"), tier(None, "8", "20")]),
        price("price_pro_storage", "mtr_storage_gb", "FLAT_FEE", amount="0.023"),
        # enterprise
        price("price_enterprise_api_calls", "mtr_api_calls", "TIERED", tier_mode="SLAB",
              tiers=[tier(100000, "0"), tier(None, "0.0004")]),
        price("price_enterprise_tokens", "mtr_tokens", "PACKAGE", amount="350",
              divide_by=1000000, round_="down"),
        price("price_enterprise_egress", "mtr_egress_mb", "FLAT_FEE", amount="0.00008"),
        price("price_enterprise_cpu_hours", "mtr_cpu_hours", "TIERED", tier_mode="SLAB",
              tiers=[tier(500, "0.04", "5"), tier(None, "0.03")]),
        price("price_enterprise_seats", "mtr_seats", "TIERED", tier_mode="VOLUME",
              tiers=[tier(100, "9"), tier(None, "7.5", "100")]),
        price("price_enterprise_active_users", "mtr_active_users", "TIERED",
              tier_mode="VOLUME", tiers=[tier(100, "0"), tier(1000, "0.5"), tier(None, "0.3")]),
        price("price_enterprise_storage", "mtr_storage_gb", "FLAT_FEE", amount="0.02"),
    ]  # fmt: skip


PLAN_PRICES = {
    "plan_starter": ("Starter", ("api_calls", "tokens", "egress")),
    "plan_pro": ("Pro", ("api_calls", "tokens", "egress", "cpu_hours", "seats", "storage")),
    "plan_enterprise": (
        "Enterprise",
        ("api_calls", "tokens", "egress", "cpu_hours", "seats", "active_users", "storage"),
    ),
}


def catalog_plans() -> list[dict[str, Any]]:
    plans = []
    for plan_id, (name, items) in PLAN_PRICES.items():
        tier = plan_id.removeprefix("plan_")
        plans.append(
            {"id": plan_id, "name": name, "price_ids": [f"price_{tier}_{i}" for i in items]}
        )
    return plans


CUSTOMER_ADJECTIVES = ("Blue", "Quiet", "Rapid", "Northern", "Bright", "Golden", "Solid", "Lucky")
CUSTOMER_NOUNS = ("Labs", "Systems", "Analytics", "Robotics", "Foods", "Media", "Logistics")
ANCHOR_DAYS = (1, 15, 31, 28, 30, 10, 20, 5)
ANCHOR_DAY_WEIGHTS = (0.3, 0.2, 0.15, 0.1, 0.1, 0.05, 0.05, 0.05)


def build_customers_and_subscriptions(
    env: TenantEnvironment, start: datetime, days: int, rng: np.random.Generator
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Customers (every timezone appears once the environment has 7 customers; the 10th is a
    child of the 1st) and their subscriptions: the 2nd customer and ~12% of the rest have
    none; anchors on the 31st, 15th, 1st and others; some start or end inside the data range,
    some upgrade mid-range from starter to pro (two subscriptions, same anchor); the 1st and
    ~30% of the other enterprise subscriptions carry an amount commitment."""
    customers: list[dict[str, Any]] = []
    subscriptions: list[dict[str, Any]] = []
    start_day = start.astimezone(UTC).date()
    for k in range(env.customer_count):
        number = env.first_customer + k
        if k < len(TIMEZONES):
            tz = TIMEZONES[k]
        else:
            tz = TIMEZONES[int(rng.choice(len(TIMEZONES), p=TIMEZONE_WEIGHTS))]
        parent = None
        if k == 9 or (k > 9 and rng.random() < 0.04):
            parent = f"cus_{env.first_customer + (0 if k == 9 else int(rng.integers(0, 8))):05d}"
        name = (
            f"{CUSTOMER_ADJECTIVES[number % len(CUSTOMER_ADJECTIVES)]} "
            f"{CUSTOMER_NOUNS[(number // len(CUSTOMER_ADJECTIVES)) % len(CUSTOMER_NOUNS)]} "
            f"{number}"
        )
        customer_id = f"cus_{number:05d}"
        customers.append(
            {
                "id": customer_id,
                "external_id": customer_external_id(number),
                "name": name,
                "timezone": tz,
                "parent_customer_id": parent,
            }
        )

        draw = rng.random(7)  # fixed number of draws per customer keeps streams aligned
        if k == 1 or (k > 3 and draw[0] < 0.12):
            continue
        forced_anchor_days = {0: 31, 2: 15, 3: 1}
        anchor_day = forced_anchor_days.get(
            k, ANCHOR_DAYS[int(np.searchsorted(np.cumsum(ANCHOR_DAY_WEIGHTS), draw[1]))]
        )
        plan = (
            "plan_enterprise"
            if k == 0
            else ("plan_starter", "plan_pro", "plan_enterprise")[
                int(np.searchsorted([0.4, 0.8], draw[2]))
            ]
        )
        zone = ZoneInfo(tz)
        anchor_date = _last_date_with_day_before(start_day, anchor_day)
        anchor_time = (9, 30) if draw[3] < 0.1 else (0, 0)
        anchor = datetime(*anchor_date.timetuple()[:3], *anchor_time, tzinfo=zone)
        sub_start = anchor
        sub_end = None
        mid = start_day + timedelta(days=max(1, int(draw[4] * days)))
        mid_local = datetime(mid.year, mid.month, mid.day, tzinfo=zone)
        if k > 3 and draw[5] < 0.08:  # starts inside the data range, anchored on its start
            sub_start = anchor = mid_local
        elif k > 3 and draw[5] < 0.12:  # cancelled inside the data range
            sub_end = mid_local
        elif k > 3 and draw[5] < 0.16:  # upgrade: starter until mid-range, then pro
            subscriptions.append(
                _subscription(
                    f"sub_{number:05d}_a",
                    customer_id,
                    "plan_starter",
                    env.currency,
                    sub_start,
                    mid_local,
                    anchor,
                )
            )
            subscriptions.append(
                _subscription(
                    f"sub_{number:05d}_b",
                    customer_id,
                    "plan_pro",
                    env.currency,
                    mid_local,
                    None,
                    anchor,
                )
            )
            continue
        subscription = _subscription(
            f"sub_{number:05d}", customer_id, plan, env.currency, sub_start, sub_end, anchor
        )
        if k == 0:
            subscription["commitments"] = [
                _commitment("price_enterprise_tokens", "100", "1.2", True)
            ]
        elif plan == "plan_enterprise" and draw[6] < 0.3:
            subscription["commitments"] = [
                _commitment("price_enterprise_cpu_hours", "50", "1.5", False)
            ]
        subscriptions.append(subscription)
    return customers, subscriptions


def _commitment(price_id: str, amount: str, overage_factor: str, true_up: bool) -> dict[str, Any]:
    """An amount commitment on one line item (CommitmentInfo fields, keyed by price)."""
    return {
        "price_id": price_id,
        "commitment_type": "amount",
        "amount": amount,
        "overage_factor": overage_factor,
        "true_up_enabled": true_up,
        "is_windowed": False,
    }


def _subscription(
    id_: str,
    customer_id: str,
    plan_id: str,
    currency: str,
    start_date: datetime,
    end_date: datetime | None,
    anchor: datetime,
) -> dict[str, Any]:
    return {
        "id": id_,
        "customer_id": customer_id,
        "plan_id": plan_id,
        "currency": currency,
        "start_date": _rfc3339(start_date),
        "end_date": _rfc3339(end_date) if end_date else None,
        "billing_anchor": _rfc3339(anchor),
        "billing_period": "MONTHLY",
        "billing_period_count": 1,
        "commitments": [],
    }


def _last_date_with_day_before(day: date, day_of_month: int) -> date:
    """The latest date strictly before `day`'s month whose day of month is `day_of_month`."""
    year, month = day.year, day.month
    while True:
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
        if calendar.monthrange(year, month)[1] >= day_of_month:
            return date(year, month, day_of_month)


def _rfc3339(value: datetime) -> str:
    """Local wall time with its UTC offset (so the anchor's local day is visible), Z for UTC."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class _CatalogDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Safe YAML with block style for documents and one-line flow style for small leaves."""


class _FlowDict(dict):
    pass


class _FlowList(list):
    pass


_CatalogDumper.add_representer(
    _FlowDict, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v, flow_style=True)
)
_CatalogDumper.add_representer(
    _FlowList, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True)
)

# Which values are written on one line: aggregation, filters, tiers, reporting units, api keys,
# commitments and customers (one per line, as in DESIGN 2b); everything else in block style.
_FLOW_KEYS = frozenset(
    ["aggregation", "values", "reporting_unit", "transform_quantity", "price_ids"]
)
_FLOW_ITEM_LISTS = frozenset(["api_keys", "filters", "tiers", "customers", "commitments"])


def _styled(value: Any, key: str | None = None) -> Any:
    if isinstance(value, dict):
        items = {k: _styled(v, k) for k, v in value.items()}
        return _FlowDict(items) if key in _FLOW_KEYS else items
    if isinstance(value, list):
        items = [_styled(v) for v in value]
        if key in _FLOW_ITEM_LISTS:
            items = [_FlowDict(v) if isinstance(v, dict) else v for v in items]
        return _FlowList(items) if key in _FLOW_KEYS else items
    return value


def write_catalog(path: Path, catalog: dict[str, Any], seed: int) -> Path:
    header = (
        f"# Synthetic catalog written by `meterhouse generate` (seed {seed}): demo data only.\n"
        "# Format: DESIGN 2b. Money is decimal text; api_keys hold only the sha256 of a key.\n"
    )
    body = yaml.dump(
        _styled(catalog),
        Dumper=_CatalogDumper,
        sort_keys=False,
        default_flow_style=False,
        width=4096,
        allow_unicode=True,
    )
    path.write_text(header + body, encoding="utf-8")
    return path


def write_api_keys(path: Path, api_keys: dict[tuple[str, str], str]) -> Path:
    lines = [
        "# DEMO ONLY: plaintext API keys of the synthetic catalogs in catalog/.",
        "# The catalogs store only their sha256; never keep real keys in a file like this.",
        "# tenant_id environment_id api_key",
    ]
    lines += [f"{tenant} {env} {key}" for (tenant, env), key in api_keys.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# Text building blocks (vectorised)


def _join(*parts: Any) -> pa.Array:
    """Element-wise concatenation of string arrays and literals (null if any part is null)."""
    return pc.binary_join_element_wise(*parts, "")


def _int_text(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values, type=pa.int64()), pa.string())


def _decimal_text(scaled: np.ndarray, scale: int) -> pa.Array:
    """`scaled / 10**scale` as plain decimal text (`-1.250`), never with an exponent."""
    unit = 10**scale
    magnitude = np.abs(scaled)
    fraction = pc.utf8_lpad(_int_text(magnitude % unit), scale, "0")
    sign = pc.if_else(pa.array(scaled < 0), "-", "")
    return _join(sign, _int_text(magnitude // unit), ".", fraction)


def _maybe_quoted(text: pa.Array, quoted: np.ndarray) -> pa.Array:
    """JSON number, or the same digits as a JSON string where `quoted`."""
    quote = pc.if_else(pa.array(quoted), '"', "")
    return _join(quote, text, quote)


def _pick(rng: np.random.Generator, n: int, values: Sequence[str], weights=None) -> pa.Array:
    if weights is None:
        index = rng.integers(0, len(values), n)
    else:
        cdf = np.cumsum(weights) / np.sum(weights)
        index = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(values) - 1)
    return pa.array(values, type=pa.string()).take(pa.array(index))


def _fixed_width_strings(chars: np.ndarray) -> pa.Array:
    """A string array from an (n, width) uint8 matrix of ASCII characters, without copying."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(chars)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _event_ids(numbers: np.ndarray) -> pa.Array:
    """`evt_` + 16 hex digits of a bijective 64-bit mix (splitmix64's finaliser) of `numbers`,
    so distinct numbers always give distinct ids that still look random."""
    z = numbers.astype(np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    raw = z.astype(">u8").view(np.uint8).reshape(-1, 8)
    chars = np.empty((len(z), 20), dtype=np.uint8)
    chars[:, :4] = np.frombuffer(b"evt_", dtype=np.uint8)
    chars[:, 4::2] = _HEX[raw >> 4]
    chars[:, 5::2] = _HEX[raw & 15]
    return _fixed_width_strings(chars)


@lru_cache(maxsize=1)
def _clock_table() -> pa.Array:
    return pa.array(
        [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400)],
        type=pa.string(),
    )


def _timestamp_text(micros: np.ndarray, offset_minutes: np.ndarray | None = None) -> pa.Array:
    """RFC 3339 text with microseconds: `Z`, or the instant's wall time at the given offsets."""
    local = micros if offset_minutes is None else micros + offset_minutes * 60 * MICROS_PER_SECOND
    day = local // MICROS_PER_DAY
    within = local - day * MICROS_PER_DAY
    first = int(day.min()) if len(day) else 0
    dates = np.datetime_as_string(
        np.arange(first, (int(day.max()) + 1) if len(day) else 1).astype("datetime64[D]")
    )
    date_text = pa.array(dates.astype(object), type=pa.string()).take(pa.array(day - first))
    clock = _clock_table().take(pa.array(within // MICROS_PER_SECOND))
    fraction = pc.utf8_lpad(_int_text(within % MICROS_PER_SECOND), 6, "0")
    if offset_minutes is None:
        suffix: Any = "Z"
    else:
        sign = pc.if_else(pa.array(offset_minutes < 0), "-", "+")
        hours = pc.utf8_lpad(_int_text(np.abs(offset_minutes) // 60), 2, "0")
        minutes = pc.utf8_lpad(_int_text(np.abs(offset_minutes) % 60), 2, "0")
        suffix = _join(sign, hours, ":", minutes)
    return _join(date_text, "T", clock, ".", fraction, suffix)


# --------------------------------------------------------------------------------------------
# Event properties


METHODS = ("GET", "POST", "PUT", "DELETE", "OPTIONS")
METHOD_WEIGHTS = (0.6, 0.25, 0.08, 0.05, 0.02)
REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-south-1")
REGION_WEIGHTS = (0.35, 0.2, 0.2, 0.15, 0.1)
STATUSES = ("200", "201", "204", "400", "404", "429", "500", "502", "503")
STATUS_WEIGHTS = (0.8, 0.06, 0.03, 0.03, 0.04, 0.02, 0.01, 0.005, 0.005)


def build_properties(
    kinds: np.ndarray, customers: np.ndarray, rng: np.random.Generator
) -> pa.Array:
    """Properties JSON text for each event (null for heartbeats), by event kind.

    `customers` are global customer numbers; per-customer traits (seat counts, instance ids,
    user pools) derive from them so usage looks like the same customer over time.
    """
    order = np.argsort(kinds, kind="stable")
    counts = np.bincount(kinds, minlength=len(EVENT_NAMES))
    pieces = []
    begin = 0
    for kind, count in enumerate(counts):
        rows = order[begin : begin + count]
        begin += count
        if count:
            pieces.append(_properties_of_kind(kind, customers[rows], rng))
    if not pieces:
        return pa.array([], type=pa.string())
    grouped = pa.concat_arrays(pieces)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return grouped.take(pa.array(inverse))


def _properties_of_kind(kind: int, customers: np.ndarray, rng: np.random.Generator) -> pa.Array:
    n = len(customers)
    if kind == API_REQUEST:
        latency_tenths = np.clip(rng.lognormal(np.log(1200), 0.6, n), 5, 300_000).astype(np.int64)
        size = (rng.lognormal(np.log(20_000), 1.0, n) + 128).astype(np.int64)
        tokens = np.clip(rng.lognormal(np.log(400), 1.0, n), 1, 500_000).astype(np.int64)
        token_draw = rng.random((3, n))
        not_a_number = token_draw[2] < 0.0005
        token_text = pc.if_else(pa.array(not_a_number), "n/a", _int_text(tokens))
        token_part = pc.if_else(
            pa.array(token_draw[0] < 0.85),
            _join(',"tokens":', _maybe_quoted(token_text, (token_draw[1] < 0.05) | not_a_number)),
            "",
        )
        return _join(
            '{"method":"', _pick(rng, n, METHODS, METHOD_WEIGHTS),
            '","region":"', _pick(rng, n, REGIONS, REGION_WEIGHTS),
            '","status":', _pick(rng, n, STATUSES, STATUS_WEIGHTS),
            ',"latency_ms":', _decimal_text(latency_tenths, 1),
            ',"bytes":', _int_text(size),
            token_part, "}",
        )  # fmt: skip
    if kind == STORAGE_CHANGE:
        grow = rng.random(n) < 0.68
        delta = np.where(grow, rng.integers(1, 50_000, n), -rng.integers(1, 30_000, n))
        return _join(
            '{"storage_delta_gb":', _maybe_quoted(_decimal_text(delta, 3), rng.random(n) < 0.05),
            ',"tier":"', _pick(rng, n, ("standard", "standard", "archive")), '"}',
        )  # fmt: skip
    if kind == SEATS_UPDATE:
        seats = 1 + (customers * 7919) % 60 + rng.integers(0, 6, n)
        return _join('{"seats":', _maybe_quoted(_int_text(seats), rng.random(n) < 0.10), "}")
    if kind == COMPUTE:
        instance = rng.integers(0, 1 + customers % 4)
        cpu_hundredths = np.clip(rng.gamma(2.0, 150.0, n), 5, 6400).astype(np.int64)
        return _join(
            '{"instance_id":"i-', pc.utf8_lpad(_int_text(customers), 5, "0"),
            "-", _int_text(instance),
            '","cpu":', _maybe_quoted(_decimal_text(cpu_hundredths, 2), rng.random(n) < 0.03),
            ',"region":"', _pick(rng, n, REGIONS, REGION_WEIGHTS), '"}',
        )  # fmt: skip
    if kind == ACTIVE_USER:
        pool = 5 + (customers * 37) % 200
        user = customers * 1000 + (rng.random(n) ** 2 * pool).astype(np.int64)
        return _join(
            '{"user_id":', _maybe_quoted(_int_text(user), rng.random(n) < 0.30),
            ',"device":"', _pick(rng, n, ("web", "ios", "android"), (0.6, 0.25, 0.15)), '"}',
        )  # fmt: skip
    if kind == PAGE_VIEW:
        return _join('{"path":"', _pick(rng, n, ("/", "/pricing", "/docs", "/login")), '"}')
    if kind == API_REQUEST_V2:
        return _join('{"method":"GET","tokens":', _int_text(rng.integers(1, 100, n)), "}")
    return pa.nulls(n, type=pa.string())  # HEARTBEAT: no properties at all


# --------------------------------------------------------------------------------------------
# Landing files


@dataclass(frozen=True)
class _CustomerDraw:
    """Who sends an environment's events: Zipf-weighted catalog customers (`cdf`), then
    `unmatched_ids` external ids the catalog does not have, at the end of `external_ids`."""

    cdf: np.ndarray
    external_ids: pa.Array
    unmatched_ids: int


class _LandingWriter:
    """Writes one environment's events day by day, slice by slice, and counts what it wrote."""

    def __init__(
        self,
        landing_dir: Path,
        environments: Sequence[TenantEnvironment],
        start: datetime,
        days: int,
        seed: int,
        progress: Callable[[int, int], None] | None,
        total_events: int,
    ) -> None:
        self.landing_dir = landing_dir
        self.environments = environments
        self.start_us = (start.astimezone(UTC) - EPOCH) // timedelta(microseconds=1)
        self.days = days
        self.seed = seed
        self.progress = progress
        self.total_events = total_events
        self.files: list[Path] = []
        self.stats: dict[str, int] = dict.fromkeys(
            ["events", "duplicates", "corrections", "malformed", "late", "unmatched_customers",
             "unmatched_names"] + [f"rows_{ext}" for ext in FORMAT_EXTENSIONS],
            0,
        )  # fmt: skip
        hour = np.arange(24)
        diurnal = 1.0 + 0.8 * np.cos(2 * np.pi * (hour - 15) / 24)
        self.hour_cdf = np.cumsum(diurnal) / diurnal.sum()

    def write_environment(
        self, env: TenantEnvironment, duplicates: int, late_fraction: float
    ) -> None:
        rng = np.random.default_rng([self.seed, 2, env.index])
        ranks = rng.permutation(env.customer_count)
        zipf = 1.0 / (ranks + 1.0) ** 1.1
        customer_cdf = np.cumsum(zipf) / zipf.sum()
        known = [customer_external_id(env.first_customer + k) for k in range(env.customer_count)]
        foreign = [
            customer_external_id(other.first_customer + k)
            for other in self.environments
            if other.index != env.index
            for k in range(min(3, other.customer_count))
        ]
        unknown = [f"cust_unknown_{k:03d}" for k in range(10)]
        customers = _CustomerDraw(
            cdf=customer_cdf,
            external_ids=pa.array(known + foreign + unknown, type=pa.string()),
            unmatched_ids=len(foreign) + len(unknown),
        )

        day_index = np.arange(self.days)
        weekday = (self.start_us // MICROS_PER_DAY + 3 + day_index) % 7  # 0 = Monday
        day_weights = np.where(weekday >= 5, 0.7, 1.0) * (1.0 + 0.01 * day_index)
        per_day = apportion(env.event_count, day_weights)
        duplicates_per_day = np.minimum(apportion(duplicates, per_day), per_day)
        carried: pa.Table | None = None
        sequence = 0
        first_jsonl = True
        for day in range(self.days):
            day_rng = np.random.default_rng([self.seed, 3, env.index, day])
            day_start = self.start_us + day * MICROS_PER_DAY
            timestamps = self._day_timestamps(int(per_day[day]), day_start, day_rng)
            slices = max(1, -(-len(timestamps) // SLICE_ROWS))
            bounds = np.linspace(0, len(timestamps), slices + 1).astype(np.int64)
            slice_duplicates = apportion(int(duplicates_per_day[day]), np.diff(bounds) + 1e-9)
            next_carried: list[pa.Table] = []
            for s in range(slices):
                rng = np.random.default_rng([self.seed, 4, env.index, day, s])
                lo, hi = int(bounds[s]), int(bounds[s + 1])
                originals = self._originals(
                    env, timestamps[lo:hi], sequence, customers, late_fraction, rng
                )
                sequence += hi - lo
                parts = [originals]
                if s == 0 and carried is not None:
                    parts.append(carried)
                same_day, next_day = self._resends(
                    originals, int(slice_duplicates[s]), rng, last_day=day == self.days - 1
                )
                parts.append(same_day)
                next_carried.append(next_day)
                rows = pa.concat_tables(parts)
                if rows.num_rows:
                    first_jsonl = self._write_slice(env, day_start, s, rows, rng, first_jsonl)
                self.stats["events"] += hi - lo
                if self.progress is not None:
                    self.progress(self.stats["events"], self.total_events)
            carried = pa.concat_tables(next_carried)

    def _id_base(self, env: TenantEnvironment) -> np.uint64:
        """Where an environment's id sequence starts: derived from the seed, the start and the
        environment, so a later batch (another start) never re-uses a batch's ids by accident."""
        key = f"{self.seed}/{self.start_us}/{env.tenant_id}/{env.environment_id}".encode()
        return np.uint64(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))

    def _day_timestamps(self, n: int, day_start: int, rng: np.random.Generator) -> np.ndarray:
        """Sorted instants within the day: diurnal hours, ~1% exactly on a minute."""
        hour = np.searchsorted(self.hour_cdf, rng.random(n), side="right")
        micros = day_start + hour * MICROS_PER_HOUR + rng.integers(0, MICROS_PER_HOUR, n)
        aligned = rng.random(n) < MINUTE_ALIGNED_RATE
        micros[aligned] -= (micros[aligned] - day_start) % (60 * MICROS_PER_SECOND)
        micros.sort()
        return micros

    def _originals(
        self,
        env: TenantEnvironment,
        arrivals: np.ndarray,
        sequence: int,
        customers: _CustomerDraw,
        late_fraction: float,
        rng: np.random.Generator,
    ) -> pa.Table:
        """New events arriving at `arrivals`, with ids `sequence`, `sequence + 1`, ..."""
        n = len(arrivals)
        kind_cdf = np.cumsum(EVENT_WEIGHTS) / np.sum(EVENT_WEIGHTS)
        kinds = np.minimum(np.searchsorted(kind_cdf, rng.random(n), side="right"), 7)
        customer_index = np.minimum(
            np.searchsorted(customers.cdf, rng.random(n), side="right"), env.customer_count - 1
        )
        unmatched = rng.random(n) < UNMATCHED_CUSTOMER_RATE
        customer_index[unmatched] = env.customer_count + rng.integers(
            0, customers.unmatched_ids, int(unmatched.sum())
        )
        numbers = env.first_customer + customer_index  # traits of unknown ids: any number will do
        properties = build_properties(kinds, numbers, rng)

        timestamps = arrivals.copy()
        late = rng.random(n) < late_fraction
        earlier = timestamps - rng.integers(MICROS_PER_HOUR, 72 * MICROS_PER_HOUR, n)
        before_start = earlier < self.start_us
        earlier[before_start] = self.start_us + (timestamps[before_start] - self.start_us) // 2
        timestamps[late] = earlier[late]

        sources = pa.array(EVENT_SOURCES, type=pa.string()).take(pa.array(kinds))
        sources = pc.if_else(pa.array(rng.random(n) < 0.02), pa.scalar(None, pa.string()), sources)
        formats = np.searchsorted(np.cumsum(FORMAT_WEIGHTS), rng.random(n) * 0.999999)
        with np.errstate(over="ignore"):
            ids = self._id_base(env) + np.arange(sequence, sequence + n, dtype=np.uint64)

        self.stats["late"] += int(late.sum())
        self.stats["unmatched_customers"] += int(unmatched.sum())
        self.stats["unmatched_names"] += int(np.isin(kinds, UNMATCHED_NAME_KINDS).sum())
        return pa.table(
            {
                "event_id": _event_ids(ids),
                "event_name": pa.array(EVENT_NAMES, type=pa.string()).take(pa.array(kinds)),
                "external_customer_id": customers.external_ids.take(pa.array(customer_index)),
                "source": sources,
                "timestamp_us": pa.array(timestamps, type=pa.int64()),
                "properties": properties,
                "format": pa.array(formats.astype(np.int8)),
                "kind": pa.array(kinds.astype(np.int8)),
                "customer": pa.array(numbers, type=pa.int64()),
            }
        )

    def _resends(
        self, originals: pa.Table, count: int, rng: np.random.Generator, last_day: bool
    ) -> tuple[pa.Table, pa.Table]:
        """Re-sent ids in the original's format: identical, or with new properties (a
        correction). Some are held back for the next day's file."""
        count = min(count, originals.num_rows)
        picked = np.sort(rng.choice(originals.num_rows, count, replace=False))
        resent = originals.take(pa.array(picked, type=pa.int64()))
        corrected = rng.random(count) < CORRECTION_RATE
        if corrected.any():
            kinds = resent["kind"].to_numpy()
            new_properties = build_properties(kinds, resent["customer"].to_numpy(), rng)
            properties = pc.if_else(
                pa.array(corrected), new_properties, resent["properties"].combine_chunks()
            )
            changed = pc.fill_null(
                pc.not_equal(properties, resent["properties"].combine_chunks()), False
            )
            self.stats["corrections"] += int(pc.sum(changed).as_py() or 0)
            resent = resent.set_column(
                resent.schema.get_field_index("properties"), "properties", properties
            )
        self.stats["duplicates"] += count
        tomorrow = (rng.random(count) < NEXT_DAY_RESEND_RATE) & (not last_day)
        order = rng.permutation(int((~tomorrow).sum()))
        today = resent.filter(pa.array(~tomorrow)).take(pa.array(order, type=pa.int64()))
        return today, resent.filter(pa.array(tomorrow))

    def _write_slice(
        self,
        env: TenantEnvironment,
        day_start: int,
        slice_number: int,
        rows: pa.Table,
        rng: np.random.Generator,
        first_jsonl: bool,
    ) -> bool:
        day = (EPOCH + timedelta(microseconds=day_start)).date()
        folder = (
            self.landing_dir / env.tenant_id / env.environment_id
            / f"{day.year:04d}" / f"{day.month:02d}" / f"{day.day:02d}"
        )  # fmt: skip
        folder.mkdir(parents=True, exist_ok=True)
        formats = rows["format"].to_numpy()
        for fmt, ext in enumerate(FORMAT_EXTENSIONS):
            mask = formats == fmt
            if not mask.any():
                continue
            part = rows.filter(pa.array(mask))
            path = folder / f"events-{slice_number:03d}.{ext}"
            malformed = 0
            if fmt == PARQUET:
                self._write_parquet(path, part)
            elif fmt == JSONL:
                malformed = self._write_jsonl(path, part, rng, first_jsonl)
                first_jsonl = False
            else:
                self._write_csv(path, part)
            self.stats[f"rows_{ext}"] += part.num_rows + malformed
            self.files.append(path)
        return first_jsonl

    def _write_parquet(self, path: Path, rows: pa.Table) -> None:
        table = pa.table(
            {
                "event_id": rows["event_id"],
                "event_name": rows["event_name"],
                "external_customer_id": rows["external_customer_id"],
                "source": rows["source"],
                "timestamp": _timestamp_text(rows["timestamp_us"].to_numpy()),
                "properties": rows["properties"],
            }
        )
        pq.write_table(table, path, compression="zstd")

    def _write_jsonl(
        self, path: Path, rows: pa.Table, rng: np.random.Generator, first_file: bool
    ) -> int:
        """Write JSON Lines; returns the number of malformed lines mixed in."""
        n = rows.num_rows
        offsets = np.array([_offset_minutes(o) for o in JSONL_OFFSETS])[
            rng.integers(0, len(JSONL_OFFSETS), n)
        ]
        with_offset = rng.random(n) < JSONL_OFFSET_RATE
        micros = rows["timestamp_us"].to_numpy()
        timestamps = pc.if_else(
            pa.array(with_offset), _timestamp_text(micros, offsets), _timestamp_text(micros)
        )
        source = rows["source"].combine_chunks()
        properties = rows["properties"].combine_chunks()
        lines = _join(
            '{"event_id":"', rows["event_id"].combine_chunks(),
            '","event_name":"', rows["event_name"].combine_chunks(),
            '","external_customer_id":"', rows["external_customer_id"].combine_chunks(), '"',
            pc.fill_null(_join(',"source":"', source, '"'), ""),
            ',"timestamp":"', timestamps, '"',
            pc.fill_null(_join(',"properties":', properties), ""),
            "}",
        )  # fmt: skip
        bad_count = len(MALFORMED_KINDS) if first_file else int(rng.binomial(n, MALFORMED_RATE))
        lines = _with_malformed_lines(lines, bad_count, rng, cycle_kinds=first_file)
        self.stats["malformed"] += bad_count
        _write_lines(path, lines)
        return bad_count

    def _write_csv(self, path: Path, rows: pa.Table) -> None:
        properties = rows["properties"].combine_chunks()
        quoted = _join('"', pc.replace_substring(properties, '"', '""'), '"')
        lines = _join(
            rows["event_id"].combine_chunks(), ",",
            rows["event_name"].combine_chunks(), ",",
            rows["external_customer_id"].combine_chunks(), ",",
            pc.fill_null(rows["source"].combine_chunks(), ""), ",",
            _timestamp_text(rows["timestamp_us"].to_numpy()), ",",
            pc.fill_null(quoted, ""),
        )  # fmt: skip
        _write_lines(path, lines, header=CSV_HEADER)


def _offset_minutes(offset: str) -> int:
    sign = -1 if offset[0] == "-" else 1
    return sign * (int(offset[1:3]) * 60 + int(offset[4:6]))


def _with_malformed_lines(
    lines: pa.Array, count: int, rng: np.random.Generator, cycle_kinds: bool
) -> pa.Array:
    """`lines` with `count` malformed lines, each inserted right after the valid line it was
    made from (so a bad re-send of an id always follows the accepted version)."""
    if count == 0 or len(lines) == 0:
        return lines
    after = np.sort(rng.integers(0, len(lines), count))
    if cycle_kinds:
        kinds = [MALFORMED_KINDS[i % len(MALFORMED_KINDS)] for i in range(count)]
    else:
        kinds = [MALFORMED_KINDS[i] for i in rng.integers(0, len(MALFORMED_KINDS), count)]
    bad = [_malformed(lines[int(i)].as_py(), kind) for i, kind in zip(after, kinds, strict=True)]
    combined = pa.concat_arrays([lines, pa.array(bad, type=pa.string())])
    position = np.concatenate([np.arange(len(lines)), after])
    tie = np.concatenate([np.zeros(len(lines), dtype=np.int64), np.arange(1, count + 1)])
    return combined.take(pa.array(np.lexsort((tie, position))))


_TIMESTAMP_OFFSET = re.compile(r'("timestamp":"[^"]*?)(?:Z|[+-]\d\d:\d\d)"')


def _malformed(line: str, kind: str) -> str:
    if kind == "truncated_json":
        return line[: len(line) // 2]
    if kind == "json_array":
        return f"[{line}]"
    if kind == "missing_event_id":
        return re.sub(r'"event_id":"[^"]*",', "", line, count=1)
    if kind == "missing_external_customer_id":
        return re.sub(r',"external_customer_id":"[^"]*"', "", line, count=1)
    return _TIMESTAMP_OFFSET.sub(r'\1"', line, count=1)  # timestamp_without_offset


def _write_lines(path: Path, lines: pa.Array, header: str = "") -> None:
    """Write each string plus a newline, straight from the Arrow buffers."""
    terminated = _join(lines, "\n")
    if isinstance(terminated, pa.ChunkedArray):
        terminated = terminated.combine_chunks()
    offsets = np.frombuffer(terminated.buffers()[1], dtype=np.int32)[
        terminated.offset : terminated.offset + len(terminated) + 1
    ]
    data = terminated.buffers()[2]
    with open(path, "wb") as out:
        out.write(header.encode())
        if len(terminated):
            out.write(memoryview(data)[int(offsets[0]) : int(offsets[-1])])
