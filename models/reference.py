"""The plain-Python reference of the metering semantics (DESIGN 3 and 3b).

This is the oracle that warehouse results are compared against in property-based tests, so
it favours the obvious over the fast: every rule is a small function over plain dataclasses.
Decimal arithmetic is exact (a 100-digit context that traps on any rounding); the only
roundings are the documented ones: AVG and WEIGHTED_SUM divide with 34 significant digits,
and a quantity times a multiplier is rounded half away from zero to 12 decimal places.

Decisions where DESIGN is silent:
- JSON booleans read as "true"/"false" in filters, group_by and COUNT_UNIQUE; JSON null is
  a missing value. Objects and arrays read as compact JSON with sorted keys for filters and
  group_by; COUNT_UNIQUE treats them as a QuantityError (it counts scalars).
- Filter values that are not strings are put in canonical form too (`5.0` -> "5"); a filter
  with an empty value list matches nothing. The meter's tenant and environment must match.
- A number (or numeric string) must fit decimal(38, 12) *before* the multiplier: at most 12
  fractional digits once trailing zeros are dropped, absolute value < 10**26. The product
  with the multiplier is rounded half away from zero to 12 places and must be < 10**26.
- `multiplier` applies to every value-based type when set (DESIGN: "multiplies the
  result"); SUM_WITH_MULTIPLIER without one uses 1. COUNT ignores it.
- MAX with `group_by` but without `bucket_size` takes the max per group over the window and
  sums the groups. `bucket_size` buckets use the same timezone and MONTH anchor as the
  windows unless `usage(..., bucket_tz=...)` says otherwise.
- WEIGHTED_SUM with reset_usage BILLING_PERIOD and no periods given resets at calendar
  months of the bucket timezone (DESIGN 3b.6). Before the first given period there is no
  reset. An event at a period start counts in the new period.

CEL expressions (`RefMeter.expression`) are evaluated by cel-python, the reference CEL
implementation, with integer literals promoted to doubles and these functions registered:
max, min (two or more arguments), pow, abs, ceil, floor, round (half away from zero), sqrt and
log (natural), plus checked `+ - * /` (division by zero or a result beyond the double range is
an error at that operation; CEL's `&&`, `||` and `?:` keep their error absorption). Every
property the expression names is read first, as a double: missing -> 0; a JSON number or a
numeric string (spaces around allowed; exponent of at most three digits) -> its double; null,
booleans, objects, arrays, other text and numbers beyond the double range -> a QuantityError,
even when the branch naming it is not taken. The result becomes a decimal from its shortest
repr, rounded half away from zero to 12 places (an error from 10**26 up); the multiplier
applies after. The expression is not validated here (models/cel.py does that at load time).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import (
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from functools import lru_cache
from typing import Any

import celpy
from celpy import celtypes
from celpy.evaluation import CELEvalError
from lark import Token

from models import windows

AGGREGATION_TYPES = (
    "COUNT",
    "SUM",
    "AVG",
    "COUNT_UNIQUE",
    "LATEST",
    "SUM_WITH_MULTIPLIER",
    "MAX",
    "WEIGHTED_SUM",
)

# Exact arithmetic: any result that would need rounding raises instead.
_EXACT = Context(prec=100, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
# AVG and WEIGHTED_SUM: 34 significant digits (decimal128), ties to even.
_DIVISION = Context(prec=34, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero])
# Quantity x multiplier is rounded to the scale of decimal(38, 12), half away from zero.
_SCALE = Decimal("1e-12")
_ROUNDING = Context(prec=100, rounding=ROUND_HALF_UP, traps=[InvalidOperation, Overflow])
_MAX_SCALE = 12
_LIMIT = Decimal(10) ** 26
_NUMERIC_TEXT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_ZERO = Decimal(0)
_ONE = Decimal(1)


# --------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class RefEvent:
    """One usage event, as ingested (timestamp aware; ingest_seq larger = ingested later)."""

    tenant_id: str
    environment_id: str
    event_id: str
    event_name: str
    external_customer_id: str
    timestamp: datetime
    properties: dict[str, Any]
    source: str | None = None
    ingest_seq: int = 0


@dataclass(frozen=True)
class RefMeter:
    """What a meter says about events: which match, what they contribute, how it adds up."""

    meter_id: str
    event_name: str
    aggregation_type: str
    field: str | None
    multiplier: Decimal | None
    bucket_size: str | None
    group_by: str | None
    filters: list[tuple[str, list[str]]] = dataclasses.field(default_factory=list)
    reset_usage: str = "BILLING_PERIOD"
    tenant_id: str = "t"
    environment_id: str = "e"
    expression: str | None = None  # CEL; replaces `field` for value-based types


@dataclass(frozen=True)
class QuantityError:
    """Why an event has no usable quantity for a meter (recorded, never turned into 0)."""

    reason: str


@dataclass(frozen=True)
class Point:
    """The value of one window bucket [start, end) that holds at least one contributing event."""

    start: datetime
    end: datetime
    value: Decimal
    event_count: int


@dataclass(frozen=True)
class UsageResult:
    """Usage over a range: the total (aggregated over the whole range) and the points."""

    total: Decimal
    event_count: int
    points: list[Point]


Quantity = Decimal | str | None | QuantityError
Contribution = tuple[RefEvent, Decimal | str]


# --------------------------------------------------------------------------------------------
# Events


def deduplicate(events: Iterable[RefEvent]) -> list[RefEvent]:
    """One event per (tenant, environment, event_id): the largest ingest_seq wins.

    On equal ingest_seq the later one in `events` wins. Winners keep their input order.
    """
    winners: dict[tuple[str, str, str], tuple[int, RefEvent]] = {}
    for position, event in enumerate(events):
        key = (event.tenant_id, event.environment_id, event.event_id)
        if key not in winners or event.ingest_seq >= winners[key][1].ingest_seq:
            winners[key] = (position, event)
    return [event for _, event in sorted(winners.values(), key=lambda item: item[0])]


def canonical_text(value: Any) -> str | None:
    """The string form of a property value used by filters, group_by and COUNT_UNIQUE.

    Strings as they are; booleans "true"/"false"; numbers in canonical decimal form (no
    exponent, no trailing zeros: 5, 5.0 and Decimal("5.00") are all "5"; -0 is "0");
    None (JSON null or absent) -> None; objects and arrays -> compact JSON, keys sorted.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        return decimal_text(Decimal(repr(value)))
    if isinstance(value, Decimal):
        if not value.is_finite():
            return "NaN" if value.is_nan() else ("Infinity" if value > 0 else "-Infinity")
        return decimal_text(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def decimal_text(value: Decimal) -> str:
    """Canonical text of a finite decimal (DESIGN 3b.11): "5", "1.5", "-0.25", never "1E+1"."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def event_matches(meter: RefMeter, event: RefEvent) -> bool:
    """DESIGN 3 meter matching: same tenant, environment and event_name, and every filter key
    present with its canonical text among the filter's values (OR within a key, AND across)."""
    if (event.tenant_id, event.environment_id, event.event_name) != (
        meter.tenant_id,
        meter.environment_id,
        meter.event_name,
    ):
        return False
    properties = event.properties or {}
    for key, values in meter.filters:
        text = canonical_text(properties.get(key))
        if text is None or text not in {canonical_text(v) for v in values}:
            return False
    return True


def event_quantity(meter: RefMeter, event: RefEvent) -> Quantity:
    """What one matching event contributes to the meter.

    COUNT -> 1. COUNT_UNIQUE -> the canonical text of the field (None when missing).
    Value-based types -> the field's decimal value times the multiplier, None when the field
    is missing (absent or null), or a QuantityError saying why the value is unusable.
    """
    kind = aggregation_name(meter.aggregation_type)
    if kind == "COUNT":
        return _ONE
    value: Decimal | None | QuantityError
    if meter.expression is not None:
        if kind == "COUNT_UNIQUE":
            raise ValueError(f"meter {meter.meter_id}: COUNT_UNIQUE cannot use an expression")
        value = cel_quantity(meter.expression, event.properties or {})
        if isinstance(value, QuantityError):
            return value
    else:
        if not meter.field:
            raise ValueError(f"meter {meter.meter_id}: {kind} needs aggregation.field")
        raw = (event.properties or {}).get(meter.field)
        if kind == "COUNT_UNIQUE":
            if isinstance(raw, dict | list):
                return QuantityError(f"{meter.field} is not a scalar value")
            return canonical_text(raw)
        value = parse_number(raw)
        if value is None or isinstance(value, QuantityError):
            return value
    multiplier = meter.multiplier
    if multiplier is None and kind == "SUM_WITH_MULTIPLIER":
        multiplier = _ONE
    if multiplier is None:
        return value
    product = _EXACT.multiply(value, Decimal(multiplier))
    if abs(product) < _LIMIT:
        product = product.quantize(_SCALE, context=_ROUNDING)
    if abs(product) >= _LIMIT:
        return QuantityError("out of range: value x multiplier does not fit decimal(38, 12)")
    return product


def parse_number(raw: Any) -> Decimal | None | QuantityError:
    """A property value as a decimal(38, 12) number; None when missing; else a QuantityError.

    Numbers are JSON numbers (int, float, Decimal; not bool) or numeric strings
    (surrounding whitespace allowed, exponents allowed).
    """
    if raw is None:
        return None
    if isinstance(raw, bool):
        return QuantityError("not a number: boolean")
    if isinstance(raw, int):
        value = Decimal(raw)
    elif isinstance(raw, float | Decimal):
        if not math.isfinite(raw):
            return QuantityError(f"not a number: {raw}")
        value = Decimal(repr(raw)) if isinstance(raw, float) else raw
    elif isinstance(raw, str):
        text = raw.strip()
        if not _NUMERIC_TEXT.match(text):
            return QuantityError(f"not a number: {raw[:50]!r}")
        value = Decimal(text)
    else:
        return QuantityError(f"not a number: {type(raw).__name__}")
    if abs(value) >= _LIMIT:
        return QuantityError("out of range: does not fit decimal(38, 12)")
    if _scale(value) > _MAX_SCALE:
        return QuantityError("too many decimal places: more than 12")
    return value


# --------------------------------------------------------------------------------------------
# CEL expressions


_CEL_NUMBER_TEXT = re.compile(r"[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]{1,3})?")
_MISSING = object()


def cel_quantity(expression: str, properties: dict[str, Any]) -> Decimal | QuantityError:
    """The quantity `expression` gives an event with these properties (before the multiplier)."""
    program, aliases = _cel_program(expression)
    activation: dict[str, celtypes.DoubleType] = {}
    for name, alias in aliases.items():
        value = cel_property_value(name, properties.get(name, _MISSING))
        if isinstance(value, QuantityError):
            return value
        activation[alias] = celtypes.DoubleType(value)
    try:
        result = program.evaluate(activation)
    except CELEvalError as error:
        return QuantityError(f"expression: {_cel_reason(error)}")
    if isinstance(result, CELEvalError):
        return QuantityError(f"expression: {_cel_reason(result)}")
    if isinstance(result, bool) or not isinstance(result, float):
        raise ValueError(f"{expression!r} computes {result!r}, not a number")
    number = Decimal(repr(float(result)))
    if abs(number) >= _LIMIT:
        return QuantityError("expression: result does not fit decimal(38, 12)")
    number = number.quantize(_SCALE, context=_ROUNDING)
    if abs(number) >= _LIMIT:
        return QuantityError("expression: result does not fit decimal(38, 12)")
    return number


def cel_property_value(name: str, raw: Any) -> float | QuantityError:
    """A property as a CEL expression reads it: a double, 0.0 when missing, else an error."""
    if raw is _MISSING:
        return 0.0
    if raw is None or isinstance(raw, bool | dict | list):
        kind = {type(None): "null", bool: "boolean", dict: "object", list: "array"}[type(raw)]
        return QuantityError(f"value of {name} is {kind}, not a number")
    if isinstance(raw, str):
        text = raw.strip(" ")
        if not _CEL_NUMBER_TEXT.fullmatch(text):
            return QuantityError(f"value of {name} is not a number: {raw[:60]!r}")
        raw = Decimal(text)
    if not isinstance(raw, int | float | Decimal):
        return QuantityError(f"value of {name} is not a number: {type(raw).__name__}")
    try:
        value = float(raw)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        return QuantityError(f"value of {name} is beyond the range of a double")
    return value


@lru_cache(maxsize=256)
def _cel_program(expression: str) -> tuple[celpy.Runner, dict[str, str]]:
    """cel-python's program for `expression` and the activation name of each property.

    Integer literals become double literals (Flexprice promotes them); identifiers are renamed
    so that no property name can collide with a name cel-python resolves itself (`google`).
    """
    environment = celpy.Environment()
    tree = environment.compile(expression)
    aliases: dict[str, str] = {}
    for node in tree.iter_subtrees_topdown():
        for index, child in enumerate(node.children):
            if not isinstance(child, Token):
                continue
            if child.type == "INT_LIT":
                value = float(int(str(child), 0))
                node.children[index] = Token("FLOAT_LIT", repr(value))
            elif child.type == "IDENT" and node.data == "ident":
                alias = aliases.setdefault(str(child), f"p{len(aliases)}__")
                node.children[index] = Token("IDENT", alias)
    return environment.program(tree, functions=_CEL_FUNCTIONS), aliases


def _cel_reason(error: CELEvalError) -> str:
    cause = error.__cause__
    if cause is not None and cause.args:
        return str(cause.args[0])
    if len(error.args) > 2 and error.args[2]:
        return str(error.args[2][0])
    return str(error.args[0]) if error.args else "error"


def _cel_double(value: float, what: str) -> celtypes.DoubleType:
    if not math.isfinite(value):
        raise ValueError(f"{what} is beyond the range of a double")
    return celtypes.DoubleType(value)


def _cel_numbers(function: Callable[..., float], what: str) -> Callable[..., Any]:
    """A CEL function over doubles: errors in arguments pass through, failures are errors."""

    def apply(*args: Any) -> Any:
        for arg in args:
            if isinstance(arg, CELEvalError):
                return arg
        try:
            return _cel_double(function(*(float(arg) for arg in args)), what)
        except (ArithmeticError, ValueError) as error:
            raise ValueError(f"{what}: {error}") from None

    return apply


def _cel_divide(left: float, right: float) -> float:
    if right == 0.0:
        raise ValueError("division by zero")
    return left / right


def _cel_round(value: float) -> float:
    """Half away from zero: -0.5 -> -1, 2.5 -> 3, 0.49999999999999994 -> 0."""
    whole = math.floor(abs(value))
    if abs(value) - whole >= 0.5:
        whole += 1
    return math.copysign(float(whole), value)


def _cel_sqrt(value: float) -> float:
    if value < 0:
        raise ValueError("negative argument")
    return math.sqrt(value)


def _cel_log(value: float) -> float:
    if value <= 0:
        raise ValueError("argument not positive")
    return math.log(value)


_CEL_FUNCTIONS: dict[str, Any] = {
    "_+_": _cel_numbers(lambda a, b: a + b, "'+'"),
    "_-_": _cel_numbers(lambda a, b: a - b, "'-'"),
    "_*_": _cel_numbers(lambda a, b: a * b, "'*'"),
    "_/_": _cel_numbers(_cel_divide, "'/'"),
    "max": _cel_numbers(lambda *args: max(args), "max()"),
    "min": _cel_numbers(lambda *args: min(args), "min()"),
    "pow": _cel_numbers(math.pow, "pow()"),
    "abs": _cel_numbers(abs, "abs()"),
    "ceil": _cel_numbers(lambda a: float(math.ceil(a)), "ceil()"),
    "floor": _cel_numbers(lambda a: float(math.floor(a)), "floor()"),
    "round": _cel_numbers(_cel_round, "round()"),
    "sqrt": _cel_numbers(_cel_sqrt, "sqrt()"),
    "log": _cel_numbers(_cel_log, "log()"),
}


def _scale(value: Decimal) -> int:
    """Fractional digits of `value` once trailing zeros are dropped ("1.50" -> 1, "1E+2" -> 0)."""
    if value == 0:
        return 0
    _, digits, exponent = value.as_tuple()
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + trailing_zeros))


