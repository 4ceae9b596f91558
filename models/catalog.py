"""The catalog: API keys, meters, features, prices, plans, customers and subscriptions.

One YAML file per tenant environment (DESIGN 2b). Meters use the Flexprice create-meter body
plus an `id`; prices, plans, features and subscriptions use the field names of the Flexprice
schemas. This module validates a catalog folder and reports *every* problem it finds, each
with the file, the field path (`meters[2].aggregation.field`) and, where known, the line.

Validation happens in three layers:
1. shapes and types (pydantic, `extra="forbid"`);
2. rules inside one object (`aggregation_issues`, `price_issues`, ...), raised from the
   models' validators with the exact field path;
3. references between objects (`reference_issues`): missing meters, cycles, currencies.

Pure domain code: no Dagster, no FastAPI, no database connections.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import available_timezones

import yaml
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from models import cel
from models.enums import (
    AggregationType,
    BillingModel,
    BillingPeriod,
    BucketSize,
    CommitmentType,
    MeterStatus,
    PriceType,
    ResetUsage,
    RoundType,
    TierMode,
)

# A location inside a document, as pydantic reports it: ("meters", 2, "aggregation", "field").
Loc = tuple[str | int, ...]
# A rule violation found inside one object: where (relative to the object) and why.
Issue = tuple[Loc, str]

# decimal(38, 12) in the warehouse: 12 digits after the point, 26 before it.
WAREHOUSE_SCALE = 12
WAREHOUSE_INTEGER_DIGITS = 26

SKIP_REFERENCE_CHECKS = "skip_reference_checks"

# ISO 4217 codes of circulating currencies (funds, metals and test codes left out).
ISO_4217_CURRENCIES = frozenset(
    """
    aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd btn
    bwp byn bzd cad cdf chf clp cny cop crc cuc cup cve czk djf dkk dop dzd egp ern etb eur
    fjd fkp gbp gel ghs gip gmd gnf gtq gyd hkd hnl htg huf idr ils inr iqd irr isk jmd jod
    jpy kes kgs khr kmf kpw krw kwd kyd kzt lak lbp lkr lrd lsl lyd mad mdl mga mkd mmk mnt
    mop mru mur mvr mwk mxn myr mzn nad ngn nio nok npr nzd omr pab pen pgk php pkr pln pyg
    qar ron rsd rub rwf sar sbd scr sdg sek sgd shp sle sll sos srd ssp stn svc syp szl thb
    tjs tmt tnd top try ttd twd tzs uah ugx usd uyu uzs ved ves vnd vuv wst xaf xcd xcg xof
    xpf yer zar zmw zwg zwl
    """.split()
)

# DESIGN 3: money is rounded to 2 decimals, except these currencies (0 decimals).
ZERO_DECIMAL_CURRENCIES = frozenset({"jpy", "krw", "vnd", "clp"})

# Names zoneinfo knows but which are not portable IANA zone names for the warehouse engines.
_NON_PORTABLE_ZONES = frozenset({"localtime", "posixrules", "Factory"})

_ENVIRONMENT_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


# -- numbers ----------------------------------------------------------------------------------
def canonical_decimal_text(value: Decimal) -> str:
    """Decimal as canonical text (DESIGN 3b.11): no exponent, no trailing zeros, "0" for zero."""
    if not value.is_finite():
        raise ValueError(f"{value} is not a finite number")
    if value == 0:
        return "0"
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def canonical_filter_value(value: object) -> str:
    """A filter value as the string events are compared with: numbers in canonical form.

    YAML numbers become text (5 -> "5", 5.0 -> "5", 1.50 -> "1.5"); quoted strings are kept
    exactly. Booleans, nulls, dates and nested values are refused: they are almost always a
    YAML surprise (`yes`, `~`, `2024-01-01`), and quoting says what was meant.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is a boolean; quote the value if you mean the text")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | Decimal):
        number = Decimal(repr(value)) if isinstance(value, float) else value
        if not number.is_finite():
            raise ValueError(f"{value!r} is not a finite number")
        return canonical_decimal_text(number)
    raise ValueError(f"{value!r} is not a text or a number; quote the value")


