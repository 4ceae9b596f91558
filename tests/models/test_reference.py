"""Tests for models/reference.py, the plain-Python oracle of DESIGN 3.

Every expected number below is worked out by hand in the comment next to it.
"""

from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.reference import (
    LevelCurve,
    Point,
    QuantityError,
    RefEvent,
    RefMeter,
    aggregate,
    bucketed_max,
    canonical_text,
    decimal_text,
    deduplicate,
    event_matches,
    event_quantity,
    usage,
)

D = Decimal
NY = "America/New_York"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def event(event_id: str, ts: datetime, seq: int = 0, name: str = "api_request", **props):
    return RefEvent("t", "e", event_id, name, "cust_1", ts, props, None, seq)


def meter(kind: str, field: str | None = "value", **options) -> RefMeter:
    defaults = {"multiplier": None, "bucket_size": None, "group_by": None, "filters": []}
    defaults.update(options)
    return RefMeter(
        "mtr",
        "api_request",
        kind,
        field,
        defaults.pop("multiplier"),
        defaults.pop("bucket_size"),
        defaults.pop("group_by"),
        defaults.pop("filters"),
        **defaults,
    )


def contributions(m: RefMeter, events: list[RefEvent]):
    return [(e, event_quantity(m, e)) for e in events]


# --------------------------------------------------------------------------------------------
# Dedup, canonical text, matching


def test_deduplicate_keeps_the_latest_ingestion_per_id():
    a1 = event("a", utc(2024, 1, 1), seq=1, value=1)
    a3 = event("a", utc(2024, 1, 2), seq=3, value=3)
    a2 = event("a", utc(2024, 1, 3), seq=2, value=2)
    b = event("b", utc(2024, 1, 1), seq=0)
    other_env = RefEvent("t", "e2", "a", "api_request", "cust_1", utc(2024, 1, 1), {}, None, 0)
    assert deduplicate([a1, a3, b, a2, other_env]) == [a3, b, other_env]
    assert deduplicate([]) == []


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("5.0", "5.0"),
        ("", ""),
        (5, "5"),
        (5.0, "5"),
        (D("5.000"), "5"),
        (D("1E+3"), "1000"),
        (-0.0, "0"),
        (D("-0.00"), "0"),
        (0.1, "0.1"),
        (1e20, "100000000000000000000"),
        (1.5e-7, "0.00000015"),
        (-12.50, "-12.5"),
        (True, "true"),
        (False, "false"),
        (None, None),
        ({"b": 1, "a": [1, "x"]}, '{"a":[1,"x"],"b":1}'),
    ],
)
def test_canonical_text(value, text):
    assert canonical_text(value) == text


def test_decimal_text_has_no_exponent_and_no_trailing_zeros():
    assert decimal_text(D("2.50")) == "2.5"
    assert decimal_text(D("1E+2")) == "100"
    assert decimal_text(D("0E-12")) == "0"
    assert decimal_text(D("-1.000000000001")) == "-1.000000000001"


def test_event_matches_filters():
    m = meter("COUNT", None, filters=[("method", ["GET", "POST"]), ("status", ["200"])])
    ts = utc(2024, 1, 1)
    assert event_matches(m, event("1", ts, method="GET", status=200))
    assert event_matches(m, event("2", ts, method="POST", status="200"))
    assert event_matches(m, event("3", ts, method="POST", status=200.0))  # canonical "200"
    assert not event_matches(m, event("4", ts, method="PUT", status=200))
    assert not event_matches(m, event("5", ts, method="GET"))  # missing key never matches
    assert not event_matches(m, event("6", ts, method="GET", status=None))  # null is missing
    assert not event_matches(m, event("7", ts, name="other", method="GET", status=200))
    assert not event_matches(m, event("8", ts, method="GET", status="200.0"))  # a string as is
    other_tenant = RefEvent("t2", "e", "9", "api_request", "c", ts, {"method": "GET"}, None, 0)
    assert not event_matches(meter("COUNT", None), other_tenant)
    assert event_matches(meter("COUNT", None), event("10", ts))  # no filters


