"""CloudEvents SQL Expression Language v1 (CESQL): the `cesql` dialect of Trigger `filters`.

No maintained CESQL library exists on PyPI, so this is a lexer, parser and
evaluator written from the specification (cloudevents/spec `cesql/spec.md`,
its ANTLR grammar and its conformance TCK, run by tests/unit/test_cesql.py).
Where the spec's text and its grammar leave room, this follows the engine
Knative runs (cloudevents/sdk-go `sql/v2`, used by knative/eventing
`pkg/eventfilter/subscriptionsapi/cesql_filter.go`), so a Trigger filters
locally as it does in a cluster:

- the grammar's tokens, maximal munch: `4 -1` is two atoms side by side (a
  parse error) and `-1` one integer literal; keywords, function names and
  identifiers are case-insensitive (identifiers are lowercased);
- AND, OR and XOR share one precedence and group to the right, as the
  grammar's `<assoc=right>` says: `a AND b OR c` is `a AND (b OR c)`;
- evaluation fails fast: the first error ends it with the zero value of the
  whole expression's type (a function that fails keeps the value it returned);
- `NOT 10` casts 10 to true (the spec's cast table) and gives false.

Two choices are this engine's own: strings are sequences of characters (the
spec), not bytes as in sdk-go, so LENGTH('é') is 1; and an expression nesting
deeper than MAX_DEPTH (200) levels is a parse error, so neither parsing nor
evaluating can exhaust Python's recursion limit (a chain of AND/OR/XOR is flat
and may be as long as you like).

Used as a filter (`matches`), an expression passes an event only when it
evaluates to true without error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Value = bool | int | str
Kind = Literal[
    "parse", "math", "cast", "missingAttribute", "missingFunction", "functionEvaluation", "generic"
]

INT_MIN = -(2**31)
INT_MAX = 2**31 - 1
REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type")
# Unicode White_Space, which TRIM removes (Python's str.strip also removes some control characters).
WHITE_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


class CesqlError(Exception):
    """An error of one of the spec's kinds; `value` is what the failing operation returned."""

    def __init__(self, kind: Kind, message: str, value: Value = False) -> None:
        super().__init__(message)
        self.kind: Kind = kind
        self.message = message
        self.value = value


# ---------------------------------------------------------------- types and casts


def type_name(value: Value) -> str:
    return "Boolean" if isinstance(value, bool) else "Integer" if isinstance(value, int) else "String"


def wrap(number: int) -> int:
    """A 32-bit two's-complement result, as Go's int32 arithmetic gives."""
    return (number - INT_MIN) % 2**32 + INT_MIN


_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")


def to_integer(value: Value) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if _INTEGER_TEXT.fullmatch(value) and INT_MIN <= int(value) <= INT_MAX:
        return int(value)
    raise CesqlError("cast", f"cannot cast String {value!r} to Integer", 0)