def _check_fits_warehouse(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("must be a finite number")
    _, _, fraction = canonical_decimal_text(value).partition(".")
    if len(fraction) > WAREHOUSE_SCALE:
        raise ValueError(f"has more than {WAREHOUSE_SCALE} decimal places")
    if value != 0 and value.adjusted() >= WAREHOUSE_INTEGER_DIGITS:
        raise ValueError(f"is too large (at most {WAREHOUSE_INTEGER_DIGITS} integer digits)")
    return value


def _check_not_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _check_positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


# -- text -------------------------------------------------------------------------------------
def _check_identifier(value: str) -> str:
    if value == "":
        raise ValueError("must not be empty")
    if value != value.strip():
        raise ValueError(f"{value!r} has leading or trailing whitespace")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError(f"{value!r} contains control characters")
    return value


def _check_text(value: str) -> str:
    if value.strip() == "":
        raise ValueError("must not be empty")
    return value


def _check_environment_key(value: str) -> str:
    # tenant and environment ids are folder names of the landing layout
    if not _ENVIRONMENT_KEY.fullmatch(value):
        raise ValueError(
            f"{value!r} must start with a letter or digit and use only letters, digits, "
            "'.', '_' and '-' (it names a landing folder)"
        )
    return value


def _check_sha256(value: str) -> str:
    if not _SHA256_HEX.fullmatch(value):
        raise ValueError("must be 64 lowercase hex characters (the sha256 of the key)")
    return value


def _check_currency(value: str) -> str:
    code = value.lower()
    if code not in ISO_4217_CURRENCIES:
        raise ValueError(f"unknown currency {value!r}; use an ISO 4217 code such as usd")
    return code


@lru_cache(maxsize=1)
def _known_timezones() -> frozenset[str]:
    return frozenset(available_timezones()) - _NON_PORTABLE_ZONES


def _check_timezone(value: str) -> str:
    if value not in _known_timezones():
        raise ValueError(f"unknown timezone {value!r}; use an IANA name such as Europe/Paris")
    return value


def currency_precision(currency: str) -> int:
    """Decimals money is rounded to in this currency (DESIGN 3: 2, or 0 for jpy/krw/vnd/clp)."""
    return 0 if currency.lower() in ZERO_DECIMAL_CURRENCIES else 2


# -- instants and counts -----------------------------------------------------------------------
# The instants events may have (orchestration/ingest.py): subscription dates outside them would
# only be typing mistakes, and years 1 or 9999 overflow date arithmetic.
EARLIEST_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_INSTANT = datetime(2100, 1, 1, tzinfo=UTC)
# Longest billing period: 100 periods (100 years with ANNUAL); more is a typing mistake.
MAX_BILLING_PERIOD_COUNT = 100


def _refuse_numbers(value: object) -> object:
    # pydantic reads a number as Unix seconds: `start_date: 20240101` would be 1970-08-23
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        raise ValueError("must be an RFC 3339 date-time with an offset, such as "
                         "2024-01-01T00:00:00Z (a number is not read as a Unix time)")
    return value


def _check_instant_range(value: datetime) -> datetime:
    if not EARLIEST_INSTANT <= value < LATEST_INSTANT:
        raise ValueError("must be between 1970-01-01 and 2100-01-01")
    return value


Identifier = Annotated[str, AfterValidator(_check_identifier)]
Text = Annotated[str, AfterValidator(_check_text)]
EnvironmentKey = Annotated[str, AfterValidator(_check_environment_key)]
Sha256Hex = Annotated[str, AfterValidator(_check_sha256)]
Currency = Annotated[str, AfterValidator(_check_currency)]
TimezoneName = Annotated[str, AfterValidator(_check_timezone)]
WarehouseDecimal = Annotated[Decimal, AfterValidator(_check_fits_warehouse)]
NonNegativeDecimal = Annotated[WarehouseDecimal, AfterValidator(_check_not_negative)]
PositiveDecimal = Annotated[WarehouseDecimal, AfterValidator(_check_positive)]
FilterValue = Annotated[str, BeforeValidator(canonical_filter_value)]
Instant = Annotated[AwareDatetime, BeforeValidator(_refuse_numbers),
                    AfterValidator(_check_instant_range)]
PeriodCount = Annotated[StrictInt, Field(ge=1, le=MAX_BILLING_PERIOD_COUNT)]


def _raise_issues(title: str, issues: Sequence[Issue]) -> None:
    """Raise all rule violations of one object at once, each at its own field path."""
    if not issues:
        return
    raise ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError("catalog_rule", "{message}", {"message": message}),
                loc=loc,
                input=None,
            )
            for loc, message in issues
        ],
    )


