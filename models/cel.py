"""CEL meter expressions: parse, validate and compile to warehouse SQL (DESIGN 3).

A meter's `aggregation.expression` computes each event's quantity from its properties, with
Flexprice's semantics:
- identifiers are top-level properties read as doubles, and integer literals are doubles too
  (`total / 4` with total 10 is 2.5); a missing property reads as 0; JSON numbers and numeric
  strings parse; any other value (null, a boolean, an object, an array, other text, a number
  beyond the double range) is an error for that (event, meter), whether or not the branch
  that names it is taken (Flexprice checks every property before evaluating);
- `+ - * /`, unary `-`, `< <= > >= == !=`, `&& || !`, `?:`, parentheses and the functions
  max/min (two or more arguments), pow, abs, ceil, floor, round (half away from zero), sqrt
  and log (natural logarithm);
- every operation is checked: division by zero, a result beyond the double range, sqrt or log
  outside their domain, pow without a real result are errors. `&&`, `||` and `?:` absorb an
  error on the side that does not decide the result (CEL's logic: `false && error` is false);
  every other operation passes errors on. Underflow is not an error (the IEEE result);
- the result must be a number; it becomes decimal(38, 12) rounded half away from zero from its
  shortest decimal form (an error when it does not fit), then `multiplier` applies.

The grammar and parser options are cel-python's (the reference implementation the warehouse is
tested against), so whatever is accepted here parses the same there. Everything outside the
grammar above is refused when the catalog loads, with the position and the reason, so that
nothing silently runs slowly or differently: text, bytes, null, lists, maps, field access,
method calls, macros, `in`, `%` (CEL has no double modulo), unsigned literals, unknown
functions, booleans where numbers are needed, parts made of constants only that always fail
(`x / 0`), and expressions that read no property at all.

Compilation (`sql_program`) produces, per dialect, a small program the dbt macro
`mh_cel_ctes` inlines into `int_meter_events`: one stage of columns per level of the
expression tree, so each operation reads its operands as columns. That keeps the SQL linear in
the size of the expression while every operation carries the guards that keep the engines
from raising (Postgres raises on float overflow and underflow; DuckDB returns inf/nan) and the
checks that give each node its error. No Python runs per event.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

# -- the supported language -------------------------------------------------------------------
# name -> (fewest arguments, most arguments or None for any number)
FUNCTIONS: dict[str, tuple[int, int | None]] = {
    "abs": (1, 1),
    "ceil": (1, 1),
    "floor": (1, 1),
    "round": (1, 1),
    "sqrt": (1, 1),
    "log": (1, 1),
    "pow": (2, 2),
    "max": (2, None),
    "min": (2, None),
}
# CEL names that are not ours: refused with a clearer message than "unknown function".
_CEL_BUILTINS = frozenset(
    "has all exists exists_one map filter size int uint double string bytes bool type dyn "
    "duration timestamp matches contains startsWith endsWith".split()
)
# CEL reserves these words; cel-go refuses them as identifiers, so do we.
_RESERVED = frozenset(
    "as break const continue else for function if import in let loop package namespace "
    "return var void while".split()
)
_IDENTIFIER = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")

MAX_LENGTH = 2000  # characters
MAX_NODES = 200  # operands, operators and calls
MAX_DEPTH = 64  # levels of nesting (each level can be a stage of the compiled SQL)

NUMBER, BOOLEAN = "number", "boolean"

# A property value given as text must look like a number: optional sign, digits with an
# optional fraction, an optional exponent of at most three digits; spaces around are allowed
# (as for field meters: macros/numbers/decimals.sql).
NUMERIC_TEXT_SQL = "^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]{1,3})?$"

# The bounds of IEEE rounding as exact integers: a result whose exact magnitude is at least
# OVERFLOW_AT rounds to infinity; a nonzero one whose magnitude times UNDERFLOW_SCALE is at most 1
# rounds to zero (2**-1075 is half the smallest double; ties go to the even neighbour).
OVERFLOW_AT = str(2**1024 - 2**970)
UNDERFLOW_SCALE = str(2**1075)


class CelError(ValueError):
    """Why an expression is refused, and where (1-based line and column)."""

    def __init__(self, reason: str, line: int | None = None, column: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.line = line
        self.column = column

    def __str__(self) -> str:
        if self.column is None:
            return self.reason
        if self.line in (None, 1):
            return f"column {self.column}: {self.reason}"
        return f"line {self.line}, column {self.column}: {self.reason}"


class CelEvaluationError(ArithmeticError):
    """An operation without a finite result (for constant parts, evaluated at load time)."""


# -- syntax tree --------------------------------------------------------------------------------
Position = tuple[int | None, int | None]


@dataclass(frozen=True)
class Number:
    value: float
    pos: Position = (None, None)


@dataclass(frozen=True)
class Boolean:
    value: bool
    pos: Position = (None, None)


@dataclass(frozen=True)
class Property:
    name: str
    pos: Position = (None, None)


@dataclass(frozen=True)
class Unary:
    op: str  # "-" or "!"
    operand: Node
    pos: Position = (None, None)


@dataclass(frozen=True)
class Binary:
    op: str  # + - * / < <= > >= == != && ||
    left: Node
    right: Node
    pos: Position = (None, None)


@dataclass(frozen=True)
class Conditional:
    test: Node
    then: Node
    orelse: Node
    pos: Position = (None, None)


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Node, ...]
    pos: Position = (None, None)


Node = Number | Boolean | Property | Unary | Binary | Conditional | Call

_LARK_OPERATORS = {
    "addition_add": "+",
    "addition_sub": "-",
    "multiplication_mul": "*",
    "multiplication_div": "/",
    "multiplication_mod": "%",
    "relation_lt": "<",
    "relation_le": "<=",
    "relation_gt": ">",
    "relation_ge": ">=",
    "relation_eq": "==",
    "relation_ne": "!=",
    "relation_in": "in",
}
_UNSUPPORTED = {
    "member_dot": "field access (a.b) is not supported: identifiers are top-level properties",
    "member_dot_arg": "method calls (a.f()) are not supported",
    "member_index": "indexing (a[i]) is not supported",
    "member_object": "message construction (T{...}) is not supported",
    "dot_ident": "leading-dot names (.a) are not supported",
    "dot_ident_arg": "leading-dot calls (.f()) are not supported",
    "list_lit": "lists are not supported",
    "map_lit": "maps are not supported",
}
_UNSUPPORTED_LITERALS = {
    "STRING_LIT": "text literals are not supported: expressions compute numbers",
    "MLSTRING_LIT": "text literals are not supported: expressions compute numbers",
    "BYTES_LIT": "bytes literals are not supported",
    "NULL_LIT": "null is not supported (a missing property already reads as 0)",
    "UINT_LIT": "unsigned literals (1u) are not supported: every number is a double; write 1",
}


# -- parsing ------------------------------------------------------------------------------------
def parse(text: str) -> Node:
    """The syntax tree of `text`, or a CelError at the first unsupported construct."""
    if len(text) > MAX_LENGTH:
        raise CelError(f"the expression is longer than {MAX_LENGTH} characters")
    tree = _lark_parse(text)
    converter = _Converter()
    try:
        return converter.expr(tree, (1, 1), 0)
    except RecursionError:  # pragma: no cover - MAX_DEPTH stops far earlier
        raise CelError(f"the expression is nested more than {MAX_DEPTH} levels deep") from None


@lru_cache(maxsize=1)
def _parser() -> Lark:
    """cel-python's grammar with cel-python's parser options (built once, on first use).

    The one difference: `true`/`false` keep their position when they become BOOL_LIT tokens
    (cel-python's callback drops it), so errors about them point at them.
    """
    from celpy import celparser

    grammar = (Path(celparser.__file__).parent / "cel.lark").read_text()
    return Lark(
        grammar,
        parser="lalr",
        start="expr",
        g_regex_flags=re.M,
        lexer_callbacks={"IDENT": _boolean_literals},
        propagate_positions=True,
        maybe_placeholders=False,
        priority="invert",
    )


def _boolean_literals(token: Token) -> Token:
    if token.value in ("true", "false"):
        return Token.new_borrow_pos("BOOL_LIT", token.value, token)
    return token


def _lark_parse(text: str) -> Tree:
    try:
        return _parser().parse(text)
    except UnexpectedInput as error:
        raise _syntax_error(text, error) from None


def _syntax_error(text: str, error: UnexpectedInput) -> CelError:
    line, column = getattr(error, "line", None), getattr(error, "column", None)
    if isinstance(error, UnexpectedCharacters):
        reason = f"syntax error: unexpected character {text[error.pos_in_stream]!r}"
    elif isinstance(error, UnexpectedEOF) or (
        isinstance(error, UnexpectedToken) and error.token.type == "$END"
    ):
        reason = "syntax error: the expression ends too early"
        lines = text.split("\n")
        line, column = len(lines), len(lines[-1]) + 1
    elif isinstance(error, UnexpectedToken):
        reason = f"syntax error: unexpected {str(error.token)!r}"
    else:  # pragma: no cover - lark has no other kinds
        reason = "syntax error"
    if not isinstance(line, int) or line < 1:
        line, column = None, None
    return CelError(reason, line, column)


def _position(item: Tree | Token, fallback: Position) -> Position:
    if isinstance(item, Token):
        if item.line is not None:
            return (item.line, item.column)
        return fallback
    meta = item.meta
    if not meta.empty and getattr(meta, "line", None) is not None:
        return (meta.line, meta.column)
    return fallback


class _Converter:
    """Lark tree of cel-python's grammar -> our syntax tree, refusing what we do not support."""

    def __init__(self) -> None:
        self.nodes = 0

    def count(self, depth: int, pos: Position) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise CelError(f"the expression has more than {MAX_NODES} parts", *pos)
        if depth > MAX_DEPTH:
            raise CelError(
                f"the expression is nested more than {MAX_DEPTH} levels deep (each operator of "
                "a chain like a + b + c adds a level)",
                *pos,
            )

    def expr(self, tree: Tree, fallback: Position, depth: int) -> Node:
        pos = _position(tree, fallback)
        name = tree.data
        children = tree.children
        if name == "expr":
            if len(children) == 1:
                return self.expr(children[0], pos, depth)
            self.count(depth, pos)
            test, then, orelse = (self.expr(child, pos, depth + 1) for child in children)
            return Conditional(test, then, orelse, pos)
        if name in ("conditionalor", "conditionaland", "relation", "addition", "multiplication"):
            if len(children) == 1:
                return self.expr(children[0], pos, depth)
            if name in ("conditionalor", "conditionaland"):
                op = "||" if name == "conditionalor" else "&&"
                left_tree, right_tree = children
            else:
                operator_tree, right_tree = children
                op = _LARK_OPERATORS[operator_tree.data]
                (left_tree,) = operator_tree.children
            self.count(depth, pos)
            if op == "in":
                raise CelError("'in' is not supported", *pos)
            if op == "%":
                raise CelError(
                    "'%' is not supported: CEL defines it for integers only and every number "
                    "here is a double; write x - floor(x / y) * y",
                    *pos,
                )
            left = self.expr(left_tree, pos, depth + 1)
            right = self.expr(right_tree, _position(right_tree, pos), depth + 1)
            return Binary(op, left, right, pos)
        if name == "unary":
            if len(children) == 1:
                return self.expr(children[0], pos, depth)
            operator_tree, operand_tree = children
            self.count(depth, pos)
            op = "!" if operator_tree.data == "unary_not" else "-"
            operand = self.expr(operand_tree, _position(operand_tree, pos), depth + 1)
            return Unary(op, operand, pos)
        if name in ("member", "primary"):
            return self.expr(children[0], pos, depth)
        if name in _UNSUPPORTED:
            raise CelError(_UNSUPPORTED[name], *pos)
        if name == "paren_expr":
            return self.expr(children[0], pos, depth)
        if name == "ident":
            self.count(depth, pos)
            token = children[0]
            return self.identifier(str(token), _position(token, pos))
        if name == "ident_arg":
            self.count(depth, pos)
            return self.call(children, pos, depth)
        if name == "literal":
            self.count(depth, pos)
            return self.literal(children[0], pos)
        raise CelError(f"unsupported construct ({name})", *pos)  # pragma: no cover

    def identifier(self, name: str, pos: Position) -> Property:
        if name in _RESERVED:
            raise CelError(f"{name!r} is a reserved word in CEL and cannot name a property", *pos)
        if not _IDENTIFIER.fullmatch(name):  # pragma: no cover - the grammar guarantees it
            raise CelError(f"{name!r} is not a valid property name", *pos)
        return Property(name, pos)

    def call(self, children: list, pos: Position, depth: int) -> Call:
        token = children[0]
        name = str(token)
        pos = _position(token, pos)
        args_tree = children[1] if len(children) > 1 else None
        if name not in FUNCTIONS:
            known = ", ".join(FUNCTIONS)
            if name in _CEL_BUILTINS:
                raise CelError(f"{name}() is not supported (supported functions: {known})", *pos)
            raise CelError(f"unknown function {name}() (supported functions: {known})", *pos)
        arg_trees = [] if args_tree is None else list(args_tree.children)
        fewest, most = FUNCTIONS[name]
        if len(arg_trees) < fewest or (most is not None and len(arg_trees) > most):
            if most is None:
                wanted = f"at least {fewest} arguments"
            else:
                wanted = f"{fewest} argument" + ("s" if fewest > 1 else "")
            raise CelError(f"{name}() takes {wanted}, got {len(arg_trees)}", *pos)
        args = tuple(self.expr(arg, _position(arg, pos), depth + 1) for arg in arg_trees)
        return Call(name, args, pos)

    def literal(self, token: Token, pos: Position) -> Number | Boolean:
        pos = _position(token, pos)
        kind, text = token.type, str(token)
        if kind in _UNSUPPORTED_LITERALS:
            raise CelError(_UNSUPPORTED_LITERALS[kind], *pos)
        if kind == "BOOL_LIT":
            return Boolean(text == "true", pos)
        value = literal_value(kind, text)
        if not math.isfinite(value):
            raise CelError(f"the number {text} is beyond the range of a double", *pos)
        return Number(value, pos)


def literal_value(kind: str, text: str) -> float:
    """A numeric literal as the double it stands for (integer literals are doubles too)."""
    if kind == "INT_LIT":
        try:
            return float(int(text, 0))
        except OverflowError:
            return math.inf
    return float(text)


# -- types and constants ---------------------------------------------------------------------------
def check_types(node: Node) -> str:
    """NUMBER or BOOLEAN, the type of `node`; a CelError where an operand has the wrong type."""
    if isinstance(node, Number | Property):
        return NUMBER
    if isinstance(node, Boolean):
        return BOOLEAN
    if isinstance(node, Unary):
        wanted = BOOLEAN if node.op == "!" else NUMBER
        _expect(node.operand, wanted, f"'{node.op}'")
        return wanted
    if isinstance(node, Binary):
        if node.op in ("&&", "||"):
            _expect(node.left, BOOLEAN, f"'{node.op}'")
            _expect(node.right, BOOLEAN, f"'{node.op}'")
            return BOOLEAN
        if node.op in ("==", "!="):
            left = check_types(node.left)
            if check_types(node.right) != left:
                raise CelError(
                    f"'{node.op}' compares two numbers or two booleans, not a number and a boolean",
                    *node.right.pos,
                )
            return BOOLEAN
        _expect(node.left, NUMBER, f"'{node.op}'")
        _expect(node.right, NUMBER, f"'{node.op}'")
        return BOOLEAN if node.op in ("<", "<=", ">", ">=") else NUMBER
    if isinstance(node, Conditional):
        _expect(node.test, BOOLEAN, "the condition of '?:'")
        then = check_types(node.then)
        if check_types(node.orelse) != then:
            raise CelError(
                "the two branches of '?:' must both be numbers or both be booleans",
                *node.orelse.pos,
            )
        return then
    assert isinstance(node, Call)
    for arg in node.args:
        _expect(arg, NUMBER, f"{node.name}()")
    return NUMBER


def _expect(node: Node, wanted: str, user: str) -> None:
    found = check_types(node)
    if found != wanted:
        article = "a number" if wanted == NUMBER else "a boolean (a comparison, && or ||)"
        raise CelError(f"{user} needs {article}, but this is a {found}", *node.pos)


def children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Conditional):
        return (node.test, node.then, node.orelse)
    if isinstance(node, Call):
        return node.args
    return ()