# --------------------------------------------------------------------------------------------
# Aggregation


def aggregation_name(aggregation_type: str) -> str:
    """The canonical name of an aggregation type (accepts str enums)."""
    for name in AGGREGATION_TYPES:
        if aggregation_type == name:
            return name
    raise ValueError(f"unknown aggregation type {aggregation_type!r}")


def usable(contributions: Iterable[tuple[RefEvent, Quantity]]) -> list[Contribution]:
    """The contributions that carry a value (drops None and QuantityError)."""
    return [
        (event, quantity)
        for event, quantity in contributions
        if quantity is not None and not isinstance(quantity, QuantityError)
    ]


def aggregate(
    meter_type: str, contributions: Iterable[tuple[RefEvent, Quantity]]
) -> tuple[Decimal, int]:
    """(value, event_count) of one window, per the DESIGN 3 table; an empty window is 0.

    `contributions` are (event, event_quantity) pairs; those without a value are ignored.
    WEIGHTED_SUM depends on time, not just on the events: see `usage`.
    """
    kind = aggregation_name(meter_type)
    if kind == "WEIGHTED_SUM":
        raise ValueError("WEIGHTED_SUM needs a time range: use usage()")
    items = usable(contributions)
    if kind == "COUNT":
        distinct = {(e.tenant_id, e.environment_id, e.event_id) for e, _ in items}
        return Decimal(len(distinct)), len(distinct)
    if not items:
        return _ZERO, 0
    values = [quantity for _, quantity in items]
    if kind in ("SUM", "SUM_WITH_MULTIPLIER"):
        return _sum(values), len(items)
    if kind == "AVG":
        return _DIVISION.divide(_sum(values), Decimal(len(values))), len(items)
    if kind == "MAX":
        return max(values), len(items)
    if kind == "LATEST":
        _, latest = max(items, key=lambda item: latest_order(item[0]))
        return latest, len(items)
    return Decimal(len(set(values))), len(items)  # COUNT_UNIQUE


