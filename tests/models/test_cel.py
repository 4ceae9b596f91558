"""CEL meter expressions: what the catalog refuses (and how it says so), and the compiled SQL
against cel-python, the reference, on random expressions and property values.

The SQL programs run here directly in DuckDB and Postgres (no dbt: one query per expression),
so hypothesis can try many expressions; tests/dbt/test_cel_matches_reference.py runs the same
comparison through dbt builds, JSON reading included.
"""

from __future__ import annotations

import json
from decimal import Decimal

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import cel
from models import reference as ref
from models.catalog import CatalogFile
from tests.support.cel_strategies import (
    ISSUE_EXAMPLES,
    compare_with_reference,
    meter_expressions,
    property_sets,
    run_program,
)

# Behaviour at the edges, compared with the reference on both engines.
EDGE_CASES = [
    (
        "a * b",
        [
            {"a": 1e200, "b": 1e200},
            {"a": 1e-200, "b": 1e-200},
            {"a": 0, "b": 1e308},
            {"a": 1.7976931348623157e308, "b": 1.0000000000000002},
            {"a": -1e300, "b": 1e10},
        ],
    ),
    (
        "a / b",
        [
            {"a": 1, "b": 0},
            {"a": 0, "b": 0},
            {"a": 1e300, "b": 1e-300},
            {"a": 1e-300, "b": 1e300},
            {"a": 5e-324, "b": 2},
            {"a": 5e-324, "b": 1.5},
            {"a": -1},
        ],
    ),
    (
        "a + b",
        [
            {"a": 1.7976931348623157e308, "b": 9.9e291},
            {"a": 1.7976931348623157e308, "b": 1e292},
            {"a": 1.7976931348623157e308, "b": -1.7976931348623157e308},
            {"a": "1e-400", "b": 1},
            {"a": "1e400"},
            {"a": 10**400},
            {"a": "2e-324"},
        ],
    ),
    (
        "pow(a, b)",
        [
            {"a": 10, "b": 308},
            {"a": 10, "b": 309},
            {"a": 2, "b": -1074},
            {"a": 2, "b": -1080},
            {"a": 0, "b": -1},
            {"a": 0, "b": 0},
            {"a": -8, "b": 1 / 3},
            {"a": -2, "b": 3},
            {"a": -1, "b": 1e300},
            {"a": 1, "b": 1e308},
            {"a": 1e-12, "b": 30},
            {"a": 0.5, "b": -1e300},
        ],
    ),
    (
        "round(a)",
        [
            {"a": 0.5},
            {"a": -0.5},
            {"a": 2.5},
            {"a": -2.5},
            {"a": 0.49999999999999994},
            {"a": 4503599627370497.0},
            {"a": -1e300},
        ],
    ),
    (
        "a",
        [
            {"a": 9.999999999999999e25},
            {"a": 1e26},
            {"a": 5e-13},
            {"a": -5e-13},
            {"a": 1.5e-12},
            {"a": "99999999999999999999999999.9999999999995"},
        ],
    ),
    (
        "sqrt(a) + log(b)",
        [
            {"a": 4, "b": 1},
            {"a": -1, "b": 1},
            {"a": 1, "b": 0},
            {"a": 1, "b": -1},
            {"a": 0, "b": 5e-324},
        ],
    ),
    ("a > 0 ? a : b / c", [{"a": 1}, {"a": -1, "b": 1}, {"a": -1, "b": 1, "c": 2}]),
    (
        "(a / b > 1 && false) || (c > 0 && a / b > 1) ? 1 : 2",
        [{"a": 1}, {"a": 1, "c": 1}, {"a": 4, "b": 2, "c": 1}, {"a": 4, "b": 2}],
    ),
    ("max(a, b / c) + min(a, 2, 3)", [{"a": 1, "b": 1}, {"a": 1, "b": 1, "c": 2}]),
    (
        "a + b",
        [
            {"a": None},
            {"a": True},
            {"a": {"x": 1}},
            {"a": [1]},
            {"a": " 5 ", "b": "1e2"},
            {"a": "\t5"},
            {"a": "5 5"},
            {"a": ""},
            {"a": "0x10"},
            {"a": "NaN"},
        ],
    ),
    ("c > 0 ? a : b", [{"c": 1, "b": "bad"}]),  # every named property is checked
    ("-a - -1 + 0x10", [{"a": 2}]),
    ("a < 1e300 * a ? 0 : a", [{}, {"a": 1}, {"a": 1e10}]),  # literals scaled while planning
    ("1e-300 / a + 1e300 * a - 1e300 / a", [{"a": 1e-10}, {"a": 1e10}, {"a": 1e300}]),
]