def properties(node: Node) -> tuple[str, ...]:
    """The property names the expression reads, in order of first appearance."""
    seen: dict[str, None] = {}

    def walk(item: Node) -> None:
        if isinstance(item, Property):
            seen.setdefault(item.name)
        for child in children(item):
            walk(child)

    walk(node)
    return tuple(seen)


def fold_constants(node: Node) -> Node:
    """Replace every part made of literals only by its value; a CelError if it always fails.

    Besides telling the user early (`x / 0` is a mistake, not usage), this keeps constant
    operations that would raise out of the SQL: Postgres folds constants while planning, even
    inside CASE branches that never run.
    """
    if isinstance(node, Number | Boolean | Property):
        return node
    folded = tuple(fold_constants(child) for child in children(node))
    divisor = folded[1] if isinstance(node, Binary) and node.op == "/" else None
    if isinstance(divisor, Number) and divisor.value == 0:
        raise CelError("this part is always an error: division by zero", *divisor.pos)
    if not all(isinstance(child, Number | Boolean) for child in folded):
        return _rebuild(node, folded)
    values = [child.value for child in folded]  # type: ignore[union-attr]
    try:
        value = _apply(node, values)
    except CelEvaluationError as error:
        raise CelError(f"this part is always an error: {error}", *node.pos) from None
    if isinstance(value, bool):
        return Boolean(value, node.pos)
    return Number(value, node.pos)


