"""Random CEL meter expressions and property values, and a way to run compiled programs directly.

`number_expressions()` draws expressions of the whole supported grammar (arithmetic, unary
minus, comparisons, && || !, ?:, parentheses, every function, integer, decimal, exponent and
hex literals, random spacing) over the properties a, b, c, d; `property_values` draws what
events send (ints, decimals, numeric strings, bad strings, null, booleans, objects, zeros,
values at the edges of the double range); `run_program` evaluates a compiled program over rows
of property values in DuckDB or Postgres without dbt (the JSON reading is mimicked the way
the engines' JSON functions return kind and text), which makes thousands of comparisons with
cel-python cheap. The dbt tests cover the real JSON reading.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from models import cel
from models import reference as ref

PROPERTY_NAMES = ("a", "b", "c", "d")
MISSING = object()

# The examples of the CEL issue: (expression, properties, quantity).
ISSUE_EXAMPLES = [
    ("token * duration * pixel", {"token": 10, "duration": 3, "pixel": 100}, Decimal(3000)),
    ("total / 4", {"total": 10}, Decimal("2.5")),
    ("ceil(seconds / 60)", {"seconds": 61}, Decimal(2)),
    ("round(x)", {"x": -0.5}, Decimal(-1)),
    ("a + b", {"a": 7.25}, Decimal("7.25")),  # b missing
]

_SPACES = st.sampled_from(["", " ", " ", "  "])

_number_literals = st.one_of(
    st.integers(0, 100).map(str),
    st.sampled_from(
        [
            "0",
            "1",
            "2",
            "4",
            "60",
            "1000",
            "0x1F",
            "0.5",
            "1.25",
            ".5",
            "5.",
            "2.5",
            "0.1",
            "1e3",
            "2.5e-3",
            "1E2",
            "3.0",
            "1e300",
            "1e-300",
        ]
    ),
)


def _space(draw) -> str:
    return draw(_SPACES)


@st.composite
def number_expressions(draw, depth: int = 4) -> str:
    """A CEL expression computing a number (not necessarily valid as a meter's: see
    `meter_expressions`)."""
    if depth <= 0 or draw(st.integers(0, 9)) < 3:
        if draw(st.integers(0, 3)) == 0:
            return draw(_number_literals)
        return draw(st.sampled_from(PROPERTY_NAMES))
    shape = draw(
        st.sampled_from(["binary", "binary", "binary", "unary", "call", "call", "ternary", "paren"])
    )
    sub = number_expressions(depth - 1)
    if shape == "binary":
        op = draw(st.sampled_from(["+", "-", "*", "/"]))
        return f"{draw(sub)}{_space(draw)}{op}{_space(draw)}{draw(sub)}"
    if shape == "unary":
        return f"-{draw(sub)}" if draw(st.booleans()) else f"-({draw(sub)})"
    if shape == "paren":
        return f"({_space(draw)}{draw(sub)}{_space(draw)})"
    if shape == "ternary":
        test = draw(boolean_expressions(depth - 1))
        return f"{test} ? {draw(sub)} : {draw(sub)}"
    name = draw(st.sampled_from(list(cel.FUNCTIONS)))
    if name == "pow":
        exponent = draw(
            st.one_of(st.sampled_from(["2", "0", "3", "0.5", "-1", "-0.5", "1.5", "10"]), sub)
        )
        args = [draw(sub), exponent]
    elif name in ("max", "min"):
        args = [draw(sub) for _ in range(draw(st.integers(2, 3)))]
    else:
        args = [draw(sub)]
    return f"{name}({(',' + _space(draw)).join(args)})"


@st.composite
def boolean_expressions(draw, depth: int = 3) -> str:
    """A CEL expression computing a boolean."""
    numbers = number_expressions(max(depth - 1, 0))
    if depth <= 0 or draw(st.integers(0, 9)) < 5:
        if draw(st.integers(0, 9)) == 0:
            return draw(st.sampled_from(["true", "false"]))
        op = draw(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]))
        return f"{draw(numbers)}{_space(draw)}{op}{_space(draw)}{draw(numbers)}"
    sub = boolean_expressions(depth - 1)
    shape = draw(st.sampled_from(["and", "or", "not", "ternary", "eq"]))
    if shape in ("and", "or"):
        op = "&&" if shape == "and" else "||"
        return f"({draw(sub)} {op} {draw(sub)})"
    if shape == "not":
        return f"!({draw(sub)})"
    if shape == "eq":
        return f"({draw(sub)}) == ({draw(sub)})"
    return f"({draw(sub)} ? {draw(sub)} : {draw(sub)})"


def _valid_for_a_meter(text: str) -> bool:
    return cel.expression_problem(text) is None


def meter_expressions(depth: int = 4) -> st.SearchStrategy[str]:
    """Expressions a meter accepts: they read a property and have no always-failing part."""
    return number_expressions(depth).filter(_valid_for_a_meter)


property_values: st.SearchStrategy[Any] = st.one_of(
    st.integers(-1000, 1000),
    st.sampled_from([0, 0, 1, -1, 3, 60, 61, 10**20, 10**400]),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            0.5,
            -0.5,
            2.5,
            -2.5,
            0.1,
            1e-13,
            4.9999999999999996e-13,
            1e300,
            -1e300,
            1e-300,
            5e-324,
            1e308,
            1.7976931348623157e308,
            9.999999999999999e25,
        ]
    ),
    st.decimals(min_value=-10_000, max_value=10_000, places=3).map(str),
    st.sampled_from(
        [
            " 12 ",
            "1e3",
            "-0.5",
            "+7",
            ".5",
            "5.",
            "1E-2",
            "0",
            "007",
            "1e-400",
            "1e400",
            "abc",
            "",
            " ",
            "1e0400",
            "NaN",
            "inf",
            "0x10",
            "1_000",
            "\t5",
            "5 5",
            "١٢",
        ]
    ),
    st.sampled_from([None, True, False, {"x": 1}, [1, 2]]),
)


@st.composite
def property_sets(draw, names: tuple[str, ...] = PROPERTY_NAMES) -> dict[str, Any]:
    """An event's properties: each name present (with a random value) or missing."""
    return {name: draw(property_values) for name in names if draw(st.integers(0, 5)) > 0}