# (expression, column or None, a fragment of the reason)
REFUSALS = [
    ("a +", 4, "ends too early"),
    ("a $ b", 3, "unexpected character '$'"),
    ("(a + b", 7, "ends too early"),
    ("a b", 3, "unexpected 'b'"),
    ("tokens * bonus(2)", 10, "unknown function bonus()"),
    ("size(a)", 1, "size() is not supported"),
    ("has(a.b)", 1, "has() is not supported"),
    ("a.b * 2", 1, "field access"),
    ("a.size()", 1, "method calls"),
    ("a[0]", 1, "indexing"),
    ("'x' + a", 1, "text literals are not supported"),
    ('a + "1"', 5, "text literals are not supported"),
    ("b'x' == a", 1, "bytes"),
    ("a == null ? 0 : a", 6, "null is not supported"),
    ("a * 2u", 5, "unsigned literals"),
    ("[a, b]", 1, "lists are not supported"),
    ("{1: a}", 1, "maps are not supported"),
    ("a in b", 1, "'in' is not supported"),
    ("a % 2", 1, "'%' is not supported"),
    ("a + (b > 1)", 6, "'+' needs a number, but this is a boolean"),
    ("a ? 1 : 2", 1, "the condition of '?:' needs a boolean"),
    ("a > 1 ? 1 : true", 13, "both be numbers or both be booleans"),
    ("a > 1", 1, "must compute a number"),
    ("a == (b > 1) ? 1 : 0", 7, "compares two numbers or two booleans"),
    ("!a", 2, "'!' needs a boolean"),
    ("max(a)", 1, "max() takes at least 2 arguments, got 1"),
    ("pow(a)", 1, "pow() takes 2 arguments, got 1"),
    ("sqrt(a, b)", 1, "sqrt() takes 1 argument, got 2"),
    ("round(a, 2)", 1, "round() takes 1 argument, got 2"),
    ("a / 0", 5, "always an error: division by zero"),
    ("a / (2 - 2.0)", 6, "always an error: division by zero"),
    ("a + sqrt(-4)", 5, "always an error: sqrt() of a negative number"),
    ("a * log(0)", 5, "always an error"),
    ("a + pow(10, 400)", 5, "always an error"),
    ("a * 1e999", 5, "beyond the range of a double"),
    ("2 * 3", 1, "reads no property"),
    ("as + 1", 1, "reserved word"),
    ("a +\n b $", None, "line 2, column 4: syntax error"),
    ("max(" + ", ".join(["a * a"] * 70) + ")", 467, "more than 200 parts"),
    ("a" + " + a" * 70, 1, "nested more than 64 levels deep"),
    ("(" * 600 + "a" + ")" * 600, None, "nested more than 64 levels deep"),
    ("a" * 2001, None, "longer than 2000 characters"),
]


# -- validation -------------------------------------------------------------------------------
@pytest.mark.parametrize(("expression", "column", "reason"), REFUSALS)
def test_unsupported_expressions_are_refused_with_position_and_reason(expression, column, reason):
    with pytest.raises(cel.CelError) as info:
        cel.compile_expression(expression)
    if column is not None:
        assert info.value.column == column, str(info.value)
        assert str(info.value).startswith(f"column {column}: ")
    assert reason in str(info.value)


@pytest.mark.parametrize(
    "expression",
    [
        "token * duration * pixel",
        "a - -1",
        "a-1",
        "-a",
        "--a",
        "a + b // a comment",
        "max(a, b, c, 0)",
        "a > 1 && b < 2 || !(c == 3) ? pow(a, 0.5) : floor(b) / ceil(c)",
        "abs(a) + round(b) + sqrt(c) + log(d + 1)",
        "0x10 * a + .5 + 5. + 1e-3",
        "(a)",
        "as_ + in_x",
        "true ? a : b",
        "(a > 1) == (b > 1) ? a : b",
        "google + int + double",
    ],
)
def test_supported_expressions_compile(expression):
    compiled = cel.compile_expression(expression)
    for dialect in cel.DIALECTS:
        program = cel.sql_program(compiled, dialect)
        assert program["inputs"] == list(compiled.properties)
        json.loads(cel.sql_program_json(expression, dialect))


def test_constant_parts_are_folded():
    compiled = cel.compile_expression("a * (2 + 3) + pow(2, 10) + (1 > 2 ? 1 : 0)")
    assert cel.properties(compiled.tree) == ("a",)
    numbers = [node.value for node in cel.walk(compiled.tree) if isinstance(node, cel.Number)]
    assert numbers == [5.0, 1024.0, 0.0]


def test_sql_grows_linearly_with_the_expression():
    small = cel.sql_program(" + ".join(f"p{i} * p{i}" for i in range(5)), "postgres")
    large = cel.sql_program(" + ".join(f"p{i} * p{i}" for i in range(20)), "postgres")
    assert len(json.dumps(large)) < 5 * len(json.dumps(small))
    deep = cel.sql_program("a" + " + a" * 63, "postgres")
    assert len(deep["stages"]) <= 65


