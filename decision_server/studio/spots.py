"""The spots of a rule condition a form can change: its number literals and its lists of declared values.

Pure: condition text in (as the rule file holds it), spots out with their offsets in that text,
the comparison around each one (to show it in its sentence) and, for a threshold on an input at
the top of the condition, which side of a range it bounds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping

from decision_server.rules.check import InputSpec
from decision_server.rules.ir import And, Arith, Call, Cmp, Expr, In, ListLit, Lit, Missing, Not, Or, Ref, Type
from decision_server.rules.parser import ExprError, Token, parse, tokenize

_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}


@dataclasses.dataclass(frozen=True)
class Bound:
    """A top-level threshold `input op literal`: the literal is the range's low (or high) end."""

    input: str
    side: str  # "low" or "high"
    inclusive: bool


@dataclasses.dataclass(frozen=True)
class Spot:
    """A literal of the condition the form can change, at text[start:end]."""

    kind: str  # "number" or "choices"
    start: int
    end: int
    value: float | tuple[str, ...]
    context: tuple[int, int]  # the comparison around it, as offsets
    input: str | None = None  # the input a list is compared with
    negated: bool = False  # `not in`
    quote: str = '"'  # how the list's strings are quoted
    separator: str = ", "
    bound: Bound | None = None


def spots(text: str, inputs: Mapping[str, InputSpec]) -> list[Spot]:
    """Return the spots of condition `text` in text order (none when it does not parse)."""
    try:
        tokens = tokenize(text)
        tree = parse(text)
    except ExprError:
        return []
    reader = _Reader(text, tokens)
    bounds = {id(lit): bound for lit, bound in _bounds(tree)}
    found: dict[int, Spot] = {}
    for node, ancestors in _walk(tree, ()):
        if isinstance(node, Lit) and node.type is Type.NUMBER and node.pos not in found:
            span = reader.number(node)
            if span:
                context = reader.span(_context(ancestors) or tree)
                found[node.pos] = Spot("number", *span, node.value, context, bound=bounds.get(id(node)))
        elif isinstance(node, In) and isinstance(node.container, ListLit) and isinstance(node.item, Ref):
            spec = inputs.get(node.item.name)
            if spec is None or spec.type is not Type.STRING or not spec.values or node.container.type is not Type.STRING:
                continue
            start, end = reader.span(node.container, balance=False)
            quote, separator = reader.list_style(node.container)
            context = reader.span(node)
            spot = Spot(
                "choices", start, end, tuple(node.container.values), context, node.item.name, node.negated, quote, separator
            )
            found[node.container.pos] = spot
    return [found[pos] for pos in sorted(found)]


def _walk(node: Expr, ancestors: tuple) -> Iterator[tuple[Expr, tuple]]:
    yield node, ancestors
    inner = (*ancestors, node)
    if isinstance(node, (Arith, Cmp)):
        yield from _walk(node.left, inner)
        if node.right is not None:
            yield from _walk(node.right, inner)
    elif isinstance(node, Call):
        for arg in node.args:
            yield from _walk(arg, inner)
    elif isinstance(node, In):
        yield from _walk(node.item, inner)
        yield from _walk(node.container, inner)
    elif isinstance(node, Missing):
        yield from _walk(node.operand, inner)
    elif isinstance(node, (And, Or)):
        for item in node.items:
            yield from _walk(item, inner)
    elif isinstance(node, Not):
        yield from _walk(node.item, inner)


def _chain(node: Expr) -> bool:
    """Tell an `and` the parser made of `40 <= x < 70` or `x between 40 and 70` (its parts share operands)."""
    if not isinstance(node, And) or not all(isinstance(i, Cmp) for i in node.items):
        return False
    pairs = zip(node.items, node.items[1:], strict=False)
    return all(a.right is b.left or a.left is b.left for a, b in pairs)


def _context(ancestors: tuple) -> Expr | None:
    """Return the comparison a literal sits in (a whole chain for `40 <= x < 70`)."""
    for index in range(len(ancestors) - 1, -1, -1):
        node = ancestors[index]
        if isinstance(node, (Cmp, In, Missing)):
            parent = ancestors[index - 1] if index else None
            return parent if parent is not None and _chain(parent) else node
    return None