class CatalogModel(BaseModel):
    """Base of every catalog object: unknown fields are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


# -- API keys ---------------------------------------------------------------------------------
class ApiKey(CatalogModel):
    """A read-API key of this tenant environment; only its sha256 is stored."""

    name: Identifier
    key_sha256: Sha256Hex
    revoked: StrictBool = False


# -- meters -----------------------------------------------------------------------------------
_AGGREGATION_TYPE_HINTS = {"UNIQUE_COUNT": "COUNT_UNIQUE", "DISTINCT": "COUNT_UNIQUE"}


def aggregation_issues(aggregation: Aggregation) -> list[Issue]:
    """Rules of `aggregation` that depend on its type (fields relative to the aggregation)."""
    kind = aggregation.type
    issues: list[Issue] = []
    if kind is AggregationType.COUNT:
        if aggregation.field is not None:
            issues.append((("field",), "COUNT counts events; remove aggregation.field"))
        if aggregation.expression is not None:
            issues.append((("expression",), "COUNT counts events; remove aggregation.expression"))
    elif kind is AggregationType.COUNT_UNIQUE:
        if aggregation.field is None:
            issues.append(
                (("field",), "COUNT_UNIQUE needs aggregation.field, the property it counts")
            )
    elif aggregation.field is None and aggregation.expression is None:
        issues.append((("field",), f"{kind} needs aggregation.field (or aggregation.expression)"))
    issues += _multiplier_issues(aggregation)
    issues += _bucket_issues(aggregation)
    return issues


def _multiplier_issues(aggregation: Aggregation) -> list[Issue]:
    kind, multiplier = aggregation.type, aggregation.multiplier
    if multiplier is None:
        if kind is AggregationType.SUM_WITH_MULTIPLIER:
            return [(("multiplier",), "SUM_WITH_MULTIPLIER needs aggregation.multiplier")]
        return []
    if kind in (AggregationType.COUNT, AggregationType.COUNT_UNIQUE):
        return [(("multiplier",), f"multiplier has no meaning for {kind}; remove it")]
    if multiplier == 0:
        return [(("multiplier",), "multiplier must not be 0")]
    return []


def _bucket_issues(aggregation: Aggregation) -> list[Issue]:
    issues: list[Issue] = []
    if aggregation.bucket_size is not None and aggregation.type is not AggregationType.MAX:
        issues.append(
            (("bucket_size",), f"bucket_size is only supported for MAX, not {aggregation.type}")
        )
    if aggregation.group_by is not None and aggregation.bucket_size is None:
        issues.append((("group_by",), "group_by needs aggregation.bucket_size (MAX only)"))
    return issues


class Aggregation(CatalogModel):
    """`aggregation` of the create-meter body."""

    type: AggregationType
    field: Identifier | None = None
    expression: Text | None = None
    multiplier: WarehouseDecimal | None = None
    bucket_size: BucketSize | None = None
    group_by: Identifier | None = None

    @field_validator("type", mode="before")
    @classmethod
    def _known_type(cls, value: object) -> object:
        known = [member.value for member in AggregationType]
        if isinstance(value, str) and value not in known:
            hint = _AGGREGATION_TYPE_HINTS.get(value.upper(), value.upper())
            suggestion = f"; did you mean {hint}?" if hint in known else ""
            raise ValueError(
                f"unknown aggregation type {value!r}{suggestion} (one of {', '.join(known)})"
            )
        return value

    @model_validator(mode="after")
    def _rules(self) -> Aggregation:
        _raise_issues("Aggregation", aggregation_issues(self))
        return self


class Filter(CatalogModel):
    """An event matches when `properties[key]`, as text, is one of `values`."""

    key: Identifier
    values: list[FilterValue]

    @model_validator(mode="after")
    def _rules(self) -> Filter:
        _raise_issues("Filter", filter_issues(self))
        return self


def filter_issues(meter_filter: Filter) -> list[Issue]:
    """A filter needs at least one value, each value once."""
    if not meter_filter.values:
        return [(("values",), "a filter needs at least one value")]
    seen: set[str] = set()
    issues: list[Issue] = []
    for index, value in enumerate(meter_filter.values):
        if value in seen:
            issues.append((("values", index), f"duplicate value {value!r}"))
        seen.add(value)
    return issues


class Meter(CatalogModel):
    """A meter: the create-meter body of the Flexprice spec plus its `id`."""

    id: Identifier
    name: Text
    event_name: Identifier
    aggregation: Aggregation
    filters: list[Filter] = Field(default_factory=list)
    reset_usage: ResetUsage = ResetUsage.BILLING_PERIOD
    status: MeterStatus = MeterStatus.PUBLISHED

    @field_validator("filters", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return [] if value is None else value

    @model_validator(mode="after")
    def _rules(self) -> Meter:
        _raise_issues("Meter", meter_issues(self))
        return self


def validate_expression(meter: Meter) -> list[Issue]:
    """Check `aggregation.expression` of a meter (CEL, DESIGN 3; the rules are in models/cel.py).

    The expression is parsed with cel-python's grammar and must use only what compiles to
    warehouse SQL (numbers, properties, arithmetic, comparisons, logic, `?:` and the functions
    of `cel.FUNCTIONS`) and compute a number. Returns the problems as (location inside the
    meter, message); the message names the meter, the position in the expression and the reason.
    """
    expression = meter.aggregation.expression
    if expression is None:
        return []
    loc: Loc = ("aggregation", "expression")
    if meter.aggregation.type is AggregationType.COUNT_UNIQUE:
        message = (
            f"meter {meter.id!r}: COUNT_UNIQUE counts the distinct values of aggregation.field; "
            "it cannot use an expression"
        )
        return [(loc, message)]
    problem = cel.expression_problem(expression)
    if problem is None:
        return []
    return [(loc, f"meter {meter.id!r}, expression {expression!r}: {problem}")]


def meter_issues(meter: Meter) -> list[Issue]:
    """Rules across the parts of one meter: filter keys unique, the expression usable."""
    issues: list[Issue] = []
    seen: set[str] = set()
    for index, meter_filter in enumerate(meter.filters):
        if meter_filter.key in seen:
            issues.append((("filters", index, "key"), f"duplicate filter key {meter_filter.key!r}"))
        seen.add(meter_filter.key)
    return issues + validate_expression(meter)


def meter_definition(meter: Meter) -> dict[str, Any]:
    """What decides a meter's usage, in canonical form (filters and values sorted).

    The id, name and status are left out: renaming a meter does not change its numbers.
    """
    aggregation = meter.aggregation
    multiplier = aggregation.multiplier
    return {
        "event_name": meter.event_name,
        "aggregation": {
            "type": aggregation.type.value,
            "field": aggregation.field,
            "expression": aggregation.expression,
            "multiplier": None if multiplier is None else canonical_decimal_text(multiplier),
            "bucket_size": None
            if aggregation.bucket_size is None
            else aggregation.bucket_size.value,
            "group_by": aggregation.group_by,
        },
        "filters": [
            {"key": item.key, "values": sorted(set(item.values))}
            for item in sorted(meter.filters, key=lambda item: item.key)
        ],
        "reset_usage": meter.reset_usage.value,
    }


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal content, equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def meter_definition_json(meter: Meter) -> str:
    return canonical_json(meter_definition(meter))


def meter_definition_hash(meter: Meter) -> str:
    """sha256 of `meter_definition_json`: changes exactly when the meter's usage can change."""
    return sha256_text(meter_definition_json(meter))


