"""The typed intermediate form that rule conditions are parsed into and every backend compiles."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any


class Type(str, enum.Enum):
    """The value types of the expression language."""

    NUMBER = "number"
    STRING = "string"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"
    LIST = "list"  # a list of strings, e.g. an offer's target stages

    def __str__(self) -> str:
        return self.value


# Every node carries `pos`: the offset of its first character in the condition text, for errors.


@dataclasses.dataclass(frozen=True, slots=True)
class Lit:
    """A literal: a number (float), string, boolean, or timestamp (epoch seconds)."""

    value: Any
    type: Type
    pos: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class ListLit:
    """A literal list of strings or numbers, only as the right side of `in`."""

    values: tuple
    type: Type  # the element type
    pos: int = 0
    positions: tuple = ()  # where each value starts, for errors about one of them


@dataclasses.dataclass(frozen=True, slots=True)
class Ref:
    """A reference to a declared input; `type` is filled in by the checker."""

    name: str
    type: Type | None = None
    pos: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Arith:
    """Arithmetic on numbers: `+ - * /`; `neg` has `right` None."""

    op: str
    left: Expr
    right: Expr | None
    pos: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """A call of one of the built-in functions (FUNCTIONS)."""

    func: str
    args: tuple
    pos: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Cmp:
    """A comparison `< <= > >= == !=` of two values of one type."""

    op: str
    left: Expr
    right: Expr
    pos: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class In:
    """Membership of `item` in a literal list or a list-typed input; `negated` for `not in`."""

    item: Expr
    container: ListLit | Ref
    negated: bool = False
    pos: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Missing:
    """`x is missing` (or `is not missing` when negated): true or false, never unknown."""

    operand: Expr
    negated: bool = False
    pos: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class And:
    """Conjunction (Kleene three-valued logic over missing values)."""

    items: tuple
    pos: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Or:
    """Disjunction (Kleene three-valued logic over missing values)."""

    items: tuple
    pos: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Not:
    """Negation: unknown stays unknown, so `not (x > 5)` is false when x is missing."""

    item: Expr
    pos: int = 0


Expr = Lit | ListLit | Ref | Arith | Call | Cmp | In | Missing | And | Or | Not
Condition = Lit | Ref | Cmp | In | Missing | And | Or | Not

# name -> (argument types, result type); `None` as argument types means "one or more numbers".
FUNCTIONS: dict[str, tuple[tuple[Type, ...] | None, Type]] = {
    "days_since": ((Type.TIMESTAMP,), Type.NUMBER),
    "days_until": ((Type.TIMESTAMP,), Type.NUMBER),
    "abs": ((Type.NUMBER,), Type.NUMBER),
    "min": (None, Type.NUMBER),
    "max": (None, Type.NUMBER),
    "coalesce": (None, Type.NUMBER),
}

SECONDS_PER_DAY = 86400.0


def refs(node: Expr) -> list[str]:
    """Return the input names a node reads, in first-use order, without repeats."""
    seen: dict[str, None] = {}

    def walk(n: Any) -> None:
        if isinstance(n, Ref):
            seen.setdefault(n.name)
        elif isinstance(n, (Arith, Cmp)):
            walk(n.left)
            if n.right is not None:
                walk(n.right)
        elif isinstance(n, Call):
            for a in n.args:
                walk(a)
        elif isinstance(n, In):
            walk(n.item)
            walk(n.container)
        elif isinstance(n, Missing):
            walk(n.operand)
        elif isinstance(n, (And, Or)):
            for a in n.items:
                walk(a)
        elif isinstance(n, Not):
            walk(n.item)

    walk(node)
    return list(seen)