def test_event_matches_booleans_and_numeric_filter_values():
    ts = utc(2024, 1, 1)
    flag = meter("COUNT", None, filters=[("beta", ["true"])])
    assert event_matches(flag, event("1", ts, beta=True))
    assert not event_matches(flag, event("2", ts, beta=False))
    numeric = meter("COUNT", None, filters=[("tier", [5.0])])  # YAML number
    assert event_matches(numeric, event("3", ts, tier="5"))
    assert not event_matches(meter("COUNT", None, filters=[("tier", [])]), event("4", ts, tier=5))


# --------------------------------------------------------------------------------------------
# Quantities


@pytest.mark.parametrize(
    ("raw", "quantity"),
    [
        (3, D(3)),
        (2.5, D("2.5")),
        (D("0.000000000001"), D("0.000000000001")),
        ("  42 ", D(42)),
        ("-1.5", D("-1.5")),  # negatives are kept
        ("+.5", D("0.5")),
        ("7.", D(7)),
        ("1e3", D(1000)),
        ("1.5E-2", D("0.015")),
        ("1.000000000000000000", D(1)),  # trailing zeros do not count as decimals
        ("99999999999999999999999999.5e-1", D("9999999999999999999999999.95")),
    ],
)
def test_event_quantity_numbers(raw, quantity):
    q = event_quantity(meter("SUM"), event("1", utc(2024, 1, 1), value=raw))
    assert isinstance(q, Decimal) and q == quantity


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (True, "not a number"),
        ("abc", "not a number"),
        ("1,5", "not a number"),
        ("", "not a number"),
        ("NaN", "not a number"),
        ("Infinity", "not a number"),
        (float("nan"), "not a number"),
        (float("inf"), "not a number"),
        ({"a": 1}, "not a number"),
        ([1, 2], "not a number"),
        ("0.0000000000001", "too many decimal places"),
        (1e-13, "too many decimal places"),
        (10**26, "out of range"),
        ("-1e26", "out of range"),
    ],
)
def test_event_quantity_errors(raw, reason):
    q = event_quantity(meter("SUM"), event("1", utc(2024, 1, 1), value=raw))
    assert isinstance(q, QuantityError) and q.reason.startswith(reason)


def test_event_quantity_missing_field_has_no_value():
    ts = utc(2024, 1, 1)
    assert event_quantity(meter("SUM"), event("1", ts)) is None
    assert event_quantity(meter("MAX"), event("2", ts, value=None)) is None
    assert event_quantity(meter("COUNT_UNIQUE"), event("3", ts)) is None


def test_event_quantity_count_and_multiplier():
    ts = utc(2024, 1, 1)
    assert event_quantity(meter("COUNT", None), event("1", ts, value="junk")) == 1
    swm = meter("SUM_WITH_MULTIPLIER", multiplier=D("0.5"))
    assert event_quantity(swm, event("2", ts, value="3")) == D("1.5")
    assert event_quantity(meter("SUM", multiplier=D(2)), event("3", ts, value=4)) == 8
    # 0.000000000001 * 0.5 = 5E-13 -> 12 places, half away from zero -> 0.000000000001
    tiny = event_quantity(swm, event("4", ts, value="0.000000000001"))
    assert tiny == D("0.000000000001")
    assert isinstance(event_quantity(swm, event("5", ts, value=True)), QuantityError)
    big = meter("SUM", multiplier=D(1000))
    assert event_quantity(big, event("6", ts, value=D("1e23"))).reason.startswith("out of range")


def test_event_quantity_count_unique_uses_text():
    m = meter("COUNT_UNIQUE", "user")
    ts = utc(2024, 1, 1)
    assert event_quantity(m, event("1", ts, user="u1")) == "u1"
    assert event_quantity(m, event("2", ts, user=5.0)) == "5"
    assert event_quantity(m, event("3", ts, user=True)) == "true"
    assert isinstance(event_quantity(m, event("4", ts, user={"id": 1})), QuantityError)


# --------------------------------------------------------------------------------------------
# Aggregation of one window


def _window(values: list, kind: str = "SUM", field: str = "value"):
    m = meter(kind, field)
    events = [event(f"e{i}", utc(2024, 1, 1, i), seq=i, **{field: v}) for i, v in enumerate(values)]
    return aggregate(kind, contributions(m, events))