# -- features ---------------------------------------------------------------------------------
class ReportingUnit(CatalogModel):
    """Display unit of a feature: reporting value = usage × conversion_rate."""

    unit_singular: Text
    unit_plural: Text
    conversion_rate: PositiveDecimal


class Feature(CatalogModel):
    """A metered feature: the customer-facing name and units of a meter."""

    id: Identifier
    name: Text
    meter_id: Identifier
    unit_singular: Text | None = None
    unit_plural: Text | None = None
    reporting_unit: ReportingUnit | None = None


# -- prices -----------------------------------------------------------------------------------
class PriceTier(CatalogModel):
    """`price.PriceTier`: `up_to` inclusive, null for the last tier."""

    up_to: PositiveDecimal | None = None
    unit_amount: NonNegativeDecimal
    flat_amount: NonNegativeDecimal | None = None


class TransformQuantity(CatalogModel):
    """`price.JSONBTransformQuantity` of a PACKAGE price."""

    divide_by: StrictInt = Field(ge=1)
    round: RoundType = RoundType.UP


def tier_issues(tiers: Sequence[PriceTier]) -> list[Issue]:
    """Tiers ascend strictly by `up_to`; only the last is open-ended, and it must be."""
    issues: list[Issue] = []
    previous: Decimal | None = None
    for index, tier in enumerate(tiers):
        loc: Loc = ("tiers", index, "up_to")
        is_last = index == len(tiers) - 1
        if tier.up_to is None and not is_last:
            issues.append((loc, "only the last tier may have up_to null"))
        if tier.up_to is not None and is_last:
            issues.append((loc, "the last tier must have up_to null (it has no upper bound)"))
        if tier.up_to is not None and previous is not None and tier.up_to <= previous:
            issues.append((loc, f"up_to must be greater than the previous tier's ({previous})"))
        if tier.up_to is not None:
            previous = tier.up_to
    return issues


def _billing_model_issues(price: Price) -> list[Issue]:
    model = price.billing_model
    issues: list[Issue] = []
    if model in (BillingModel.FLAT_FEE, BillingModel.PACKAGE) and price.amount is None:
        issues.append((("amount",), f"{model} needs amount"))
    if model is BillingModel.PACKAGE and price.transform_quantity is None:
        issues.append((("transform_quantity", "divide_by"), "PACKAGE needs divide_by"))
    if model is not BillingModel.PACKAGE and price.transform_quantity is not None:
        issues.append((("transform_quantity",), f"only PACKAGE transforms quantity, not {model}"))
    if model is BillingModel.TIERED:
        if not price.tiers:
            issues.append((("tiers",), "TIERED needs tiers"))
        if price.tier_mode is None:
            issues.append((("tier_mode",), "TIERED needs tier_mode (VOLUME or SLAB)"))
        if price.amount is not None:
            issues.append((("amount",), "TIERED takes its amounts from tiers; remove amount"))
    else:
        if price.tiers:
            issues.append((("tiers",), f"{model} has no tiers; remove tiers"))
        if price.tier_mode is not None:
            issues.append((("tier_mode",), f"{model} has no tiers; remove tier_mode"))
    return issues


def price_issues(price: Price) -> list[Issue]:
    """Rules inside one price: what its type and billing model need and allow."""
    issues: list[Issue] = []
    if price.type is PriceType.USAGE and price.meter_id is None:
        issues.append((("meter_id",), "a USAGE price needs meter_id"))
    if price.type is PriceType.FIXED and price.meter_id is not None:
        issues.append((("meter_id",), "a FIXED price has no meter; remove meter_id"))
    if price.type is PriceType.USAGE and price.billing_period is BillingPeriod.ONETIME:
        issues.append((("billing_period",), "a USAGE price needs a recurring billing_period"))
    return issues + _billing_model_issues(price) + tier_issues(price.tiers)