def latest_order(event: RefEvent) -> tuple[datetime, int, str]:
    """LATEST picks the largest: later timestamp, then later ingestion, then larger event_id."""
    return (event.timestamp, event.ingest_seq, event.event_id)


def bucketed_max(
    contributions: Iterable[tuple[RefEvent, Quantity]],
    bucket_size: str | None,
    group_by: str | None,
    tz: str,
    anchor: datetime | None = None,
) -> tuple[Decimal, int]:
    """MAX with bucket_size/group_by: Σ over (bucket_size bucket, group value) of the max.

    Buckets are in `tz`; a missing group value is "". Without bucket_size the whole window is
    one bucket.
    """
    items = usable(contributions)
    maxima: dict[tuple[datetime | None, str], Decimal] = {}
    for event, quantity in items:
        bucket = None
        if bucket_size:
            bucket = windows.bucket_start(event.timestamp, bucket_size, tz, anchor)
        key = (bucket, group_value(event, group_by) if group_by else "")
        maxima[key] = max(maxima[key], quantity) if key in maxima else quantity
    return _sum(maxima.values()), len(items)


def group_value(event: RefEvent, key: str) -> str:
    """The group_by / dimension value of an event: the canonical text, "" when missing."""
    return canonical_text((event.properties or {}).get(key)) or ""