def test_aggregate_each_type_by_hand():
    values = [3, "4.5", None, -1, "bad", 4.5]
    # usable values 3, 4.5, -1, 4.5 (missing and bad contribute nothing)
    assert _window(values, "SUM") == (D("11"), 4)
    assert _window(values, "SUM_WITH_MULTIPLIER") == (D("11"), 4)
    assert _window(values, "AVG") == (D("2.75"), 4)  # 11 / 4
    assert _window(values, "MAX") == (D("4.5"), 4)
    assert _window(values, "LATEST") == (D("4.5"), 4)  # e5 at 05:00 is the latest
    assert _window(values, "COUNT_UNIQUE") == (D(4), 5)  # "3","4.5","-1","bad"; "4.5" twice
    assert _window(values, "COUNT") == (D(6), 6)  # every matching event


def test_aggregate_empty_window_is_zero():
    for kind in ("COUNT", "SUM", "AVG", "MAX", "LATEST", "COUNT_UNIQUE", "SUM_WITH_MULTIPLIER"):
        assert aggregate(kind, []) == (D(0), 0)
    assert _window([None, "x"], "MAX") == (D(0), 0)


def test_aggregate_negative_max_and_latest():
    assert _window([-5, -2, -9], "MAX") == (D(-2), 3)
    assert _window([-5, -2, -9], "LATEST") == (D(-9), 3)


def test_avg_divides_with_34_digits():
    value, count = _window([1, 0, 0], "AVG")
    assert count == 3
    assert value == Context(prec=34).divide(D(1), D(3))
    assert str(value) == "0." + "3" * 34


def test_latest_ties_break_on_ingestion_then_event_id():
    m = meter("LATEST")
    ts = utc(2024, 1, 1, 12)
    events = [
        event("a", ts, seq=5, value=1),
        event("b", ts, seq=7, value=2),  # same timestamp, later ingestion wins
        event("c", ts - timedelta(seconds=1), seq=99, value=3),
    ]
    assert aggregate("LATEST", contributions(m, events)) == (D(2), 3)
    tie = [
        event("a", ts, seq=7, value=1),
        event("b", ts, seq=7, value=2),
        event("ab", ts, seq=7, value=3),
    ]
    assert aggregate("LATEST", contributions(m, tie)) == (D(2), 3)  # "b" > "ab" > "a"


def test_count_unique_numbers_and_strings_are_one_value():
    assert _window(["5", 5, 5.0, D("5.00")], "COUNT_UNIQUE") == (D(1), 4)
    assert _window(["5", "5.0"], "COUNT_UNIQUE") == (D(2), 2)  # strings stay as sent
    assert _window([True, "true", 1], "COUNT_UNIQUE") == (D(2), 3)


def test_count_counts_distinct_events():
    m = meter("COUNT", None)
    e = event("a", utc(2024, 1, 1))
    assert aggregate("COUNT", [(e, event_quantity(m, e)), (e, event_quantity(m, e))]) == (D(1), 1)


def test_weighted_sum_cannot_be_aggregated_without_time():
    with pytest.raises(ValueError):
        aggregate("WEIGHTED_SUM", [])


# --------------------------------------------------------------------------------------------
# Usage over a range


def test_usage_points_and_totals():
    m = meter("SUM")
    events = [
        event("1", utc(2024, 1, 1, 23, 30), value=1),  # before the range
        event("2", utc(2024, 1, 2, 0, 0), value=2),  # at start: included
        event("3", utc(2024, 1, 2, 10), value=3),
        event("4", utc(2024, 1, 4, 8), value=4),  # Jan 3 has no events: no point
        event("5", utc(2024, 1, 4, 9), value="x"),  # error: no contribution
        event("6", utc(2024, 1, 5, 0, 0), value=5),  # at end: excluded
        event("7", utc(2024, 1, 4, 9), name="other", value=100),  # another meter
    ]
    result = usage(m, events, utc(2024, 1, 2), utc(2024, 1, 5), "DAY", "UTC")
    assert result.total == 9 and result.event_count == 3
    assert result.points == [
        Point(utc(2024, 1, 2), utc(2024, 1, 3), D(5), 2),
        Point(utc(2024, 1, 4), utc(2024, 1, 5), D(4), 1),
    ]
    assert usage(m, events, utc(2024, 1, 2), utc(2024, 1, 5), None, "UTC").points == []
    empty = usage(m, events, utc(2024, 2, 1), utc(2024, 3, 1), "DAY", "UTC")
    assert (empty.total, empty.event_count, empty.points) == (D(0), 0, [])