def catalog_meter(expression: str, kind: str = "SUM", **aggregation: str) -> dict:
    return {
        "tenant_id": "acme",
        "environment_id": "prod",
        "meters": [
            {
                "id": "mtr_tokens",
                "name": "Tokens",
                "event_name": "llm",
                "aggregation": {"type": kind, "expression": expression, **aggregation},
            }
        ],
    }


def test_the_catalog_names_the_meter_the_position_and_the_reason():
    with pytest.raises(Exception) as info:
        CatalogFile.model_validate(catalog_meter("tokens * bonus(2)"))
    message = str(info.value)
    assert "meters.0.aggregation.expression" in message
    assert "meter 'mtr_tokens', expression 'tokens * bonus(2)': column 10: unknown function" in (
        message
    )


def test_the_catalog_accepts_supported_expressions_and_refuses_them_on_count_unique():
    CatalogFile.model_validate(catalog_meter("ceil(seconds / 60)"))
    with pytest.raises(Exception, match="COUNT_UNIQUE counts the distinct values"):
        CatalogFile.model_validate(catalog_meter("a + b", "COUNT_UNIQUE", field="a"))


# -- the reference and the engines --------------------------------------------------------------
@pytest.fixture(scope="module")
def duckdb_cursor():
    connection = duckdb.connect()
    yield connection
    connection.close()


@pytest.fixture
def postgres_cursor(pg_config):
    """A cursor on the server's maintenance database: these tests only run selects."""
    import psycopg2

    connection = psycopg2.connect(
        host=pg_config.pg_host,
        port=pg_config.pg_port,
        user=pg_config.pg_user,
        password=pg_config.pg_password or None,
        dbname="postgres",
    )
    try:
        yield connection.cursor()
    finally:
        connection.close()


@pytest.mark.parametrize(("expression", "properties", "expected"), ISSUE_EXAMPLES)
def test_issue_examples_in_the_reference(expression, properties, expected):
    assert ref.cel_quantity(expression, properties) == expected


@pytest.mark.parametrize(("expression", "properties", "expected"), ISSUE_EXAMPLES)
def test_issue_examples_on_duckdb(duckdb_cursor, expression, properties, expected):
    assert run_program(duckdb_cursor, "duckdb", expression, [properties]) == [(expected, None)]


@pytest.mark.postgres
def test_issue_examples_on_postgres(postgres_cursor):
    for expression, properties, expected in ISSUE_EXAMPLES:
        result = run_program(postgres_cursor, "postgres", expression, [properties])
        assert result == [(expected, None)], expression


@pytest.mark.parametrize(("expression", "rows"), EDGE_CASES)
def test_edges_on_duckdb(duckdb_cursor, expression, rows):
    compare_with_reference(expression, rows, run_program(duckdb_cursor, "duckdb", expression, rows))


@pytest.mark.postgres
def test_edges_on_postgres(postgres_cursor):
    for expression, rows in EDGE_CASES:
        results = run_program(postgres_cursor, "postgres", expression, rows)
        compare_with_reference(expression, rows, results)


def test_reference_examples_of_semantics():
    assert ref.cel_quantity("a / b", {"a": 1}) == ref.QuantityError(
        "expression: '/': division by zero"
    )
    assert ref.cel_quantity("false && a / b > 1 ? 1 : 2", {"a": 1}) == Decimal(2)
    assert isinstance(ref.cel_quantity("c > 0 ? a : b", {"c": 1, "b": "x"}), ref.QuantityError)
    assert isinstance(ref.cel_quantity("a", {"a": None}), ref.QuantityError)
    assert ref.cel_quantity("a", {}) == Decimal(0)
    assert ref.cel_quantity("a", {"a": "0.0000000000005"}) == Decimal("0.000000000001")


def test_event_quantity_applies_the_multiplier_after_the_expression():
    from datetime import UTC, datetime

    meter = ref.RefMeter(
        "m", "e", "SUM", None, Decimal("1.5"), None, None, expression="ceil(seconds / 60)"
    )
    event = ref.RefEvent(
        "t", "e", "ev", "e", "c", datetime(2024, 1, 1, tzinfo=UTC), {"seconds": 61}
    )
    assert ref.event_quantity(meter, event) == Decimal(3)


ENGINE_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)


@settings(ENGINE_SETTINGS, max_examples=300)
@given(expression=meter_expressions(), rows=st.lists(property_sets(), min_size=1, max_size=8))
def test_duckdb_matches_cel_python(duckdb_cursor, expression, rows):
    compare_with_reference(expression, rows, run_program(duckdb_cursor, "duckdb", expression, rows))


@pytest.mark.postgres
@settings(ENGINE_SETTINGS, max_examples=150)
@given(expression=meter_expressions(), rows=st.lists(property_sets(), min_size=1, max_size=8))
def test_postgres_matches_cel_python(postgres_cursor, expression, rows):
    results = run_program(postgres_cursor, "postgres", expression, rows)
    compare_with_reference(expression, rows, results)