class Price(CatalogModel):
    """A price, with the field names of the spec's Price schema."""

    id: Identifier
    type: PriceType = PriceType.USAGE
    meter_id: Identifier | None = None
    currency: Currency
    billing_model: BillingModel
    tier_mode: TierMode | None = None
    tiers: list[PriceTier] = Field(default_factory=list)
    transform_quantity: TransformQuantity | None = None
    amount: NonNegativeDecimal | None = None
    billing_period: BillingPeriod
    billing_period_count: PeriodCount = 1
    plan_id: Identifier | None = None
    display_name: Text | None = None
    description: str | None = None

    @field_validator("tiers", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return [] if value is None else value

    @model_validator(mode="after")
    def _rules(self) -> Price:
        _raise_issues("Price", price_issues(self))
        return self


# -- plans and customers ----------------------------------------------------------------------
class Plan(CatalogModel):
    """A plan: the prices a subscription to it is charged with."""

    id: Identifier
    name: Text
    description: str | None = None
    price_ids: list[Identifier] = Field(default_factory=list)

    @field_validator("price_ids", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return [] if value is None else value

    @model_validator(mode="after")
    def _rules(self) -> Plan:
        seen: set[str] = set()
        issues: list[Issue] = []
        for index, price_id in enumerate(self.price_ids):
            if price_id in seen:
                issues.append((("price_ids", index), f"price {price_id!r} is listed twice"))
            seen.add(price_id)
        _raise_issues("Plan", issues)
        return self


class Customer(CatalogModel):
    """A customer; events name it by `external_id`."""

    id: Identifier
    external_id: Identifier
    name: Text | None = None
    timezone: TimezoneName = "UTC"
    parent_customer_id: Identifier | None = None


# -- subscriptions ----------------------------------------------------------------------------
def commitment_issues(commitment: Commitment) -> list[Issue]:
    """An amount commitment has an amount and no quantity; a quantity one the reverse."""
    if commitment.commitment_type is CommitmentType.AMOUNT:
        needed, other = "amount", "quantity"
    else:
        needed, other = "quantity", "amount"
    issues: list[Issue] = []
    if getattr(commitment, needed) is None:
        issues.append(((needed,), f"a {commitment.commitment_type} commitment needs {needed}"))
    if getattr(commitment, other) is not None:
        issues.append(((other,), f"a {commitment.commitment_type} commitment has no {other}"))
    return issues


class Commitment(CatalogModel):
    """A commitment on one line item (price) of a subscription: CommitmentInfo's fields."""

    price_id: Identifier
    commitment_type: CommitmentType
    amount: PositiveDecimal | None = None
    quantity: PositiveDecimal | None = None
    overage_factor: WarehouseDecimal = Field(default=Decimal(1), ge=1)
    true_up_enabled: StrictBool = False
    is_windowed: StrictBool = False

    @model_validator(mode="after")
    def _rules(self) -> Commitment:
        _raise_issues("Commitment", commitment_issues(self))
        return self


def subscription_issues(subscription: Subscription) -> list[Issue]:
    """Dates in order, a recurring period, one commitment per price."""
    issues: list[Issue] = []
    if subscription.end_date is not None and subscription.end_date <= subscription.start_date:
        issues.append((("end_date",), "end_date must be after start_date"))
    if subscription.billing_period is BillingPeriod.ONETIME:
        issues.append((("billing_period",), "a subscription needs a recurring billing_period"))
    seen: set[str] = set()
    for index, commitment in enumerate(subscription.commitments):
        if commitment.price_id in seen:
            message = f"price {commitment.price_id!r} already has a commitment"
            issues.append((("commitments", index, "price_id"), message))
        seen.add(commitment.price_id)
    return issues


class Subscription(CatalogModel):
    """A customer's subscription to a plan. `billing_anchor` defaults to `start_date`."""

    id: Identifier
    customer_id: Identifier
    plan_id: Identifier
    currency: Currency
    start_date: Instant
    end_date: Instant | None = None
    billing_anchor: Instant | None = None
    billing_period: BillingPeriod
    billing_period_count: PeriodCount = 1
    commitments: list[Commitment] = Field(default_factory=list)

    @field_validator("commitments", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return [] if value is None else value

    @model_validator(mode="after")
    def _rules(self) -> Subscription:
        _raise_issues("Subscription", subscription_issues(self))
        if self.billing_anchor is None:
            self.billing_anchor = self.start_date
        return self

    @property
    def anchor(self) -> datetime:
        """The billing anchor, never None."""
        return self.billing_anchor or self.start_date


# -- one file: one tenant environment ---------------------------------------------------------
# Section name -> (model, the field that identifies an item within the section).
SECTIONS: dict[str, tuple[type[CatalogModel], str]] = {
    "api_keys": (ApiKey, "name"),
    "meters": (Meter, "id"),
    "features": (Feature, "id"),
    "prices": (Price, "id"),
    "plans": (Plan, "id"),
    "customers": (Customer, "id"),
    "subscriptions": (Subscription, "id"),
}


class CatalogFile(CatalogModel):
    """Everything of one tenant environment, as written in one YAML file."""

    tenant_id: EnvironmentKey
    environment_id: EnvironmentKey
    api_keys: list[ApiKey] = Field(default_factory=list)
    meters: list[Meter] = Field(default_factory=list)
    features: list[Feature] = Field(default_factory=list)
    prices: list[Price] = Field(default_factory=list)
    plans: list[Plan] = Field(default_factory=list)
    customers: list[Customer] = Field(default_factory=list)
    subscriptions: list[Subscription] = Field(default_factory=list)

    @field_validator(*SECTIONS, mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return [] if value is None else value

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> CatalogFile:
        if not (info.context or {}).get(SKIP_REFERENCE_CHECKS):
            _raise_issues("CatalogFile", reference_issues(SectionView.of_file(self)))
        return self

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant_id, self.environment_id)


# -- references between objects --------------------------------------------------------------
@dataclass
class SectionView:
    """The objects of one file by section, index-aligned with the YAML lists.

    An item that failed its own validation is None: rules about it are skipped, but its
    id still counts as declared, so one broken meter does not also make every feature that
    refers to it "missing".
    """

    items: dict[str, list[Any]]
    declared: dict[str, set[str]]

    @classmethod
    def of_file(cls, catalog_file: CatalogFile) -> SectionView:
        items = {name: list(getattr(catalog_file, name)) for name in SECTIONS}
        declared = {
            name: {getattr(item, key) for item in items[name]}
            for name, (_, key) in SECTIONS.items()
        }
        return cls(items, declared)

    def valid(self, section: str) -> list[tuple[int, Any]]:
        return [(index, item) for index, item in enumerate(self.items[section]) if item is not None]

    def by_id(self, section: str) -> dict[str, Any]:
        key = SECTIONS[section][1]
        found: dict[str, Any] = {}
        for _, item in self.valid(section):
            found.setdefault(getattr(item, key), item)
        return found


def _duplicate_issues(view: SectionView, section: str, key: str) -> list[Issue]:
    first_index: dict[str, int] = {}
    issues: list[Issue] = []
    for index, item in view.valid(section):
        value = getattr(item, key)
        if value in first_index:
            message = f"duplicate {key} {value!r} (also {section}[{first_index[value]}])"
            issues.append(((section, index, key), message))
        else:
            first_index[value] = index
    return issues


def _missing(section: str, index: int, key: str, target: str, value: str) -> Issue:
    return ((section, index, key), f"{target} {value!r} does not exist")


def _feature_issues(view: SectionView) -> list[Issue]:
    issues: list[Issue] = []
    feature_of_meter: dict[str, str] = {}
    for index, feature in view.valid("features"):
        if feature.meter_id not in view.declared["meters"]:
            issues.append(_missing("features", index, "meter_id", "meter", feature.meter_id))
        elif feature.meter_id in feature_of_meter:
            other = feature_of_meter[feature.meter_id]
            message = f"meter {feature.meter_id!r} already has feature {other!r}"
            issues.append((("features", index, "meter_id"), message))
        else:
            feature_of_meter[feature.meter_id] = feature.id
    return issues


def _price_issues(view: SectionView) -> list[Issue]:
    issues: list[Issue] = []
    plans = view.by_id("plans")
    for index, price in view.valid("prices"):
        if price.meter_id is not None and price.meter_id not in view.declared["meters"]:
            issues.append(_missing("prices", index, "meter_id", "meter", price.meter_id))
        if price.plan_id is None:
            continue
        if price.plan_id not in view.declared["plans"]:
            issues.append(_missing("prices", index, "plan_id", "plan", price.plan_id))
        elif price.plan_id in plans and price.id not in plans[price.plan_id].price_ids:
            message = f"plan {price.plan_id!r} does not list this price in its price_ids"
            issues.append((("prices", index, "plan_id"), message))
    return issues


def _plan_issues(view: SectionView) -> list[Issue]:
    issues: list[Issue] = []
    prices = view.by_id("prices")
    for index, plan in view.valid("plans"):
        for position, price_id in enumerate(plan.price_ids):
            loc: Loc = ("plans", index, "price_ids", position)
            if price_id not in view.declared["prices"]:
                issues.append((loc, f"price {price_id!r} does not exist"))
            elif price_id in prices and prices[price_id].plan_id not in (None, plan.id):
                owner = prices[price_id].plan_id
                issues.append((loc, f"price {price_id!r} belongs to plan {owner!r} (plan_id)"))
    return issues


def _parent_chain_loop(customer_id: str, parents: Mapping[str, str | None]) -> list[str] | None:
    chain = [customer_id]
    current = parents.get(customer_id)
    while current is not None and current in parents:
        if current == customer_id:
            return chain + [current]
        if current in chain:
            return None  # a loop further up, reported for its own members
        chain.append(current)
        current = parents[current]
    return None


def _customer_issues(view: SectionView) -> list[Issue]:
    issues = _duplicate_issues(view, "customers", "external_id")
    parents = {customer.id: customer.parent_customer_id for _, customer in view.valid("customers")}
    for index, customer in view.valid("customers"):
        parent = customer.parent_customer_id
        if parent is None:
            continue
        if parent not in view.declared["customers"]:
            issues.append(_missing("customers", index, "parent_customer_id", "customer", parent))
            continue
        loop = _parent_chain_loop(customer.id, parents)
        if loop is not None:
            message = f"parent chain loops: {' -> '.join(loop)}"
            issues.append((("customers", index, "parent_customer_id"), message))
    return issues


def _subscription_plan_issues(
    index: int, subscription: Subscription, plan: Plan, prices: Mapping[str, Price]
) -> list[Issue]:
    issues: list[Issue] = []
    for price_id in plan.price_ids:
        price = prices.get(price_id)
        if price is None:
            continue
        if price.currency != subscription.currency:
            message = (
                f"currency {subscription.currency!r} differs from price {price_id!r} "
                f"({price.currency}) of plan {plan.id!r}"
            )
            issues.append((("subscriptions", index, "currency"), message))
        sub_period = (subscription.billing_period, subscription.billing_period_count)
        if (price.billing_period, price.billing_period_count) != sub_period:
            message = (
                f"billing period {sub_period[1]} x {sub_period[0]} differs from price "
                f"{price_id!r} ({price.billing_period_count} x {price.billing_period})"
            )
            issues.append((("subscriptions", index, "billing_period"), message))
    for position, commitment in enumerate(subscription.commitments):
        if commitment.price_id not in plan.price_ids:
            message = f"price {commitment.price_id!r} is not in plan {plan.id!r}"
            issues.append((("subscriptions", index, "commitments", position, "price_id"), message))
    return issues


def _subscription_issues(view: SectionView) -> list[Issue]:
    issues: list[Issue] = []
    plans, prices = view.by_id("plans"), view.by_id("prices")
    for index, sub in view.valid("subscriptions"):
        if sub.customer_id not in view.declared["customers"]:
            issues.append(
                _missing("subscriptions", index, "customer_id", "customer", sub.customer_id)
            )
        if sub.plan_id not in view.declared["plans"]:
            issues.append(_missing("subscriptions", index, "plan_id", "plan", sub.plan_id))
        elif sub.plan_id in plans:
            issues += _subscription_plan_issues(index, sub, plans[sub.plan_id], prices)
    return issues


def reference_issues(view: SectionView) -> list[Issue]:
    """Problems between the objects of one file: duplicates and references that do not hold."""
    issues: list[Issue] = []
    for section, (_, key) in SECTIONS.items():
        issues += _duplicate_issues(view, section, key)
    issues += _duplicate_issues(view, "api_keys", "key_sha256")
    issues += _feature_issues(view)
    issues += _price_issues(view)
    issues += _plan_issues(view)
    issues += _customer_issues(view)
    issues += _subscription_issues(view)
    return issues


# -- problems and the whole catalog -----------------------------------------------------------
def format_loc(loc: Sequence[str | int]) -> str:
    """("meters", 2, "aggregation", "field") -> "meters[2].aggregation.field"."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(file)"


@dataclass(frozen=True)
class CatalogProblem:
    """One thing wrong with the catalog: which file, which field, what, and the line."""

    file: str
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        text = f"{self.file}: {self.path}: {self.message}"
        if self.line is not None and not self.path.startswith("line "):
            text += f" (line {self.line})"
        return text


class CatalogError(Exception):
    """The catalog is invalid; `problems` lists everything found, not just the first."""

    def __init__(self, problems: Sequence[CatalogProblem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


def environment_hash(catalog_file: CatalogFile) -> str:
    """sha256 of the environment's content: changes whenever anything in its file changes."""
    return sha256_text(canonical_json(catalog_file.model_dump(mode="json")))


@dataclass(frozen=True)
class Catalog:
    """Every tenant environment of a catalog folder, in file-name order."""

    environments: list[CatalogFile]
    source_files: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def catalog_hash(self) -> str:
        """sha256 over all environments: equal catalogs, equal hash."""
        parts = sorted(
            [env.tenant_id, env.environment_id, environment_hash(env)] for env in self.environments
        )
        return sha256_text(canonical_json(parts))

    def source_file(self, catalog_file: CatalogFile) -> str:
        return self.source_files.get(catalog_file.key, "")


# -- YAML -------------------------------------------------------------------------------------
# libyaml parses ~10x faster; the resolvers and constructors below stay Python either way
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _CatalogLoader(_BaseLoader):
    """Safe YAML without YAML 1.1's silent surprises.

    `yes`/`no`/`on`/`off` stay text, `010` stays text (not octal eight), `1:30` stays text
    (not ninety), numbers with a point become exact Decimals (never binary floats), and a key
    given twice is an error. Everything read as a number or boolean here is also one for
    YAML 1.1, so files written by `yaml.safe_dump` read back unchanged.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable key: the base class reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_BOOL_TAG, _INT_TAG, _FLOAT_TAG = (f"tag:yaml.org,2002:{name}" for name in ("bool", "int", "float"))
_CatalogLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regex) for tag, regex in resolvers if tag not in (_BOOL_TAG, _INT_TAG, _FLOAT_TAG)
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_CatalogLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_CatalogLoader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789")
)
_CatalogLoader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+][0-9]+)?$"),
    list("-+0123456789."),
)
_CatalogLoader.add_constructor(
    _BOOL_TAG, lambda loader, node: loader.construct_scalar(node).lower() == "true"
)
_CatalogLoader.add_constructor(_INT_TAG, lambda loader, node: int(loader.construct_scalar(node)))
_CatalogLoader.add_constructor(
    _FLOAT_TAG, lambda loader, node: Decimal(loader.construct_scalar(node))
)


def _node_lines(node: yaml.Node, loc: Loc, lines: dict[Loc, int], depth: int = 0) -> None:
    lines.setdefault(loc, node.start_mark.line + 1)
    if depth > 32:  # anchors can make the node graph cyclic
        return
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                _node_lines(value_node, loc + (key_node.value,), lines, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item_node in enumerate(node.value):
            _node_lines(item_node, loc + (index,), lines, depth + 1)


def _line_of(loc: Loc, lines: Mapping[Loc, int]) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def parse_yaml(text: str) -> tuple[Any, dict[Loc, int]]:
    """Parse one YAML document; returns the data and the line of every field path."""
    loader = _CatalogLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines: dict[Loc, int] = {}
        _node_lines(node, (), lines)
        return loader.construct_document(node), lines
    finally:
        loader.dispose()


def _yaml_problem(file: str, exc: yaml.YAMLError) -> CatalogProblem:
    mark = getattr(exc, "problem_mark", None)
    detail = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"YAML error: {detail}" + (f" ({context})" if context else "")
    if mark is None:
        return CatalogProblem(file, "(file)", message)
    line = mark.line + 1
    return CatalogProblem(file, f"line {line}, column {mark.column + 1}", message, line)


_MESSAGE_PREFIXES = ("Value error, ", "Assertion failed, ")


def _error_message(error: Mapping[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field (not part of the catalog format)"
    if error["type"] == "missing":
        return "field required"
    message = str(error["msg"])
    for prefix in _MESSAGE_PREFIXES:
        message = message.removeprefix(prefix)
    return message


def _problems_from(
    file: str, exc: ValidationError, prefix: Loc, lines: Mapping[Loc, int]
) -> list[CatalogProblem]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = prefix + tuple(error["loc"])
        problems.append(
            CatalogProblem(file, format_loc(loc), _error_message(error), _line_of(loc, lines))
        )
    return problems


def _partial_view(data: Mapping[str, Any]) -> SectionView:
    """Validate each item on its own, so references can be checked beside broken items."""
    items: dict[str, list[Any]] = {}
    declared: dict[str, set[str]] = {}
    for section, (model, key) in SECTIONS.items():
        raw = data.get(section)
        raw_items = raw if isinstance(raw, list) else []
        items[section] = [_validated_or_none(model, item) for item in raw_items]
        declared[section] = {
            item[key]
            for item in raw_items
            if isinstance(item, dict) and isinstance(item.get(key), str)
        }
    return SectionView(items, declared)


def _validated_or_none(model: type[CatalogModel], item: Any) -> CatalogModel | None:
    try:
        return model.model_validate(item)
    except ValidationError:
        return None


def validate_catalog_data(
    data: Any, file: str, lines: Mapping[Loc, int] | None = None
) -> tuple[CatalogFile | None, list[CatalogProblem]]:
    """Validate parsed YAML of one file; returns the environment (or None) and all problems."""
    lines = lines or {}
    if not isinstance(data, dict):
        expected = "a mapping with tenant_id, environment_id, meters, features, prices, ..."
        found = "an empty file" if data is None else f"a {type(data).__name__}"
        return None, [CatalogProblem(file, "(file)", f"expected {expected}; found {found}", 1)]
    context = {SKIP_REFERENCE_CHECKS: True}
    try:
        catalog_file = CatalogFile.model_validate(data, context=context)
    except ValidationError as exc:
        problems = _problems_from(file, exc, (), lines)
        view = _partial_view(data)
        catalog_file = None
    else:
        problems = []
        view = SectionView.of_file(catalog_file)
    for loc, message in reference_issues(view):
        problems.append(CatalogProblem(file, format_loc(loc), message, _line_of(loc, lines)))
    problems.sort(key=lambda problem: (problem.line is None, problem.line or 0))
    return (None if problems else catalog_file), problems


def _read_catalog_file(path: Path) -> tuple[CatalogFile | None, list[CatalogProblem]]:
    file = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return None, [CatalogProblem(file, "(file)", f"not UTF-8 text: {exc.reason}")]
    except OSError as exc:
        return None, [CatalogProblem(file, "(file)", f"cannot read: {exc.strerror or exc}")]
    try:
        data, lines = parse_yaml(text)
    except yaml.YAMLError as exc:
        return None, [_yaml_problem(file, exc)]
    return validate_catalog_data(data, file, lines)


def load_catalog_file(path: str | Path) -> CatalogFile:
    """Load and validate one catalog file; raises CatalogError listing every problem."""
    catalog_file, problems = _read_catalog_file(Path(path))
    if problems or catalog_file is None:
        raise CatalogError(problems)
    return catalog_file


def catalog_files_in(folder: Path) -> list[Path]:
    """The catalog files of a folder: *.yaml and *.yml, sorted by name, hidden files skipped."""
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and path.suffix in (".yaml", ".yml") and not path.name.startswith(".")
    )


def _across_file_problems(loaded: Sequence[tuple[str, CatalogFile]]) -> list[CatalogProblem]:
    problems: list[CatalogProblem] = []
    owner_of_env: dict[tuple[str, str], str] = {}
    owner_of_key: dict[str, str] = {}
    for file, env in loaded:
        if env.key in owner_of_env:
            message = (
                f"environment {env.tenant_id}/{env.environment_id} is also defined in "
                f"{owner_of_env[env.key]}"
            )
            problems.append(CatalogProblem(file, "environment_id", message))
        owner_of_env.setdefault(env.key, file)
        for index, api_key in enumerate(env.api_keys):
            if api_key.key_sha256 in owner_of_key and owner_of_key[api_key.key_sha256] != file:
                message = f"the same key is also used in {owner_of_key[api_key.key_sha256]}"
                problems.append(CatalogProblem(file, f"api_keys[{index}].key_sha256", message))
            owner_of_key.setdefault(api_key.key_sha256, file)
    return problems


def load_catalog_dir(path: str | Path) -> Catalog:
    """Load every catalog file of a folder; raises CatalogError listing every problem."""
    folder = Path(path)
    if not folder.is_dir():
        raise CatalogError([CatalogProblem(str(folder), "(folder)", "not a folder")])
    files = catalog_files_in(folder)
    if not files:
        message = "no catalog files (*.yaml, *.yml) in this folder"
        raise CatalogError([CatalogProblem(str(folder), "(folder)", message)])
    problems: list[CatalogProblem] = []
    loaded: list[tuple[str, CatalogFile]] = []
    for file_path in files:
        catalog_file, file_problems = _read_catalog_file(file_path)
        problems += file_problems
        if catalog_file is not None:
            loaded.append((file_path.name, catalog_file))
    problems += _across_file_problems(loaded)
    if problems:
        raise CatalogError(problems)
    return Catalog(
        environments=[env for _, env in loaded],
        source_files={env.key: file for file, env in loaded},
    )