def _bounds(tree: Expr) -> Iterator[tuple[Lit, Bound]]:
    """Yield the literals of the top-level `and`ed thresholds `input op number` with the side they bound."""
    atoms = [tree]
    while any(isinstance(a, And) for a in atoms):
        atoms = [item for a in atoms for item in (a.items if isinstance(a, And) else (a,))]
    for atom in atoms:
        if not isinstance(atom, Cmp) or atom.op not in _FLIP:
            continue
        ref, lit, op = atom.left, atom.right, atom.op
        if isinstance(ref, Lit):
            ref, lit, op = lit, ref, _FLIP[op]
        if isinstance(ref, Ref) and isinstance(lit, Lit) and lit.type is Type.NUMBER:
            side = "low" if op in (">", ">=") else "high"
            yield lit, Bound(ref.name, side, op in (">=", "<="))


class _Reader:
    """Token spans of parsed nodes in the condition text."""

    def __init__(self, text: str, tokens: list[Token]):
        self.text = text
        self.tokens = tokens
        self.at = {t.pos: i for i, t in enumerate(tokens)}

    def _is(self, index: int, *texts: str) -> bool:
        token = self.tokens[index] if 0 <= index < len(self.tokens) else None
        return token is not None and token.kind == "op" and token.text in texts

    def _close(self, index: int) -> int:
        """Return the index of the bracket closing the one at `index`."""
        depth = 0
        for i in range(index, len(self.tokens)):
            if self._is(i, "(", "["):
                depth += 1
            elif self._is(i, ")", "]"):
                depth -= 1
                if depth == 0:
                    return i
        return len(self.tokens) - 1

    def last(self, node: Expr) -> int:
        """Return the index of a node's last token (brackets around it aside)."""
        first = self.at[node.pos]
        if isinstance(node, Lit):
            if self.tokens[first].kind == "name":  # date("…")
                return self._close(first + 1)
            while self._is(first, "-"):
                first += 1
            return first
        if isinstance(node, ListLit):
            return self._close(first)
        if isinstance(node, Call):
            return self._close(first + 1)
        if isinstance(node, (Arith, Cmp)):
            return self.last(node.left if node.right is None else node.right)
        if isinstance(node, In):
            return self.last(node.container)
        if isinstance(node, Missing):
            index = self.last(node.operand)
            while self.tokens[index].text != "missing":
                index += 1
            return index
        if isinstance(node, (And, Or)):
            return self.last(node.items[-1])
        if isinstance(node, Not):
            return self.last(node.item)
        return first

    def span(self, node: Expr, *, balance: bool = True) -> tuple[int, int]:
        """Return a node's offsets, widened over brackets it leaves open or closes."""
        first, last = self.at[node.pos], self.last(node)
        while balance:
            depth = low = 0
            for i in range(first, last + 1):
                depth += 1 if self._is(i, "(", "[") else -1 if self._is(i, ")", "]") else 0
                low = min(low, depth)
            if low < 0 and self._is(first - 1, "(", "["):
                first -= 1
            elif depth - low > 0 and self._is(last + 1, ")", "]"):
                last += 1
            else:
                break
        end = self.tokens[last]
        return self.tokens[first].pos, end.pos + len(end.text)

    def number(self, node: Lit) -> tuple[int, int] | None:
        """Return the offsets of a number as written (`70`, `-0.5`); None when it is more (`-(5)`, `- -5`)."""
        first = self.at[node.pos]
        token = self.tokens[first]
        if token.kind == "number":
            return token.pos, token.pos + len(token.text)
        following = self.tokens[first + 1]
        if self._is(first, "-") and following.kind == "number" and following.pos == token.pos + 1:
            return token.pos, following.pos + len(following.text)
        return None

    def list_style(self, node: ListLit) -> tuple[str, str]:
        """Return the quote of a list's strings and the text between its items, to write it back alike."""
        quote = self.text[node.positions[0]] if node.positions else '"'
        separator = ", "
        if len(node.positions) > 1:
            first = self.at[node.positions[0]]
            separator = self.text[self.tokens[first].pos + len(self.tokens[first].text) : node.positions[1]]
            if "\n" in separator:
                separator = ", "
        return quote, separator