def _sum(values: Iterable[Decimal]) -> Decimal:
    total = _ZERO
    for value in values:
        total = _EXACT.add(total, value)
    return total


# --------------------------------------------------------------------------------------------
# Usage over a range


def usage(
    meter: RefMeter,
    events: Iterable[RefEvent],
    start: datetime,
    end: datetime,
    window: str | None,
    tz: str,
    anchor: datetime | None = None,
    billing_periods: list[tuple[datetime, datetime]] | None = None,
    *,
    bucket_tz: str | None = None,
) -> UsageResult:
    """The meter's usage over [start, end) for one customer's deduplicated events.

    Points are the `window` buckets (in `tz`, MONTH at `anchor`) holding at least one
    contributing event, in order; no points when `window` is None. The total aggregates the
    whole range (it is not the sum of the points for non-additive types). `billing_periods`
    are only used by WEIGHTED_SUM resets; `bucket_tz` (default `tz`) is the timezone of
    bucket_size buckets and of the default WEIGHTED_SUM billing periods (the customer's).
    """
    kind = aggregation_name(meter.aggregation_type)
    bucket_tz = bucket_tz or tz
    matching = [(e, event_quantity(meter, e)) for e in events if event_matches(meter, e)]
    contributions = sorted(usable(matching), key=lambda item: item[0].timestamp)
    in_range = [(e, q) for e, q in contributions if start <= e.timestamp < end]

    if kind == "WEIGHTED_SUM":
        curve = _weighted_sum_curve(meter, contributions, start, end, bucket_tz, billing_periods)
        total = curve.mean(start, end)
        points = [
            Point(b_start, b_end, curve.mean(max(b_start, start), min(b_end, end)), len(items))
            for (b_start, b_end), items in _by_bucket(in_range, window, tz, anchor)
        ]
        return UsageResult(total, len(in_range), points)

    measure: Callable[[list[Contribution]], tuple[Decimal, int]]
    if kind == "MAX" and (meter.bucket_size or meter.group_by):

        def measure(items: list[Contribution]) -> tuple[Decimal, int]:
            return bucketed_max(items, meter.bucket_size, meter.group_by, bucket_tz, anchor)

    else:

        def measure(items: list[Contribution]) -> tuple[Decimal, int]:
            return aggregate(kind, items)

    total, count = measure(in_range)
    points = [
        Point(b_start, b_end, *measure(items))
        for (b_start, b_end), items in _by_bucket(in_range, window, tz, anchor)
    ]
    return UsageResult(total, count, points)