def test_usage_points_use_the_timezone_and_may_start_before_the_range():
    m = meter("COUNT", None)
    events = [event("1", utc(2024, 1, 2, 4)), event("2", utc(2024, 1, 2, 6))]
    result = usage(m, events, utc(2024, 1, 2, 3), utc(2024, 1, 3), "DAY", NY)
    # 04:00Z is Jan 1 23:00 in New York, 06:00Z is Jan 2 01:00
    assert [(p.start, p.end, p.value) for p in result.points] == [
        (utc(2024, 1, 1, 5), utc(2024, 1, 2, 5), D(1)),
        (utc(2024, 1, 2, 5), utc(2024, 1, 3, 5), D(1)),
    ]


def test_usage_total_is_not_the_sum_of_points_for_non_additive_types():
    events = [
        event("1", utc(2024, 1, 1, 1), value=4, user="a"),
        event("2", utc(2024, 1, 2, 1), value=6, user="a"),
        event("3", utc(2024, 1, 2, 2), value=2, user="b"),
    ]
    span = (utc(2024, 1, 1), utc(2024, 1, 3))
    by_day = {
        kind: usage(
            meter(kind, "user" if kind == "COUNT_UNIQUE" else "value"), events, *span, "DAY", "UTC"
        )
        for kind in ("MAX", "AVG", "LATEST", "COUNT_UNIQUE")
    }
    assert by_day["MAX"].total == 6 and [p.value for p in by_day["MAX"].points] == [4, 6]
    assert by_day["AVG"].total == 4 and [p.value for p in by_day["AVG"].points] == [4, 4]
    assert by_day["LATEST"].total == 2 and [p.value for p in by_day["LATEST"].points] == [4, 2]
    unique = by_day["COUNT_UNIQUE"]
    assert unique.total == 2 and [p.value for p in unique.points] == [1, 2]


def test_max_bucketed_with_group_by():
    m = meter("MAX", bucket_size="HOUR", group_by="region")
    events = [
        event("1", utc(2024, 1, 1, 10, 5), value=5, region="us"),
        event("2", utc(2024, 1, 1, 10, 20), value=7, region="us"),
        event("3", utc(2024, 1, 1, 10, 30), value=3, region="eu"),
        event("4", utc(2024, 1, 1, 11, 10), value=2, region="us"),
        event("5", utc(2024, 1, 1, 11, 50), value=4),  # no region: group ""
        event("6", utc(2024, 1, 1, 11, 55), value=1, region=""),  # same group as missing
    ]
    result = usage(m, events, utc(2024, 1, 1), utc(2024, 1, 2), "HOUR", "UTC")
    # 10:00: us 7 + eu 3 = 10; 11:00: us 2 + "" 4 = 6; the day: 16
    assert result.total == 16 and result.event_count == 6
    assert [(p.start.hour, p.value, p.event_count) for p in result.points] == [
        (10, 10, 3),
        (11, 6, 3),
    ]
    # a range cutting a bucket keeps the max of the part inside it: 10:25-11:30 -> eu 3 + us 2
    cut = usage(m, events, utc(2024, 1, 1, 10, 25), utc(2024, 1, 1, 11, 30), None, "UTC")
    assert cut.total == 5
    assert usage(meter("MAX"), events, utc(2024, 1, 1), utc(2024, 1, 2), None, "UTC").total == 7


def test_max_bucket_size_uses_the_bucket_timezone():
    events = [event("1", utc(2024, 1, 2, 3), value=5), event("2", utc(2024, 1, 2, 6), value=3)]
    contributions_ = contributions(meter("MAX"), events)
    assert bucketed_max(contributions_, "DAY", None, "UTC") == (D(5), 2)  # one UTC day
    assert bucketed_max(contributions_, "DAY", None, NY) == (D(8), 2)  # Jan 1 and Jan 2 in NY
    m = meter("MAX", bucket_size="DAY")
    span = (utc(2024, 1, 1), utc(2024, 1, 3))
    assert usage(m, events, *span, "DAY", "UTC", bucket_tz=NY).total == 8
    assert usage(m, events, *span, "DAY", "UTC").total == 5


