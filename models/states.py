"""Merging per-minute usage states into the value of any minute-aligned range.

`fct_meter_usage_minutely` stores, per (meter, customer, group, minute), states that merge:
counts, sums, the maximum, the latest value with its ordering key, and the weighted-sum
moment. A window's value for every aggregation type follows from the states of its minutes
(plus the distinct values of COUNT_UNIQUE meters and, for WEIGHTED_SUM, the level carried in
from before the window). Pure Python and Decimal: the read API uses it on fetched states.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

# AVG and WEIGHTED_SUM are divisions: 34 significant digits, half away from zero.
DIVISION = decimal.Context(prec=34, rounding=decimal.ROUND_HALF_UP)
ZERO = Decimal(0)
MICROS = Decimal(1_000_000)


@dataclass(frozen=True)
class MinuteState:
    """One row of fct_meter_usage_minutely."""

    group_value: str
    minute_start: datetime
    event_count: int
    value_count: int
    text_count: int
    value_sum: Decimal | None
    value_max: Decimal | None
    weighted_moment_us: Decimal | None
    latest_timestamp: datetime | None
    latest_ingest_seq: int | None
    latest_event_id: str | None
    latest_value: Decimal | None


@dataclass(frozen=True)
class WindowValue:
    value: Decimal
    event_count: int


def contributing_events(aggregation_type: str, states: Iterable[MinuteState]) -> int:
    """Events that contributed (DESIGN 3b.4)."""
    if aggregation_type == "COUNT":
        return sum(s.event_count for s in states)
    if aggregation_type == "COUNT_UNIQUE":
        return sum(s.text_count for s in states)
    return sum(s.value_count for s in states)


def merge_simple(aggregation_type: str, states: Sequence[MinuteState]) -> Decimal:
    """COUNT, SUM, SUM_WITH_MULTIPLIER, AVG, MAX (unbucketed) and LATEST of some minutes."""
    valued = [s for s in states if s.value_count > 0]
    if aggregation_type == "COUNT":
        return Decimal(sum(s.event_count for s in states))
    if aggregation_type in ("SUM", "SUM_WITH_MULTIPLIER"):
        return sum((s.value_sum for s in valued), ZERO)
    if aggregation_type == "AVG":
        count = sum(s.value_count for s in valued)
        if count == 0:
            return ZERO
        return DIVISION.divide(sum((s.value_sum for s in valued), ZERO), Decimal(count))
    if aggregation_type == "MAX":
        return max((s.value_max for s in valued), default=ZERO)
    if aggregation_type == "LATEST":
        latest = max(
            (s for s in valued if s.latest_timestamp is not None),
            key=lambda s: (s.latest_timestamp, s.latest_ingest_seq, s.latest_event_id),
            default=None,
        )
        return latest.latest_value if latest else ZERO
    raise ValueError(f"merge_simple does not handle {aggregation_type}")


def merge_bucketed_max(
    states: Sequence[MinuteState], meter_bucket_of: dict[datetime, datetime]
) -> Decimal:
    """MAX with bucket_size: Σ over (meter bucket, group) of the maximum inside it.

    `meter_bucket_of` maps each minute to the start of its meter bucket (customer calendar).
    """
    maxima: dict[tuple[datetime, str], Decimal] = {}
    for s in states:
        if s.value_count == 0:
            continue
        key = (meter_bucket_of[s.minute_start], s.group_value)
        current = maxima.get(key)
        maxima[key] = s.value_max if current is None else max(current, s.value_max)
    return sum(maxima.values(), ZERO)


def count_distinct(values: Iterable[str]) -> Decimal:
    return Decimal(len(set(values)))


def weighted_integral_us(
    states: Sequence[MinuteState], start: datetime, end: datetime, level_at_start: Decimal
) -> Decimal:
    """∫ level dt over [start, end), in quantity × microseconds, for minutes inside it.

    The level starts at `level_at_start` and each minute's deltas (value_sum) are held from
    their event times to `end`: Σ delta × (end − t) = Σ value_sum × (end − minute) − moment.
    """
    total = level_at_start * _micros(end - start)
    for s in states:
        if s.value_count == 0:
            continue
        total += s.value_sum * _micros(end - s.minute_start) - s.weighted_moment_us
    return total


def weighted_value(
    states: Sequence[MinuteState],
    start: datetime,
    end: datetime,
    level_at_start: Decimal,
    reset_points: Sequence[datetime] = (),
) -> Decimal:
    """Time-weighted average level over [start, end), the level dropping to 0 at each reset."""
    length = _micros(end - start)
    if length == 0:
        return ZERO
    cuts = [start, *sorted(p for p in reset_points if start < p < end), end]
    level = level_at_start
    integral = ZERO
    for piece_start, piece_end in zip(cuts, cuts[1:], strict=False):
        if piece_start != start:
            level = ZERO
        inside = [s for s in states if piece_start <= s.minute_start < piece_end]
        integral += weighted_integral_us(inside, piece_start, piece_end, level)
        level += sum((s.value_sum for s in inside if s.value_count > 0), ZERO)
    return DIVISION.divide(integral, length)


def _micros(delta: timedelta) -> Decimal:
    return Decimal((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)