def _rebuild(node: Node, parts: tuple[Node, ...]) -> Node:
    if isinstance(node, Unary):
        return Unary(node.op, parts[0], node.pos)
    if isinstance(node, Binary):
        return Binary(node.op, parts[0], parts[1], node.pos)
    if isinstance(node, Conditional):
        return Conditional(parts[0], parts[1], parts[2], node.pos)
    assert isinstance(node, Call)
    return Call(node.name, parts, node.pos)


# -- the semantics in Python (constant parts; the SQL below implements the same) ----------------
def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise CelEvaluationError(f"{what} is beyond the range of a double")
    return value


def round_half_away(value: float) -> float:
    """round() of DESIGN 3: to the nearest integer, halves away from zero (-0.5 -> -1)."""
    truncated = float(math.trunc(value))
    if abs(value - truncated) >= 0.5:  # exact: value - trunc(value) never rounds
        return truncated + math.copysign(1.0, value)
    return truncated


def _pow(base: float, exponent: float) -> float:
    try:
        return _finite(math.pow(base, exponent), "pow()")
    except ValueError:
        raise CelEvaluationError("pow() has no real result") from None
    except OverflowError:
        raise CelEvaluationError("pow() is beyond the range of a double") from None


def _divide(left: float, right: float) -> float:
    if right == 0:
        raise CelEvaluationError("division by zero")
    return _finite(left / right, "'/'")


