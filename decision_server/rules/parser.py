"""Our own safe parser for rule conditions: text in, untyped IR out, never eval of user text.

Grammar (lowest precedence first):

    condition := or
    or        := and ("or" and)*
    and       := not ("and" not)*
    not       := "not" not | test
    test      := sum [ (cmp sum)+ | "is" ["not"] "missing" | ["not"] "in" (list | sum)
                     | "between" sum "and" sum ]
    sum       := term (("+" | "-") term)*
    term      := unary (("*" | "/") unary)*
    unary     := "-" unary | atom
    atom      := number | string | "true" | "false" | name ["(" [condition ("," condition)*] ")"]
                 | "(" condition ")"
    list      := "[" [literal ("," literal)*] "]"

Chained comparisons (`40 <= value_score < 70`) and `between` (inclusive) become `and`s.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime

from decision_server.rules.ir import And, Arith, Call, Cmp, Expr, In, ListLit, Lit, Missing, Not, Or, Ref, Type

MAX_LENGTH = 4000
MAX_DEPTH = 40
MAX_LIST = 1000

KEYWORDS = {"and", "or", "not", "in", "is", "missing", "between", "true", "false"}
COMPARISONS = {"<", "<=", ">", ">=", "==", "!="}

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op><=|>=|==|!=|<|>|\+|-|\*|/|\(|\)|\[|\]|,)
  | (?P<bad>=|.)
    """,
    re.VERBOSE,
)


class ExprError(Exception):
    """A condition that cannot be parsed or checked; `pos` is the offset in the text."""

    def __init__(self, message: str, pos: int):
        super().__init__(message)
        self.message = message
        self.pos = pos


@dataclasses.dataclass(frozen=True, slots=True)
class Token:
    kind: str  # number, string, name, keyword, op, end
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    """Split condition text into tokens; reject characters the language does not use."""
    if len(text) > MAX_LENGTH:
        raise ExprError(f"condition is longer than {MAX_LENGTH} characters", MAX_LENGTH)
    tokens: list[Token] = []
    for match in _TOKEN.finditer(text):
        kind, value, pos = match.lastgroup, match.group(), match.start()
        if kind == "space":
            continue
        if kind == "bad":
            hint = " (write == to compare)" if value == "=" else ""
            if value in "\"'":
                raise ExprError("string is not closed", pos)
            raise ExprError(f"unexpected character {value!r}{hint}", pos)
        if kind == "name" and value in KEYWORDS:
            kind = "keyword"
        tokens.append(Token(kind, value, pos))
    tokens.append(Token("end", "", len(text)))
    return tokens


def parse(text: str) -> Expr:
    """Parse one condition into the untyped IR (names are resolved later by the checker)."""
    parser = _Parser(tokenize(text))
    node = parser.condition()
    token = parser.peek()
    if token.kind != "end":
        raise ExprError(f"unexpected {_describe(token)} after a complete condition", token.pos)
    return node


def _describe(token: Token) -> str:
    if token.kind == "end":
        return "end of condition"
    return f"'{token.text}'"


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: m.group(1), body)