def _by_bucket(
    contributions: list[Contribution], window: str | None, tz: str, anchor: datetime | None
) -> list[tuple[tuple[datetime, datetime], list[Contribution]]]:
    """Contributions grouped by their `window` bucket [start, end), buckets in order."""
    if window is None:
        return []
    groups: dict[datetime, list[Contribution]] = defaultdict(list)
    for event, quantity in contributions:
        groups[windows.bucket_start(event.timestamp, window, tz, anchor)].append((event, quantity))
    return [
        ((b_start, windows.next_bucket_start(b_start, window, tz, anchor)), groups[b_start])
        for b_start in sorted(groups)
    ]


# --------------------------------------------------------------------------------------------
# WEIGHTED_SUM (DESIGN 3b.6)


class LevelCurve:
    """A running level over time: deltas add at their instant, resets set it back to 0.

    The level at t includes every delta at or before t since the latest reset at or before t
    (a reset and a delta at the same instant: the reset first). Before anything it is 0.
    Integrals are exact; `mean` divides with 34 significant digits.
    """

    def __init__(self, deltas: Iterable[tuple[datetime, Decimal]], resets: Iterable[datetime]):
        changes = sorted(
            [(t, 0, _ZERO) for t in resets] + [(t, 1, amount) for t, amount in deltas],
            key=lambda change: change[:2],
        )
        self._times: list[datetime] = []
        self._levels: list[Decimal] = []  # level from self._times[i] to the next change
        self._areas: list[Decimal] = []  # ∫ level dt from the first change to self._times[i]
        level = area = _ZERO
        for time, kind, amount in changes:
            if self._times:
                area = _EXACT.add(area, _EXACT.multiply(level, seconds(time - self._times[-1])))
            level = _ZERO if kind == 0 else _EXACT.add(level, amount)
            if self._times and self._times[-1] == time:
                self._levels[-1] = level
            else:
                self._times.append(time)
                self._levels.append(level)
                self._areas.append(area)

    def level_at(self, t: datetime) -> Decimal:
        index = bisect_right(self._times, t) - 1
        return self._levels[index] if index >= 0 else _ZERO

    def integral_to(self, t: datetime) -> Decimal:
        """∫ level dt from before the first change up to `t` (in level × seconds)."""
        index = bisect_right(self._times, t) - 1
        if index < 0:
            return _ZERO
        since = _EXACT.multiply(self._levels[index], seconds(t - self._times[index]))
        return _EXACT.add(self._areas[index], since)

    def mean(self, lo: datetime, hi: datetime) -> Decimal:
        """∫ level dt over [lo, hi) / (hi - lo); 0 for an empty interval."""
        if hi <= lo:
            return _ZERO
        area = _EXACT.subtract(self.integral_to(hi), self.integral_to(lo))
        return _DIVISION.divide(area, seconds(hi - lo))