def _sqrt(value: float) -> float:
    if value < 0:
        raise CelEvaluationError("sqrt() of a negative number")
    return math.sqrt(value)


def _log(value: float) -> float:
    if value <= 0:
        raise CelEvaluationError("log() of a number that is not positive")
    return math.log(value)


_NUMBER_OPERATIONS: dict[str, Callable[..., float]] = {
    "+": lambda a, b: _finite(a + b, "'+'"),
    "-": lambda a, b: _finite(a - b, "'-'"),
    "*": lambda a, b: _finite(a * b, "'*'"),
    "/": _divide,
    "abs": abs,
    "ceil": lambda a: float(math.ceil(a)),
    "floor": lambda a: float(math.floor(a)),
    "round": round_half_away,
    "sqrt": _sqrt,
    "log": _log,
    "pow": _pow,
    "max": lambda *args: max(args),
    "min": lambda *args: min(args),
}


_COMPARISONS: dict[str, Callable[[object, object], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def _apply(node: Node, values: list) -> float | bool:
    """The value of `node` from the values of its children (all known)."""
    if isinstance(node, Unary):
        return (not values[0]) if node.op == "!" else -values[0]
    if isinstance(node, Conditional):
        return values[1] if values[0] else values[2]
    if isinstance(node, Call):
        return _NUMBER_OPERATIONS[node.name](*values)
    assert isinstance(node, Binary)
    left, right = values
    if node.op == "&&":
        return bool(left and right)
    if node.op == "||":
        return bool(left or right)
    if node.op in _COMPARISONS:
        return _COMPARISONS[node.op](left, right)
    return _NUMBER_OPERATIONS[node.op](left, right)


# -- the whole expression -------------------------------------------------------------------------
@dataclass(frozen=True)
class CelExpression:
    """A validated expression: its tree (constant parts folded) and the properties it reads."""

    text: str
    tree: Node
    properties: tuple[str, ...]


@lru_cache(maxsize=1024)
def compile_expression(text: str) -> CelExpression:
    """Parse and validate `text`; a CelError (with position) when it cannot be a meter's."""
    tree = parse(text)
    kind = check_types(tree)
    if kind != NUMBER:
        raise CelError(
            "the expression must compute a number, but it computes a boolean; use "
            "`condition ? 1 : 0` to count",
            *tree.pos,
        )
    names = properties(tree)
    if not names:
        raise CelError(
            "the expression reads no property; a constant per event is COUNT with a multiplier",
            *tree.pos,
        )
    return CelExpression(text, fold_constants(tree), names)


def expression_problem(text: str) -> CelError | None:
    """Why `text` is refused as a meter expression, or None when it is fine."""
    try:
        compile_expression(text)
    except CelError as error:
        return error
    return None


# -- SQL ------------------------------------------------------------------------------------------
DIALECTS = ("duckdb", "postgres", "spark")


@dataclass(frozen=True)
class Operand:
    """The SQL of one node: its value (null exactly when it has an error) and its error reason.

    `error` is None when the node can never fail. `level` is the stage of the newest column it
    reads. An `inline` operand is a short expression over columns and literals, repeated where
    its parent names it; a column or a literal is not inline.
    """

    value: str
    error: str | None
    level: int
    kind: str
    inline: bool = False
    constant: float | bool | None = None


@dataclass
class _Program:
    dialect: Dialect
    stages: list[dict[str, str]] = field(default_factory=list)
    counts: dict[tuple[int, str], int] = field(default_factory=dict)

    def register(self, level: int, kind: str, value: str, error: str | None) -> Operand:
        """A column at stage `level` holding `value` (and `error`); named by level and type, so
        that the same name has the same type in every program."""
        while len(self.stages) <= level:
            self.stages.append({})
        letter = "n" if kind == NUMBER else "b"
        index = self.counts[(level, letter)] = self.counts.get((level, letter), 0) + 1
        name = f"cel_{level}_{letter}{index}"
        self.stages[level][f"{name}_v"] = value
        if error is not None:
            self.stages[level][f"{name}_e"] = error
        return Operand(f"{name}_v", f"{name}_e" if error is not None else None, level, kind)


# An inlined node's SQL is repeated wherever its parent names it; past this size it gets a column.
_INLINE_LIMIT = 240


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _coalesce(*errors: str | None) -> str | None:
    present = [error for error in errors if error is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return f"coalesce({', '.join(present)})"


def _error_case(condition: str, reason: str) -> str:
    return f"(case when {condition} then {_sql_string(reason)} end)"


class Dialect:
    """SQL of each operation for one engine. Operands are SQL texts of non-null-or-null values."""

    name = "default"
    double = "double"
    quantity = "decimal(38, 12)"

    # -- leaves ---------------------------------------------------------------------------------
    def number(self, value: float) -> str:
        return f"cast('{value!r}' as {self.double})"

    def input_value(self, kind: str, text: str) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def input_error(self, name: str, kind: str, text: str) -> str:
        is_numeric_text = self.matches(f"trim({text})", NUMERIC_TEXT_SQL)
        return (
            f"(case when {kind} is null then null "
            f"when {kind} in ('null', 'boolean', 'object', 'array') "
            f"then 'value of {name} is ' || {kind} || ', not a number' "
            f"when {kind} = 'string' and not {is_numeric_text} "
            f"then 'value of {name} is not a number: ' || substr({text}, 1, 60) "
            f"when {self.beyond_double(text)} "
            f"then 'value of {name} is beyond the range of a double' end)"
        )

    def matches(self, text: str, pattern: str) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def beyond_double(self, text: str) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- operations that cannot fail ------------------------------------------------------------
    def negate(self, a: str) -> str:
        return f"(-{a})"

    def compare(self, op: str, a: str, b: str) -> str:
        sql_op = {"==": "=", "!=": "<>"}.get(op, op)
        return f"({a} {sql_op} {b})"

    def round(self, a: str) -> str:
        return (
            f"(trunc({a}) + case when abs({a} - trunc({a})) >= 0.5 "
            f"then cast(sign({a}) as {self.double}) else 0 end)"
        )

    def extreme(self, name: str, args: list[str]) -> str:
        known = " and ".join(f"{arg} is not null" for arg in args)
        function = "greatest" if name == "max" else "least"
        return f"(case when {known} then {function}({', '.join(args)}) end)"

    # -- operations with their own errors: (value, error) -------------------------------------
    def arithmetic(
        self, op: str, a: str, b: str, constants: tuple = (None, None)
    ) -> tuple[str, str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def power(self, a: str, b: str, constant_base: float | None) -> tuple[str, str]:
        raise NotImplementedError  # pragma: no cover

    def sqrt(self, a: str) -> tuple[str, str]:
        return (
            f"(case when {a} >= 0 then sqrt({a}) end)",
            _error_case(f"{a} < 0", "sqrt() of a negative number"),
        )

    def log(self, a: str) -> tuple[str, str]:
        return (
            f"(case when {a} > 0 then ln({a}) end)",
            _error_case(f"{a} <= 0", "log() of a number that is not positive"),
        )

    def to_quantity(self, value: str) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


class DuckDBDialect(Dialect):
    """DuckDB computes doubles the IEEE way (inf, nan, never an error): check the results."""

    name = "duckdb"

    def input_value(self, kind: str, text: str) -> str:
        number = f"cast(trim({text}) as {self.double})"
        usable = f"({kind} = 'number' or ({kind} = 'string' and "
        usable += f"{self.matches(f'trim({text})', NUMERIC_TEXT_SQL)}))"
        return (
            f"(case when {kind} is null then cast(0 as {self.double}) "
            f"when {usable} and isfinite({number}) then {number} end)"
        )

    def matches(self, text: str, pattern: str) -> str:
        return f"regexp_matches({text}, '{pattern}')"

    def beyond_double(self, text: str) -> str:
        return f"not isfinite(cast(trim({text}) as {self.double}))"

    def arithmetic(
        self, op: str, a: str, b: str, constants: tuple = (None, None)
    ) -> tuple[str, str]:
        result = f"({a} {op} {b})"
        if op == "/":
            return (
                f"(case when {b} <> 0 and isfinite({result}) then {result} end)",
                f"(case when {b} = 0 then 'division by zero' when not isfinite({result}) "
                f"then '''/'' is beyond the range of a double' end)",
            )
        return (
            f"(case when isfinite({result}) then {result} end)",
            _error_case(f"not isfinite({result})", f"'{op}' is beyond the range of a double"),
        )

    def power(self, a: str, b: str, constant_base: float | None) -> tuple[str, str]:
        result = f"pow({a}, {b})"
        return (
            f"(case when isfinite({result}) then {result} end)",
            _error_case(f"not isfinite({result})", "pow() has no finite real result"),
        )

    def to_quantity(self, value: str) -> str:
        # The shortest decimal form of the double, rounded half away from zero to 12 places.
        # Rounding text into a 128-bit decimal is slow in DuckDB (~2 us): below 10**6 it goes
        # through the 64-bit decimal(18, 12); larger doubles never have more than 12 decimals.
        text = f"cast({value} as varchar)"
        return (
            f"coalesce(cast(try_cast({text} as decimal(18, 12)) as {self.quantity}), "
            f"try_cast({text} as {self.quantity}))"
        )


class PostgresDialect(Dialect):
    """Postgres raises on float overflow, on underflow to zero and on domain errors: guard first.

    Ordinary magnitudes take a fast path. Otherwise ln|a| ± ln|b| tells how far the result is
    from the limits; close to a limit, the operation is redone on operands scaled by a power of
    two (exact), where rounding decides exactly as it would at the limit: a product or quotient
    rounds to infinity iff the scaled one reaches 2**924 (scale 2**-100), to zero iff the scaled
    one is at most 2**-875 (scale 2**200); a sum overflows iff the sum of the halves reaches
    2**1023. So the result is the IEEE one and the engine never raises.
    """

    name = "postgres"
    double = "double precision"

    # ln of the overflow threshold (2**1024 - 2**970) and of half the smallest double (2**-1075),
    # moved outwards by far more than the rounding of a sum of two logarithms
    LN_OVERFLOW = "709.782712894"
    LN_ZERO = "-745.133219103"

    def input_value(self, kind: str, text: str) -> str:
        # the property's own text is exact: numeric decides overflow and underflow exactly
        exact = f"abs(cast(trim({text}) as numeric))"
        usable = f"({kind} = 'number' or ({kind} = 'string' and "
        usable += f"{self.matches(f'trim({text})', NUMERIC_TEXT_SQL)}))"
        return (
            f"(case when {kind} is null then cast(0 as {self.double}) "
            f"when {usable} then (case when {exact} >= {OVERFLOW_AT} then null "
            f"when {exact} * {UNDERFLOW_SCALE} <= 1 then cast(0 as {self.double}) "
            f"else cast(trim({text}) as {self.double}) end) end)"
        )

    def matches(self, text: str, pattern: str) -> str:
        return f"({text} ~ '{pattern}')"

    def beyond_double(self, text: str) -> str:
        return f"abs(cast(trim({text}) as numeric)) >= {OVERFLOW_AT}"

    def log_abs(self, a: str, constant: float | None) -> str:
        """ln|a| in SQL; for a literal, its value (Postgres would fold ln(0) while planning)."""
        if constant is None:
            return f"ln(abs({a}))"
        return self.number(math.log(abs(constant))) if constant else "0"

    def scaled(self, a: str, constant: float | None, factor: float) -> str:
        """a * factor (a power of two); for a literal, its value, as Postgres would fold it
        while planning and raise if it overflowed (then the branch using it is unreachable)."""
        if constant is None:
            return f"({a} * {self.number(factor)})"
        value = constant * factor
        return self.number(value if math.isfinite(value) else 0.0)

    def arithmetic(
        self, op: str, a: str, b: str, constants: tuple = (None, None)
    ) -> tuple[str, str]:
        result = f"({a} {op} {b})"
        beyond = f"'{op}' is beyond the range of a double"
        if op in ("+", "-"):
            half = self.number(0.5)
            overflow = (
                f"(case when abs({a}) < 8e307 and abs({b}) < 8e307 then false "
                f"when abs({a}) < 1e-300 or abs({b}) < 1e-300 then false "
                f"else abs({a} * {half} {op} {b} * {half}) >= {self.number(2.0**1023)} end)"
            )
            return (
                f"(case when not {overflow} then {result} end)",
                _error_case(overflow, beyond),
            )
        ordinary = f"abs({a}) between 1e-150 and 1e150 and abs({b}) between 1e-150 and 1e150"
        log_a, log_b = (self.log_abs(x, c) for x, c in zip((a, b), constants, strict=True))
        log = f"({log_a} {'+' if op == '*' else '-'} {log_b})"
        down, up = self.scaled(a, constants[0], 2.0**-100), self.scaled(a, constants[0], 2.0**200)
        trivial = f"{a} = 0 or ({ordinary})" if op == "/" else f"{a} = 0 or {b} = 0 or ({ordinary})"
        overflow = (
            f"(case when {trivial} then false when {log} > {self.LN_OVERFLOW} then true "
            f"when {log} > 700 then abs({down} {op} {b}) >= {self.number(2.0**924)} "
            f"else false end)"
        )
        to_zero = (
            f"(case when {trivial} then false when {log} < {self.LN_ZERO} then true "
            f"when {log} < -700 then abs({up} {op} {b}) <= {self.number(2.0**-875)} "
            f"else false end)"
        )
        divide_by_zero = f"when {b} = 0 then null " if op == "/" else ""
        value = (
            f"(case {divide_by_zero}when {overflow} then null "
            f"when {to_zero} then cast(0 as {self.double}) else {result} end)"
        )
        if op == "/":
            return value, (
                f"(case when {b} = 0 then 'division by zero' "
                f"when {overflow} then {_sql_string(beyond)} end)"
            )
        return value, _error_case(overflow, beyond)

    def power(self, a: str, b: str, constant_base: float | None) -> tuple[str, str]:
        # b * ln|a| estimates ln|result|: beyond the overflow margin it is an error, below the
        # underflow margin 0, so power() itself never raises. A finite result within 1e-9
        # (relative) of the largest double may be reported as an error, and one of the two
        # smallest subnormals may become 0: hundreds of orders of magnitude from any usage.
        estimate = f"(least(greatest({b}, -1e300), 1e300) * {self.log_abs(a, constant_base)})"
        zero_negative = f"{a} = 0 and {b} < 0"
        negative_fraction = f"{a} < 0 and {b} <> trunc({b})"
        trivial = f"{a} = 0 or {b} = 0 or abs({a}) = 1"
        ln_largest = "709.782712892"  # ln(largest double) - 1e-9
        return (
            f"(case when {zero_negative} then null when {negative_fraction} then null "
            f"when {trivial} then power({a}, {b}) "
            f"when {estimate} > {ln_largest} then null "
            f"when {estimate} < -744 then cast(0 as {self.double}) "
            f"else power({a}, {b}) end)",
            f"(case when {zero_negative} then 'pow() of zero to a negative power' "
            f"when {negative_fraction} then 'pow() of a negative number to a fractional power' "
            f"when {trivial} then null "
            f"when {estimate} > {ln_largest} then 'pow() is beyond the range of a double' end)",
        )

    def to_quantity(self, value: str) -> str:
        # a double's text is its shortest round-trip form (extra_float_digits >= 1, the default)
        rounded = f"round(cast(cast({value} as text) as numeric), 12)"
        return f"(case when abs({rounded}) < 1e26 then cast({rounded} as {self.quantity}) end)"


class SparkDialect(DuckDBDialect):
    """Spark computes doubles the IEEE way like DuckDB, but raises (ANSI mode) on a division
    by zero and on casts of bad text, and its floor/ceil return bigint: guard those."""

    name = "spark"
    largest = "1.7976931348623157E308"

    def finite(self, value: str) -> str:
        return f"(abs({value}) <= {self.largest})"

    def input_value(self, kind: str, text: str) -> str:
        number = f"try_cast(trim({text}) as {self.double})"
        usable = f"({kind} = 'number' or ({kind} = 'string' and "
        usable += f"{self.matches(f'trim({text})', NUMERIC_TEXT_SQL)}))"
        return (
            f"(case when {kind} is null then cast(0 as {self.double}) "
            f"when {usable} and {self.finite(number)} then {number} end)"
        )

    def matches(self, text: str, pattern: str) -> str:
        return f"({text} rlike '{pattern}')"

    def beyond_double(self, text: str) -> str:
        return f"not coalesce({self.finite(f'try_cast(trim({text}) as {self.double})')}, false)"

    def integral(self, function: str, a: str) -> str:
        """floor/ceil/trunc as a double (doubles of 2**52 and more are integers already)."""
        whole = {"floor": f"floor({a})", "ceil": f"ceil({a})",
                 "trunc": f"(case when {a} < 0 then ceil({a}) else floor({a}) end)"}[function]
        return f"(case when abs({a}) >= 4503599627370496 then {a} else cast({whole} as double) end)"

    def round(self, a: str) -> str:
        trunc = self.integral("trunc", a)
        return (
            f"({trunc} + case when abs({a} - {trunc}) >= 0.5 "
            f"then cast(sign({a}) as {self.double}) else 0 end)"
        )

    def arithmetic(
        self, op: str, a: str, b: str, constants: tuple = (None, None)
    ) -> tuple[str, str]:
        if op == "/":
            result = f"try_divide({a}, {b})"
            beyond = _sql_string("'/' is beyond the range of a double")
            return (
                f"(case when {b} <> 0 and {self.finite(result)} then {result} end)",
                f"(case when {b} = 0 then 'division by zero' when not {self.finite(result)} "
                f"then {beyond} end)",
            )
        result = f"({a} {op} {b})"
        return (
            f"(case when {self.finite(result)} then {result} end)",
            _error_case(f"not {self.finite(result)}", f"'{op}' is beyond the range of a double"),
        )

    def power(self, a: str, b: str, constant_base: float | None) -> tuple[str, str]:
        result = f"pow({a}, {b})"
        return (
            f"(case when {self.finite(result)} then {result} end)",
            _error_case(f"not coalesce({self.finite(result)}, false)",
                        "pow() has no finite real result"),
        )

    def to_quantity(self, value: str) -> str:
        # Java's text of the double, rounded half up (away from zero) to 12 places
        return f"try_cast(cast({value} as string) as {self.quantity})"


_DIALECTS: dict[str, Dialect] = {
    "duckdb": DuckDBDialect(), "postgres": PostgresDialect(), "spark": SparkDialect(),
}


def dialect(name: str) -> Dialect:
    if name not in _DIALECTS:
        raise ValueError(f"no CEL compiler for {name!r} (one of {', '.join(_DIALECTS)})")
    return _DIALECTS[name]


def input_columns(slot: int) -> tuple[str, str]:
    """The columns the dbt macro fills for property slot `slot` (1-based): JSON kind and text."""
    return f"cel_in{slot}_kind", f"cel_in{slot}_text"


def sql_program(expression: CelExpression | str, dialect_name: str) -> dict:
    """The expression as SQL stages for one engine (JSON-ready; see `mh_cel_ctes`).

    - `inputs`: the property names; slot i (1-based) is read by the macro into the columns
      `cel_in{i}_kind` (JSON kind: number, string, boolean, null, object, array; null when
      absent) and `cel_in{i}_text` (its text);
    - `stages`: a list of {column: SQL}; stage 0 parses the inputs (`cel_in{i}_v`/`_e`),
      stage k computes the operations at nesting level k from the columns before it;
    - `error`: why the event has no quantity (a property that is not a number, an operation
      without a finite result), null otherwise; `quantity`: the decimal(38, 12) result, which
      means nothing when `error` is set, and is null without an error when the result does
      not fit decimal(38, 12).
    """
    compiled = compile_expression(expression) if isinstance(expression, str) else expression
    sql = dialect(dialect_name)
    program = _Program(sql)
    program.stages.append({})
    slots = {name: index + 1 for index, name in enumerate(compiled.properties)}
    for name, slot in slots.items():
        kind, text = input_columns(slot)
        program.stages[0][f"cel_in{slot}_v"] = sql.input_value(kind, text)
        program.stages[0][f"cel_in{slot}_e"] = sql.input_error(name, kind, text)
    result = _compile_node(compiled.tree, program, slots)
    input_errors = [f"cel_in{slot}_e" for slot in slots.values()]
    return {
        "inputs": list(compiled.properties),
        "stages": program.stages,
        "quantity": sql.to_quantity(result.value),
        "error": _coalesce(*input_errors, result.error),
    }


def sql_program_json(expression: str, dialect_name: str) -> str:
    """`sql_program` as JSON text (what the catalog stores per meter and dialect)."""
    return json.dumps(sql_program(expression, dialect_name), separators=(",", ":"))


def _compile_node(node: Node, program: _Program, slots: dict[str, int]) -> Operand:
    sql = program.dialect
    if isinstance(node, Number):
        return Operand(sql.number(node.value), None, 0, NUMBER, constant=node.value)
    if isinstance(node, Boolean):
        return Operand("true" if node.value else "false", None, 0, BOOLEAN, constant=node.value)
    if isinstance(node, Property):
        # input errors are checked for every property, whether or not its branch is taken,
        # so they are added once to the result, not passed along the tree
        return Operand(f"cel_in{slots[node.name]}_v", None, 0, NUMBER)
    operands = [_compile_node(child, program, slots) for child in children(node)]
    level = max(operand.level for operand in operands)
    values = [operand.value for operand in operands]
    errors = [operand.error for operand in operands]
    kind = check_types(node)
    value, error = _node_sql(node, sql, operands, values, errors)
    # A node repeats its operands' SQL. Inlining only nodes whose operands are columns or
    # literals, and only when short, keeps the SQL linear in the size of the expression.
    small = len(value) + len(error or "") <= _INLINE_LIMIT
    if small and not any(operand.inline for operand in operands):
        return Operand(value, error, level, kind, inline=True)
    return program.register(level + 1, kind, value, error)


def _node_sql(
    node: Node,
    sql: Dialect,
    operands: list[Operand],
    values: list[str],
    errors: list[str | None],
) -> tuple[str, str | None]:
    """(value SQL, error SQL or None) of an operation whose operands are columns or literals."""
    if isinstance(node, Unary):
        (a,) = values
        return (f"(not {a})" if node.op == "!" else sql.negate(a)), errors[0]
    if isinstance(node, Conditional):
        test, then, orelse = values
        value = f"(case {test} when true then {then} when false then {orelse} end)"
        if errors == [None, None, None]:
            return value, None
        error = (
            f"(case when {test} then {errors[1] or 'null'} "
            f"when not {test} then {errors[2] or 'null'} else {errors[0] or 'null'} end)"
        )
        return value, error
    if isinstance(node, Binary):
        a, b = values
        if node.op in ("&&", "||"):
            # CEL's logic: the side that decides the result hides an error on the other side
            sql_op, decides = ("and", "false") if node.op == "&&" else ("or", "true")
            value = f"({a} {sql_op} {b})"
            either = _coalesce(*errors)
            if either is None:
                return value, None
            decided = f"{a} is {decides} or {b} is {decides}"
            return value, f"(case when {decided} then null else {either} end)"
        if node.op in ("<", "<=", ">", ">=", "==", "!="):
            return sql.compare(node.op, a, b), _coalesce(*errors)
        constants = tuple(operand.constant for operand in operands)
        value, own = sql.arithmetic(node.op, a, b, constants)
        return value, _coalesce(*errors, own)
    assert isinstance(node, Call)
    name = node.name
    if name in ("ceil", "floor") and isinstance(sql, SparkDialect):
        return sql.integral(name, values[0]), errors[0]
    if name in ("abs", "ceil", "floor"):
        return f"{name}({values[0]})", errors[0]
    if name == "round":
        return sql.round(values[0]), errors[0]
    if name in ("max", "min"):
        return sql.extreme(name, values), _coalesce(*errors)
    if name == "pow":
        base = operands[0].constant
        value, own = sql.power(values[0], values[1], base if isinstance(base, float) else None)
        return value, _coalesce(*errors, own)
    value, own = sql.sqrt(values[0]) if name == "sqrt" else sql.log(values[0])
    return value, _coalesce(*errors, own)


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, parents before children."""
    yield node
    for child in children(node):
        yield from walk(child)


__all__ = [
    "BOOLEAN",
    "CelError",
    "CelEvaluationError",
    "CelExpression",
    "DIALECTS",
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "MAX_NODES",
    "NUMBER",
    "check_types",
    "compile_expression",
    "expression_problem",
    "fold_constants",
    "input_columns",
    "literal_value",
    "parse",
    "properties",
    "round_half_away",
    "sql_program",
    "sql_program_json",
]