def parse_timestamp(text: str) -> float:
    """Turn an ISO 8601 date or time (UTC when no offset is given) into epoch seconds."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


class _Parser:
    def __init__(self, tokens: list[Token]):
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    def peek(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def accept(self, kind: str, text: str | None = None) -> Token | None:
        token = self.peek()
        if token.kind == kind and (text is None or token.text == text):
            self.index += 1
            return token
        return None

    def expect(self, kind: str, text: str, what: str) -> Token:
        token = self.accept(kind, text)
        if token is None:
            found = self.peek()
            raise ExprError(f"expected {what}, found {_describe(found)}", found.pos)
        return token

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprError(f"condition is nested more than {MAX_DEPTH} levels deep", self.peek().pos)

    def condition(self) -> Expr:
        self.nested()
        try:
            return self.or_()
        finally:
            self.depth -= 1

    def or_(self) -> Expr:
        first = self.and_()
        items = [first]
        while self.accept("keyword", "or"):
            items.append(self.and_())
        return first if len(items) == 1 else Or(tuple(items), first.pos)

    def and_(self) -> Expr:
        first = self.not_()
        items = [first]
        while self.accept("keyword", "and"):
            items.append(self.not_())
        return first if len(items) == 1 else And(tuple(items), first.pos)

    def not_(self) -> Expr:
        token = self.accept("keyword", "not")
        if token:
            self.nested()
            try:
                return Not(self.not_(), token.pos)
            finally:
                self.depth -= 1
        return self.test()

    def test(self) -> Expr:
        left = self.sum()
        token = self.peek()
        if token.kind == "op" and token.text in COMPARISONS:
            parts: list[Expr] = []
            while (token := self.peek()).kind == "op" and token.text in COMPARISONS:
                self.advance()
                right = self.sum()
                parts.append(Cmp(token.text, left, right, left.pos))
                left = right
            return parts[0] if len(parts) == 1 else And(tuple(parts), parts[0].pos)
        if self.accept("keyword", "is"):
            negated = bool(self.accept("keyword", "not"))
            self.expect("keyword", "missing", "'missing' after 'is'")
            return Missing(left, negated, left.pos)
        if token.kind == "keyword" and token.text == "not" and self.tokens[self.index + 1].text == "in":
            self.advance()
            self.advance()
            return In(left, self.container(), True, left.pos)
        if self.accept("keyword", "in"):
            return In(left, self.container(), False, left.pos)
        if self.accept("keyword", "between"):
            low = self.sum()
            self.expect("keyword", "and", "'and' in 'between … and …'")
            high = self.sum()
            return And((Cmp(">=", left, low, left.pos), Cmp("<=", left, high, left.pos)), left.pos)
        return left

    def container(self) -> ListLit | Ref:
        start = self.peek()
        if self.accept("op", "["):
            values: list = []
            positions: list[int] = []
            types: set[Type] = set()
            if not self.accept("op", "]"):
                while True:
                    item = self.unary()
                    if not isinstance(item, Lit) or item.type not in (Type.NUMBER, Type.STRING):
                        raise ExprError("a list may hold only numbers or strings", item.pos)
                    values.append(item.value)
                    positions.append(item.pos)
                    types.add(item.type)
                    if len(values) > MAX_LIST:
                        raise ExprError(f"a list may hold at most {MAX_LIST} values", item.pos)
                    if self.accept("op", "]"):
                        break
                    self.expect("op", ",", "',' or ']' in the list")
            if len(types) > 1:
                raise ExprError("a list must hold only numbers or only strings", start.pos)
            return ListLit(tuple(values), types.pop() if types else Type.STRING, start.pos, tuple(positions))
        node = self.sum()
        if not isinstance(node, Ref):
            raise ExprError('\'in\' needs a list like ["a", "b"] or the name of a list input', node.pos)
        return node

    def sum(self) -> Expr:
        left = self.term()
        while (token := self.peek()).kind == "op" and token.text in "+-":
            self.advance()
            left = Arith(token.text, left, self.term(), left.pos)
        return left

    def term(self) -> Expr:
        left = self.unary()
        while (token := self.peek()).kind == "op" and token.text in "*/":
            self.advance()
            left = Arith(token.text, left, self.unary(), left.pos)
        return left

    def unary(self) -> Expr:
        token = self.accept("op", "-")
        if token:
            self.nested()
            try:
                operand = self.unary()
            finally:
                self.depth -= 1
            if isinstance(operand, Lit) and operand.type is Type.NUMBER:
                return Lit(-operand.value, Type.NUMBER, token.pos)
            return Arith("neg", operand, None, token.pos)
        return self.atom()

    def atom(self) -> Expr:
        token = self.advance()
        if token.kind == "number":
            value = float(token.text)
            if value != value or value in (float("inf"), float("-inf")):
                raise ExprError(f"number {token.text} is out of range", token.pos)
            return Lit(value, Type.NUMBER, token.pos)
        if token.kind == "string":
            return Lit(_unquote(token.text), Type.STRING, token.pos)
        if token.kind == "keyword" and token.text in ("true", "false"):
            return Lit(token.text == "true", Type.BOOLEAN, token.pos)
        if token.kind == "name":
            if self.accept("op", "("):
                return self.call(token)
            return Ref(token.text, None, token.pos)
        if token.kind == "op" and token.text == "(":
            node = self.condition()
            self.expect("op", ")", "')'")
            return node
        raise ExprError(f"expected a value, found {_describe(token)}", token.pos)

    def call(self, name: Token) -> Expr:
        args: list[Expr] = []
        if not self.accept("op", ")"):
            while True:
                args.append(self.condition())
                if self.accept("op", ")"):
                    break
                self.expect("op", ",", "',' or ')' in the call")
        if name.text == "date":
            if len(args) != 1 or not isinstance(args[0], Lit) or args[0].type is not Type.STRING:
                raise ExprError('date() takes one text like date("2026-01-31")', name.pos)
            try:
                return Lit(parse_timestamp(args[0].value), Type.TIMESTAMP, name.pos)
            except ValueError:
                raise ExprError(f"{args[0].value!r} is not a date like 2026-01-31", args[0].pos) from None
        return Call(name.text, tuple(args), name.pos)