def seconds(duration: timedelta) -> Decimal:
    """A duration in seconds as an exact decimal (microsecond resolution)."""
    with localcontext(_EXACT):
        return Decimal(duration // timedelta(microseconds=1)).scaleb(-6)


def _weighted_sum_curve(
    meter: RefMeter,
    contributions: list[Contribution],
    start: datetime,
    end: datetime,
    tz: str,
    billing_periods: list[tuple[datetime, datetime]] | None,
) -> LevelCurve:
    """The level curve of a WEIGHTED_SUM meter from all the customer's usable events."""
    deltas = [(e.timestamp, q) for e, q in contributions if e.timestamp < end]
    resets: list[datetime] = []
    if meter.reset_usage != "NEVER":
        if billing_periods is None:
            earliest = min([start, *(t for t, _ in deltas)])
            billing_periods = windows.billing_periods(None, tz, earliest, end)
        resets = [period_start for period_start, _ in billing_periods]
    return LevelCurve(deltas, resets)


__all__ = [
    "AGGREGATION_TYPES",
    "LevelCurve",
    "Point",
    "QuantityError",
    "RefEvent",
    "RefMeter",
    "UsageResult",
    "aggregate",
    "aggregation_name",
    "bucketed_max",
    "canonical_text",
    "cel_property_value",
    "cel_quantity",
    "decimal_text",
    "deduplicate",
    "event_matches",
    "event_quantity",
    "group_value",
    "latest_order",
    "parse_number",
    "seconds",
    "usable",
    "usage",
]