def test_max_group_by_without_bucket_size_sums_group_maxima():
    m = meter("MAX", group_by="region")
    events = [
        event("1", utc(2024, 1, 1, 1), value=5, region="us"),
        event("2", utc(2024, 1, 1, 2), value=2, region="eu"),
        event("3", utc(2024, 1, 1, 3), value=4, region="us"),
    ]
    assert usage(m, events, utc(2024, 1, 1), utc(2024, 1, 2), None, "UTC").total == 7


# --------------------------------------------------------------------------------------------
# WEIGHTED_SUM


WS_EVENTS = [
    event("1", utc(2023, 12, 31, 12), value=10),  # before the range: level 10
    event("2", utc(2024, 1, 1, 12), value=4),  # level 14
    event("3", utc(2024, 1, 2, 6), value=2),  # after the reset at Jan 2 00:00: level 2
    event("4", utc(2024, 1, 2, 18), value=-1),  # level 1
]
WS_PERIODS = [(utc(2023, 12, 2), utc(2024, 1, 2)), (utc(2024, 1, 2), utc(2024, 2, 2))]


def test_weighted_sum_with_a_reset_inside_the_range():
    m = meter("WEIGHTED_SUM")
    result = usage(m, WS_EVENTS, utc(2024, 1, 1), utc(2024, 1, 3), "DAY", "UTC", None, WS_PERIODS)
    # Jan 1: 12 h at 10 + 12 h at 14 = 288 level-hours / 24 = 12
    # Jan 2: 6 h at 0 + 12 h at 2 + 6 h at 1 = 30 / 24 = 1.25
    # total: (288 + 30) / 48 = 6.625
    assert result.total == D("6.625") and result.event_count == 3
    assert [(p.start, p.value, p.event_count) for p in result.points] == [
        (utc(2024, 1, 1), D(12), 1),
        (utc(2024, 1, 2), D("1.25"), 2),
    ]


def test_weighted_sum_without_reset():
    m = meter("WEIGHTED_SUM", reset_usage="NEVER")
    result = usage(m, WS_EVENTS, utc(2024, 1, 1), utc(2024, 1, 3), "DAY", "UTC", None, WS_PERIODS)
    # Jan 2: 6 h at 14 + 12 h at 16 + 6 h at 15 = 366 / 24 = 15.25; total (288 + 366) / 48
    assert [p.value for p in result.points] == [D(12), D("15.25")]
    assert result.total == D("13.625")


def test_weighted_sum_points_are_clipped_to_the_range():
    m = meter("WEIGHTED_SUM")
    start, end = utc(2024, 1, 1, 6), utc(2024, 1, 2, 12)
    result = usage(m, WS_EVENTS, start, end, "DAY", "UTC", None, WS_PERIODS)
    # Jan 1 06:00-24:00: 6 h at 10 + 12 h at 14 = 228 / 18 ; Jan 2 00:00-12:00: 6 h at 2 = 12 / 12
    assert [p.value for p in result.points] == [Context(prec=34).divide(D(228), D(18)), D(1)]
    assert result.points[0].start == utc(2024, 1, 1)  # the bucket itself is not clipped
    # total: (228 + 12) / 30 = 8
    assert result.total == D(8)


def test_weighted_sum_total_without_events_in_the_range():
    m = meter("WEIGHTED_SUM")
    result = usage(m, WS_EVENTS, utc(2024, 1, 3), utc(2024, 1, 4), "DAY", "UTC", None, WS_PERIODS)
    assert (result.total, result.event_count, result.points) == (D(1), 0, [])
    after_reset = usage(
        m, WS_EVENTS, utc(2024, 2, 3), utc(2024, 2, 4), "DAY", "UTC", None, WS_PERIODS
    )
    assert after_reset.total == 1  # no period starts after Feb 2 in the list given