def to_boolean(value: Value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise CesqlError("cast", f"cannot cast String {value!r} to Boolean", False)


def to_string(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def cast_like(value: Value, target: Value) -> Value:
    """`value` cast to the type of `target` (how `=` and IN pick the type to compare in)."""
    if isinstance(target, bool):
        return to_boolean(value)
    if isinstance(target, int):
        return to_integer(value)
    return to_string(value)


# ---------------------------------------------------------------- expressions


class Expression:
    """A parsed CESQL expression; `evaluate` raises `CesqlError` at the first error (fail fast)."""

    zero: Value = False

    def children(self) -> tuple[Expression, ...]:
        return ()

    def evaluate(self, event: Mapping[str, Value]) -> Value:
        raise NotImplementedError

    def matches(self, event: Mapping[str, Value]) -> bool:
        """The filter rule: true without error passes; anything else (errors included) does not."""
        try:
            return self.evaluate(event) is True
        except CesqlError:
            return False

    def result(self, event: Mapping[str, Value]) -> tuple[Value, Kind | None]:
        """The value and the error kind, as the TCK states them: on error, the zero of this type."""
        try:
            return self.evaluate(event), None
        except CesqlError as exc:
            return (exc.value if isinstance(self, Call) else self.zero), exc.kind


@dataclass(frozen=True)
class Constant(Expression):
    value: Value

    def evaluate(self, event: Mapping[str, Value]) -> Value:
        return self.value

    @property
    def zero(self) -> Value:  # type: ignore[override]
        return type(self.value)()


@dataclass(frozen=True)
class Attribute(Expression):
    name: str

    def evaluate(self, event: Mapping[str, Value]) -> Value:
        value = event.get(self.name)
        if value is None:
            raise CesqlError("missingAttribute", f"attribute {self.name!r} is not in the event")
        return value


@dataclass(frozen=True)
class Exists(Expression):
    name: str

    def evaluate(self, event: Mapping[str, Value]) -> Value:
        return self.name in REQUIRED_ATTRIBUTES or self.name in event


@dataclass(frozen=True)
class Not(Expression):
    operand: Expression

    def children(self) -> tuple[Expression, ...]:
        return (self.operand,)

    def evaluate(self, event: Mapping[str, Value]) -> Value:
        return not to_boolean(self.operand.evaluate(event))


@dataclass(frozen=True)
class Negate(Expression):
    operand: Expression
    zero = 0

    def children(self) -> tuple[Expression, ...]:
        return (self.operand,)

    def evaluate(self, event: Mapping[str, Value]) -> Value:
        return wrap(-to_integer(self.operand.evaluate(event)))


def _truncate(x: int, y: int) -> int:
    """x / y rounded towards 0 (Go's integer division); a MathError and 0 when y is 0."""
    if y == 0:
        raise CesqlError("math", "division by zero", 0)
    quotient = abs(x) // abs(y)
    return quotient if (x < 0) == (y < 0) else -quotient


ARITHMETIC: dict[str, Callable[[int, int], int]] = {
    "*": lambda x, y: wrap(x * y),
    "/": lambda x, y: wrap(_truncate(x, y)),
    "%": lambda x, y: wrap(x - y * _truncate(x, y)),  # the sign of x, as the spec says
    "+": lambda x, y: wrap(x + y),
    "-": lambda x, y: wrap(x - y),
}


ORDERING: dict[str, Callable[[int, int], bool]] = {
    "<": lambda x, y: x < y,
    "<=": lambda x, y: x <= y,
    ">": lambda x, y: x > y,
    ">=": lambda x, y: x >= y,
}


@dataclass(frozen=True)
class Binary(Expression):
    operator: str
    left: Expression
    right: Expression

    @property
    def zero(self) -> Value:  # type: ignore[override]
        return 0 if self.operator in ARITHMETIC else False

    def children(self) -> tuple[Expression, ...]:
        return (self.left, self.right)

    def evaluate(self, event: Mapping[str, Value]) -> Value:
        operator = self.operator
        x = self.left.evaluate(event)
        y = self.right.evaluate(event)
        if operator in ("=", "!=", "<>"):
            return (cast_like(x, y) == y) is (operator == "=")
        if operator in ORDERING:
            return ORDERING[operator](to_integer(x), to_integer(y))
        return ARITHMETIC[operator](to_integer(x), to_integer(y))


@dataclass(frozen=True)
class Logic(Expression):
    """AND, OR and XOR: one precedence, grouped to the right (`a AND b OR c` is `a AND (b OR c)`).

    Kept flat and evaluated in one loop, so a long chain costs no recursion. AND and OR
    short-circuit: the rest of the chain is not evaluated once the left operand decides it.
    """

    operands: tuple[Expression, ...]
    operators: tuple[str, ...]  # between the operands

    def children(self) -> tuple[Expression, ...]:
        return self.operands

    def evaluate(self, event: Mapping[str, Value]) -> Value:
        flip = False  # the XORs passed so far: the value of the rest of the chain, flipped
        for operand, operator in zip(self.operands, self.operators, strict=False):
            left = to_boolean(operand.evaluate(event))
            if operator == "AND" and not left:
                return flip
            if operator == "OR" and left:
                return not flip
            if operator == "XOR":
                flip ^= left
        return flip != to_boolean(self.operands[-1].evaluate(event))


@dataclass(frozen=True)
class Like(Expression):
    operand: Expression
    pattern: str

    def children(self) -> tuple[Expression, ...]:
        return (self.operand,)

    def evaluate(self, event: Mapping[str, Value]) -> Value:
        return like(to_string(self.operand.evaluate(event)), self.pattern)


@dataclass(frozen=True)
class In(Expression):
    operand: Expression
    choices: tuple[Expression, ...]

    def children(self) -> tuple[Expression, ...]:
        return (self.operand, *self.choices)

    def evaluate(self, event: Mapping[str, Value]) -> Value:
        value = self.operand.evaluate(event)
        return any(cast_like(choice.evaluate(event), value) == value for choice in self.choices)


@dataclass(frozen=True)
class Function:
    name: str
    parameters: tuple[type, ...]
    variadic: type | None
    returns: Value
    run: Callable[..., Value]


@dataclass(frozen=True)
class Call(Expression):
    name: str
    arguments: tuple[Expression, ...]

    @property
    def zero(self) -> Value:  # type: ignore[override]
        function = resolve(self.name, len(self.arguments))
        return False if function is None else function.returns

    def children(self) -> tuple[Expression, ...]:
        return self.arguments

    def evaluate(self, event: Mapping[str, Value]) -> Value:
        function = resolve(self.name, len(self.arguments))
        if function is None:
            arity = len(self.arguments)
            raise CesqlError("missingFunction", f"no function {self.name} takes {arity} arguments")
        values: list[Value] = []
        for index, argument in enumerate(self.arguments):
            wanted = function.parameters[index] if index < len(function.parameters) else function.variadic
            try:
                values.append(_cast_to(argument.evaluate(event), wanted))
            except CesqlError as exc:
                raise CesqlError(exc.kind, exc.message, function.returns) from None
        return function.run(*values)


def _cast_to(value: Value, wanted: type | None) -> Value:
    if wanted is str:
        return to_string(value)
    if wanted is int:
        return to_integer(value)
    if wanted is bool:
        return to_boolean(value)
    return value


# ---------------------------------------------------------------- LIKE


def like(text: str, pattern: str) -> bool:
    """sdk-go's LIKE matcher, over characters: `%` any run, `_` one character, `\\%` and `\\_` literal."""
    text_index = pattern_index = 0
    last_wildcard = -1
    last_match = 0
    if not pattern:
        return not text
    while text_index < len(text):
        if (
            pattern_index < len(pattern) - 1
            and pattern[pattern_index] == "\\"
            and pattern[pattern_index + 1] in "_%"
            and pattern[pattern_index + 1] == text[text_index]
        ):
            pattern_index += 2
            text_index += 1
        elif pattern_index < len(pattern) and pattern[pattern_index] in ("_", text[text_index]):
            text_index += 1
            pattern_index += 1
        elif pattern_index < len(pattern) and pattern[pattern_index] == "%":
            last_wildcard = pattern_index
            last_match = text_index
            pattern_index += 1
        elif last_wildcard != -1:
            pattern_index = last_wildcard + 1
            last_match += 1
            text_index = last_match
        else:
            return False
    return all(char == "%" for char in pattern[pattern_index:])


# ---------------------------------------------------------------- built-in functions


def _abs(x: int) -> Value:
    if x == INT_MIN:
        raise CesqlError("math", "integer overflow while computing ABS", INT_MAX)
    return abs(x)


def _left(text: str, count: int) -> Value:
    if count < 0:
        raise CesqlError("functionEvaluation", f"LEFT length argument is < 0: {count}", text)
    return text[:count]


def _right(text: str, count: int) -> Value:
    if count < 0:
        raise CesqlError("functionEvaluation", f"RIGHT length argument is < 0: {count}", text)
    return text[len(text) - count :] if count < len(text) else text


def _substring(text: str, position: int, length: int | None = None) -> Value:
    if position == 0:
        return ""
    if position > len(text) or position < -len(text):
        raise CesqlError("functionEvaluation", f"SUBSTRING position {position} is outside the string", "")
    if length is not None and length < 0:
        raise CesqlError("functionEvaluation", f"SUBSTRING length {length} is negative", "")
    start = len(text) + position if position < 0 else position - 1
    return text[start:] if length is None else text[start : start + length]


def _concat_ws(separator: str, *parts: str) -> Value:
    return separator.join(parts)


def _can(cast: Callable[[Value], Value]) -> Callable[[Value], Value]:
    def check(value: Value) -> Value:
        try:
            cast(value)
        except CesqlError:
            return False
        return True

    return check


FUNCTIONS: dict[str, list[Function]] = {}
for _function in (
    Function("ABS", (int,), None, 0, _abs),
    Function("LENGTH", (str,), None, 0, len),
    Function("CONCAT", (), str, "", lambda *parts: "".join(parts)),
    Function("CONCAT_WS", (str,), str, "", _concat_ws),
    Function("LOWER", (str,), None, "", str.lower),
    Function("UPPER", (str,), None, "", str.upper),
    Function("TRIM", (str,), None, "", lambda text: text.strip(WHITE_SPACE)),
    Function("LEFT", (str, int), None, "", _left),
    Function("RIGHT", (str, int), None, "", _right),
    Function("SUBSTRING", (str, int), None, "", _substring),
    Function("SUBSTRING", (str, int, int), None, "", _substring),
    Function("INT", (object,), None, 0, to_integer),
    Function("BOOL", (object,), None, False, to_boolean),
    Function("STRING", (object,), None, "", to_string),
    Function("IS_INT", (object,), None, False, _can(to_integer)),
    Function("IS_BOOL", (object,), None, False, _can(to_boolean)),
):
    FUNCTIONS.setdefault(_function.name, []).append(_function)


def resolve(name: str, arity: int) -> Function | None:
    """The function of this name taking `arity` arguments: a fixed arity first, then a variadic one."""
    overloads = FUNCTIONS.get(name, [])
    fixed = [f for f in overloads if f.variadic is None and len(f.parameters) == arity]
    variadic = [f for f in overloads if f.variadic is not None and len(f.parameters) <= arity]
    return next(iter(fixed or variadic), None)


# ---------------------------------------------------------------- lexer

# The grammar's lexer rules in their order: the longest match wins, then the earliest rule.
_TOKEN_RULES: Sequence[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(pattern, re.DOTALL))
    for name, pattern in (
        ("SPACE", r"[ \t\r\n]+"),
        ("(", r"\("),
        (")", r"\)"),
        (",", r","),
        ("'", r"'"),
        ('"', r'"'),
        ("AND", r"AND"),
        ("OR", r"OR"),
        ("XOR", r"XOR"),
        ("NOT", r"NOT"),
        ("*", r"\*"),
        ("/", r"/"),
        ("%", r"%"),
        ("+", r"\+"),
        ("-", r"-"),
        ("=", r"="),
        ("!=", r"!="),
        (">", r">"),
        (">=", r">="),
        ("<", r"<"),
        ("<>", r"<>"),
        ("<=", r"<="),
        ("LIKE", r"LIKE"),
        ("EXISTS", r"EXISTS"),
        ("IN", r"IN"),
        ("TRUE", r"TRUE"),
        ("FALSE", r"FALSE"),
        ("DSTRING", r'"(?:\\.|""|[^"\\])*"'),
        ("SSTRING", r"'(?:\\.|''|[^'\\])*'"),
        ("INTEGER", r"[+-]?[0-9]+"),
        ("IDENTIFIER", r"[A-Z]+"),
        ("IDENTIFIER_WITH_NUMBER", r"[A-Z0-9]+"),
        ("FUNCTION_IDENTIFIER", r"[A-Z][A-Z_]*"),
    )
]
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    at: int


def tokens(text: str) -> list[Token]:
    """The expression's tokens; keywords match in any case (the grammar reads the text uppercased)."""
    upper = text.translate(_ASCII_UPPER)
    found: list[Token] = []
    at = 0
    while at < len(text):
        best: tuple[int, str] | None = None
        for kind, pattern in _TOKEN_RULES:
            match = pattern.match(upper, at)
            if match and (best is None or match.end() > best[0]):
                best = (match.end(), kind)
        if best is None:
            raise CesqlError("parse", f"unexpected character {text[at]!r} at {at + 1}")
        end, kind = best
        if kind != "SPACE":
            found.append(Token(kind, text[at:end], at))
        at = end
    found.append(Token("EOF", "", len(text)))
    return found


# ---------------------------------------------------------------- parser

# The grammar's alternatives, earliest binding tightest (ANTLR's precedence climbing).
_BINARY_PRECEDENCE = {
    **dict.fromkeys(("*", "/", "%"), 6),
    **dict.fromkeys(("+", "-"), 5),
    **dict.fromkeys(("=", "!=", "<>", ">=", "<=", "<", ">"), 4),
}
_LOGIC_OPERATORS = ("AND", "OR", "XOR")
_LIKE, _IN, _NEGATE, _NOT, _LOGIC = 9, 7, 10, 11, 3
# Deeper expressions are refused (a parse error), so neither parsing nor evaluating can exhaust
# Python's recursion limit; a chain of AND/OR/XOR is flat and does not count against it.
MAX_DEPTH = 200


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokens(text)
        self.index = 0
        self.depth = 0

    def peek(self, offset: int = 0) -> Token:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def take(self, kind: str) -> Token:
        token = self.peek()
        if token.kind != kind:
            raise self.unexpected(f"{kind!r}")
        self.index += 1
        return token

    def unexpected(self, wanted: str) -> CesqlError:
        token = self.peek()
        seen = "the end" if token.kind == "EOF" else repr(token.text)
        return CesqlError("parse", f"expected {wanted} at {token.at + 1}, found {seen}")

    def expression(self, precedence: int = 0) -> Expression:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise CesqlError("parse", f"the expression nests deeper than {MAX_DEPTH} levels")
        try:
            return self._expression(precedence)
        finally:
            self.depth -= 1

    def _expression(self, precedence: int) -> Expression:
        left = self.primary()
        while True:
            token = self.peek()
            negated = token.kind == "NOT" and self.peek(1).kind in ("LIKE", "IN")
            suffix = self.peek(1).kind if negated else token.kind
            if suffix == "LIKE" and precedence <= _LIKE:
                self.index += 2 if negated else 1
                literal = self.peek()
                if literal.kind not in ("SSTRING", "DSTRING"):
                    raise self.unexpected("a string literal after LIKE")
                self.index += 1
                left = Like(left, _string_value(literal))
            elif suffix == "IN" and precedence <= _IN:
                self.index += 2 if negated else 1
                left = In(left, self.set_expression())
            elif token.kind in _LOGIC_OPERATORS and precedence <= _LOGIC:
                operands, operators = [left], []
                while self.peek().kind in _LOGIC_OPERATORS:
                    operators.append(self.peek().kind)
                    self.index += 1
                    operands.append(self.expression(_LOGIC + 1))
                left = Logic(tuple(operands), tuple(operators))
                continue
            elif token.kind in _BINARY_PRECEDENCE and _BINARY_PRECEDENCE[token.kind] >= precedence:
                level = _BINARY_PRECEDENCE[token.kind]
                self.index += 1
                left = Binary(token.kind, left, self.expression(level + 1))  # grouped to the left
                continue
            else:
                return left
            if negated:
                left = Not(left)

    def set_expression(self) -> tuple[Expression, ...]:
        self.take("(")
        items = [self.expression()]
        while self.peek().kind == ",":
            self.index += 1
            items.append(self.expression())
        self.take(")")
        return tuple(items)

    def primary(self) -> Expression:
        token = self.peek()
        kind = token.kind
        if kind in ("IDENTIFIER", "FUNCTION_IDENTIFIER") and self.peek(1).kind == "(":
            self.index += 2
            arguments: list[Expression] = []
            if self.peek().kind != ")":
                arguments.append(self.expression())
                while self.peek().kind == ",":
                    self.index += 1
                    arguments.append(self.expression())
            self.take(")")
            return Call(token.text.upper(), tuple(arguments))
        self.index += 1
        if kind == "NOT":
            return Not(self.expression(_NOT))
        if kind == "-":
            return Negate(self.expression(_NEGATE))
        if kind == "EXISTS":
            name = self.peek()
            if name.kind not in ("IDENTIFIER", "IDENTIFIER_WITH_NUMBER"):
                raise self.unexpected("an attribute name after EXISTS")
            self.index += 1
            return Exists(name.text.lower())
        if kind == "(":
            inner = self.expression()
            self.take(")")
            return inner
        if kind in ("TRUE", "FALSE"):
            return Constant(kind == "TRUE")
        if kind in ("SSTRING", "DSTRING"):
            return Constant(_string_value(token))
        if kind == "INTEGER":
            number = int(token.text)
            if not INT_MIN <= number <= INT_MAX:
                raise CesqlError("parse", f"integer literal {token.text} is outside the 32-bit range")
            return Constant(number)
        if kind in ("IDENTIFIER", "IDENTIFIER_WITH_NUMBER"):
            return Attribute(token.text.lower())
        self.index -= 1
        raise self.unexpected("an expression")


def _string_value(token: Token) -> str:
    """A literal's text without its quotes, only the escaped quote unescaped (as sdk-go does)."""
    quote = token.text[0]
    return token.text[1:-1].replace("\\" + quote, quote)


def parse(text: str) -> Expression:
    """The expression in `text`; `CesqlError` (kind "parse") naming what is wrong and where."""
    parser = _Parser(text)
    expression = parser.expression()
    if parser.peek().kind != "EOF":
        raise parser.unexpected("an operator or the end")
    if depth(expression) > MAX_DEPTH:
        raise CesqlError("parse", f"the expression nests deeper than {MAX_DEPTH} levels")
    return expression


def depth(expression: Expression) -> int:
    """How many levels of operands the evaluation of `expression` goes down, counted without recursion."""
    deepest = 0
    pending = [(expression, 1)]
    while pending:
        node, level = pending.pop()
        deepest = max(deepest, level)
        pending.extend((child, level + 1) for child in node.children())
    return deepest