# -- running a compiled program directly -------------------------------------------------------
def json_kind_and_text(value: Any) -> tuple[str | None, str | None]:
    """(kind, text) of a property value as the engines' JSON functions give them."""
    if value is MISSING:
        return None, None
    if value is None:
        return "null", None
    if isinstance(value, bool):
        return "boolean", "true" if value else "false"
    if isinstance(value, int):
        return "number", str(value)
    if isinstance(value, float):
        return "number", repr(value)
    if isinstance(value, Decimal):
        return "string", str(value)  # json.dumps(default=str), as the test pipeline writes it
    if isinstance(value, str):
        return "string", value
    return ("object" if isinstance(value, dict) else "array"), json.dumps(value)


def _text(value: str | None) -> str:
    if value is None:
        return "cast(null as varchar)"
    return "cast('" + value.replace("'", "''") + "' as varchar)"


def program_query(program: dict, rows: list[dict[str, Any]], dialect: str) -> str:
    """A query giving (row number, quantity, error) of `program` for each row of properties."""
    columns = ["row_number"]
    for slot in range(1, len(program["inputs"]) + 1):
        columns += list(cel.input_columns(slot))
    values = []
    for number, properties in enumerate(rows):
        cells = [str(number)]
        for name in program["inputs"]:
            kind, text = json_kind_and_text(properties.get(name, MISSING))
            cells += [_text(kind), _text(text)]
        values.append(f"({', '.join(cells)})")
    fence = " offset 0" if dialect == "postgres" else ""
    sql = (
        f"with cel_source as (select * from (values {', '.join(values)}) "
        f"as given({', '.join(columns)}))"
    )
    previous = "cel_source"
    for index, stage in enumerate(program["stages"]):
        items = ", ".join(f"{sql_text} as {name}" for name, sql_text in stage.items())
        sql += f", cel_stage_{index} as (select *, {items} from {previous}{fence})"
        previous = f"cel_stage_{index}"
    error = program["error"] or "cast(null as varchar)"
    return (
        f"{sql} select row_number, {program['quantity']}, {error} "
        f"from {previous} order by row_number"
    )


def run_program(
    cursor: Any, dialect: str, expression: str, rows: list[dict[str, Any]]
) -> list[tuple[Decimal | None, str | None]]:
    """(quantity before the multiplier, error) per row, computed by the engine."""
    cursor.execute(program_query(cel.sql_program(expression, dialect), rows, dialect))
    return [(quantity, error) for _, quantity, error in cursor.fetchall()]


def close_enough(actual: Decimal, expected: Decimal) -> bool:
    """Equal to 1e-9 relative (and one unit of the 12th decimal, the quantity's scale)."""
    return abs(actual - expected) <= Decimal("1e-9") * abs(expected) + Decimal("1e-12")


def compare_with_reference(
    expression: str, rows: list[dict[str, Any]], results: list[tuple[Decimal | None, str | None]]
) -> int:
    """Assert every engine result equals cel-python's; the number of usable values compared."""
    compared = 0
    for properties, (quantity, error) in zip(rows, results, strict=True):
        expected = ref.cel_quantity(expression, properties)
        context = (expression, properties, quantity, error, expected)
        if isinstance(expected, ref.QuantityError):
            # the quantity means nothing once there is an error; no quantity without an error
            # means the result does not fit decimal(38, 12)
            assert error is not None or quantity is None, context
        else:
            assert error is None and quantity is not None, context
            assert close_enough(quantity, expected), context
            compared += 1
    return compared