def test_weighted_sum_defaults_to_calendar_months_in_the_bucket_timezone():
    m = meter("WEIGHTED_SUM")
    events = [event("1", utc(2024, 1, 15), value=6)]
    # reset at Feb 1 00:00 New York = 05:00Z: over Feb 1 00:00Z-10:00Z the level is 6 for 5 h
    result = usage(m, events, utc(2024, 2, 1), utc(2024, 2, 1, 10), None, "UTC", bucket_tz=NY)
    assert result.total == D(3)
    assert usage(m, events, utc(2024, 2, 1), utc(2024, 2, 1, 10), None, "UTC").total == 0


def test_weighted_sum_event_at_a_reset_counts_in_the_new_period():
    curve = LevelCurve([(utc(2024, 1, 1), D(5)), (utc(2024, 1, 2), D(3))], [utc(2024, 1, 2)])
    assert curve.level_at(utc(2024, 1, 1, 23)) == 5
    assert curve.level_at(utc(2024, 1, 2)) == 3
    assert curve.mean(utc(2024, 1, 1), utc(2024, 1, 3)) == 4
    assert curve.mean(utc(2024, 1, 1), utc(2024, 1, 1)) == 0
    assert curve.level_at(utc(2023, 1, 1)) == 0


def test_weighted_sum_microsecond_durations_are_exact():
    ts = utc(2024, 1, 1)
    curve = LevelCurve([(ts, D(1)), (ts + timedelta(microseconds=1), D(-1))], [])
    # level 1 for one microsecond out of one second
    assert curve.mean(ts, ts + timedelta(seconds=1)) == D("0.000001")


# --------------------------------------------------------------------------------------------
# Self-consistency on generated data, and speed


event_lists = st.lists(
    st.tuples(
        st.integers(0, 5 * 24 * 60),  # minute offset in Jan 1-5
        st.one_of(st.integers(-50, 50), st.sampled_from(["1.5", "x", None, 2.25])),
        st.sampled_from(["a", "b", None]),
    ),
    max_size=40,
)


def _generated(rows):
    return [
        event(f"e{i}", utc(2024, 1, 1) + timedelta(minutes=minute), seq=i, value=v, region=g)
        for i, (minute, v, g) in enumerate(rows)
    ]


@settings(max_examples=150, deadline=None)
@given(event_lists, st.sampled_from(["HOUR", "6HOUR", "DAY", "WEEK"]), st.sampled_from(["UTC", NY]))
def test_additive_totals_are_the_sum_of_points(rows, window, tz):
    events = _generated(rows)
    span = (utc(2024, 1, 1, 7), utc(2024, 1, 4, 19))
    for kind in ("COUNT", "SUM"):
        result = usage(meter(kind), events, *span, window, tz)
        assert result.total == sum((p.value for p in result.points), D(0))
        assert result.event_count == sum(p.event_count for p in result.points)
        assert all(p.event_count > 0 for p in result.points)
        assert [p.start for p in result.points] == sorted({p.start for p in result.points})
    maximum = usage(meter("MAX"), events, *span, window, tz)
    if maximum.points:
        assert maximum.total == max(p.value for p in maximum.points)
    bucketed = usage(meter("MAX", bucket_size=window, group_by="region"), events, *span, window, tz)
    assert bucketed.total == sum((p.value for p in bucketed.points), D(0))


@settings(max_examples=100, deadline=None)
@given(event_lists)
def test_weighted_sum_total_is_the_length_weighted_mean_of_day_points(rows):
    events = _generated(rows)
    span = (utc(2024, 1, 1), utc(2024, 1, 6))
    m = meter("WEIGHTED_SUM", reset_usage="NEVER")
    result = usage(m, events, *span, "DAY", "UTC")
    days = [
        usage(m, events, day, day + timedelta(days=1), None, "UTC").total
        for day in (utc(2024, 1, d) for d in range(1, 6))
    ]
    assert abs(result.total - sum(days, D(0)) / 5) < D("1e-20")
    by_start = {p.start: p.value for p in result.points}
    for d, value in zip(range(1, 6), days, strict=True):
        if utc(2024, 1, d) in by_start:
            assert by_start[utc(2024, 1, d)] == value

