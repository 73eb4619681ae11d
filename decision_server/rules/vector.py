"""The vectorized backend: a rule set evaluated over columns of many customers at once with numpy.

Numbers, booleans and timestamps are float64 columns with NaN for missing; text and lists are object
columns with None for missing. Semantics match the compiled backend exactly (Kleene logic, missing
arithmetic is missing, division by zero is missing), which the property tests check.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from decision_server.rules.ir import SECONDS_PER_DAY, And, Arith, Call, Cmp, In, ListLit, Lit, Missing, Not, Or, Ref, Type
from decision_server.rules.model import RuleSet, to_epoch

_CMP = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
}
_NEGATED = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}


@dataclasses.dataclass(frozen=True)
class Column:
    """One input over all rows: values and the mask of rows where it is missing.

    A constant (the same value on every row: an offer's facts when one offer is tried on many
    customers) holds a scalar value and a scalar missing flag, and costs nothing per row.
    """

    values: Any
    missing: Any
    constant: bool = False
    # Text columns: each distinct value's position and the row's code, made on first use (`in` tests).
    _codes: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def codes(self) -> tuple[np.ndarray, list[Any]]:
        """Return each row's code and the distinct values (a text column read by many `in` tests)."""
        if "codes" not in self._codes:
            index: dict[Any, int] = {}
            codes = np.fromiter((index.setdefault(v, len(index)) for v in self.values), dtype=np.int64, count=len(self.values))
            self._codes["codes"] = (codes, list(index))
        return self._codes["codes"]


@dataclasses.dataclass(frozen=True)
class VectorResult:
    """Which rules fired per row: `fired[i, r]`; for a `first` set, `chosen[r]` is the rule index or -1."""

    ruleset: str
    fired: np.ndarray
    chosen: np.ndarray | None

    def fired_ids(self, row: int, rule_ids: list[str]) -> list[str]:
        """Return the ids of the rules that fired for one row, in evaluation order."""
        return [rule_ids[i] for i in np.flatnonzero(self.fired[:, row])]


def _object_missing(values: np.ndarray) -> np.ndarray:
    return np.fromiter((v is None or v != v for v in values), dtype=bool, count=len(values))


def constant(kind: Type, value: Any) -> Column:
    """Normalize one value that every row shares."""
    column = to_column(kind, [value], 1)
    return Column(column.values[0], bool(column.missing[0]), constant=True)


def to_column(kind: Type, raw: Any, n: int) -> Column:
    """Normalize one input column to the backend's representation (a Column is kept as it is)."""
    if isinstance(raw, Column):
        return raw
    if raw is None:
        raw = [None] * n
    if kind in (Type.NUMBER, Type.BOOLEAN):
        values = np.asarray(raw)
        if values.dtype.kind != "f":
            values = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
        values = values.astype(np.float64, copy=True)
        missing = ~np.isfinite(values)  # NaN and ±inf are missing, as on the other backends
        values[missing] = np.nan
        return Column(values, missing)
    if kind is Type.TIMESTAMP:
        values = np.asarray(raw)
        if values.dtype.kind == "M":
            missing = np.isnat(values)
            seconds = values.astype("datetime64[us]").astype(np.int64) / 1e6
            seconds[missing] = np.nan
            return Column(seconds, missing)
        if values.dtype.kind != "f":
            values = np.array([np.nan if v is None else to_epoch(v) for v in values], dtype=np.float64)
        values = values.astype(np.float64, copy=True)
        missing = ~np.isfinite(values)
        values[missing] = np.nan
        return Column(values, missing)
    values = np.empty(n, dtype=object)
    values[:] = list(raw) if kind is not Type.LIST else [None if v is None else tuple(v) for v in raw]
    missing = _object_missing(values)
    values[missing] = None
    return Column(values, missing)


def to_columns(
    ruleset: RuleSet, columns: Mapping[str, Any], constants: Mapping[str, Any] | None = None
) -> tuple[dict[str, Column], int]:
    """Normalize every declared input (absent ones are all missing); return them and the row count.

    `constants` are inputs with one value for every row (they win over a column of the same name).
    Normalize once with this and pass the result back in to evaluate the same rows many times.
    """
    constants = constants or {}
    lengths = {
        len(v.values) if isinstance(v, Column) else len(v)
        for k, v in columns.items()
        if v is not None and k not in constants and not (isinstance(v, Column) and v.constant)
    }
    if len(lengths) > 1:
        raise ValueError(f"columns have different lengths: {sorted(lengths)}")
    if constants and not lengths:
        raise ValueError("every input is a constant: give at least one column, so the rows can be counted")
    n = lengths.pop() if lengths else 0
    return {
        name: constant(spec.type, constants[name]) if name in constants else to_column(spec.type, columns.get(name), n)
        for name, spec in ruleset.inputs.items()
    }, n


class _Evaluator:
    def __init__(self, columns: dict[str, Column], n: int, now: float):
        self.columns = columns
        self.n = n
        self.now = now

    def value(self, node) -> tuple[Any, Any]:
        """Return (values, missing mask) of a value node; literals stay scalars."""
        if isinstance(node, Lit):
            return node.value, False
        if isinstance(node, Ref):
            column = self.columns[node.name]
            return column.values, column.missing
        with np.errstate(all="ignore"):
            if isinstance(node, Arith):
                return self._arith(node)
            if isinstance(node, Call):
                return self._call(node)
        raise TypeError(f"not a value: {node!r}")

    def _float(self, values: np.ndarray, missing) -> tuple[np.ndarray, np.ndarray]:
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 0:
            values = np.full(self.n, float(values))
        missing = missing | ~np.isfinite(values)
        return np.where(missing, np.nan, values), missing

    def _arith(self, node: Arith):
        a, am = self.value(node.left)
        if node.op == "neg":
            return self._float(-np.asarray(a, dtype=np.float64), am)
        b, bm = self.value(node.right)
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if node.op == "+":
            return self._float(a + b, am | bm)
        if node.op == "-":
            return self._float(a - b, am | bm)
        if node.op == "*":
            return self._float(a * b, am | bm)
        return self._float(a / b, am | bm | (b == 0))

    def _call(self, node: Call):
        args = [self.value(a) for a in node.args]
        if node.func in ("days_since", "days_until"):
            ts, missing = args[0]
            delta = (
                (self.now - np.asarray(ts, dtype=np.float64))
                if node.func == "days_since"
                else (np.asarray(ts, dtype=np.float64) - self.now)
            )
            return self._float(np.floor(delta / SECONDS_PER_DAY), missing)
        if node.func == "abs":
            return self._float(np.abs(np.asarray(args[0][0], dtype=np.float64)), args[0][1])
        if node.func in ("min", "max"):
            combine = np.minimum if node.func == "min" else np.maximum
            values, missing = np.asarray(args[0][0], dtype=np.float64), args[0][1]
            for v, m in args[1:]:
                values, missing = combine(values, np.asarray(v, dtype=np.float64)), missing | m
            return self._float(values, missing)
        values, missing = self._float(args[0][0], args[0][1])  # coalesce
        for v, m in args[1:]:
            other, other_missing = self._float(v, m)
            values = np.where(missing, other, values)
            missing = missing & other_missing
        return values, missing

    def test(self, node, want: bool) -> np.ndarray:
        """Return the mask of rows where the condition is definitely `want`."""
        if isinstance(node, Lit):
            return np.full(self.n, node.value == want)
        if isinstance(node, Ref):
            return np.broadcast_to(self.columns[node.name].values == (1.0 if want else 0.0), (self.n,))
        if isinstance(node, Not):
            return self.test(node.item, not want)
        if isinstance(node, (And, Or)):
            combine = np.logical_and if isinstance(node, And) == want else np.logical_or
            result = self.test(node.items[0], want)
            for item in node.items[1:]:
                result = combine(result, self.test(item, want))
            return result
        if isinstance(node, Missing):
            _, missing = self.value(node.operand)
            mask = np.broadcast_to(np.asarray(missing, dtype=bool), (self.n,))
            return mask.copy() if want != node.negated else ~mask
        if isinstance(node, Cmp):
            a, am = self.value(node.left)
            b, bm = self.value(node.right)
            op = node.op if want else _NEGATED[node.op]
            present = ~np.broadcast_to(np.asarray(am | bm, dtype=bool), (self.n,))
            if not isinstance(a, np.ndarray) and not isinstance(b, np.ndarray) and (am or bm):
                return np.zeros(self.n, dtype=bool)  # two constants, one missing: undecided on every row
            with np.errstate(invalid="ignore"):
                result = _CMP[op](a, b)
            return present & np.broadcast_to(np.asarray(result, dtype=bool), (self.n,))
        if isinstance(node, In):
            return self._in(node, want)
        raise TypeError(f"not a condition: {node!r}")

    def _in(self, node: In, want: bool) -> np.ndarray:
        item, missing = self.value(node.item)
        member = want != node.negated
        if isinstance(node.container, ListLit):
            options, absent = node.container.values, False
        else:
            container = self.columns[node.container.name]
            if not container.constant:  # a list per row
                items = np.broadcast_to(np.asarray(item, dtype=object), (self.n,))
                present = ~(np.broadcast_to(np.asarray(missing, dtype=bool), (self.n,)) | container.missing)
                found = np.fromiter(
                    ((v in c) if p else False for v, c, p in zip(items, container.values, present, strict=True)),
                    dtype=bool,
                    count=self.n,
                )
                return present & (found if member else ~found)
            options, absent = container.values or (), container.missing
        if absent:  # a missing list: `in` cannot be decided
            return np.zeros(self.n, dtype=bool)
        if isinstance(item, np.ndarray) and item.dtype.kind == "f":
            found = np.isin(item, np.asarray(options, dtype=np.float64))
        elif isinstance(item, np.ndarray):
            allowed = frozenset(options)
            if isinstance(node.item, Ref):  # a text column: test each distinct value once
                codes, distinct = self.columns[node.item.name].codes()
                found = np.fromiter((v in allowed for v in distinct), dtype=bool, count=len(distinct))[codes]
            else:
                found = np.fromiter((v in allowed for v in item), dtype=bool, count=self.n)
        else:
            found = np.full(self.n, item in options)
        present = ~np.broadcast_to(np.asarray(missing, dtype=bool), (self.n,))
        return present & (found if member else ~found)


def evaluate_columns(
    ruleset: RuleSet, columns: Mapping[str, Any], *, now: float, constants: Mapping[str, Any] | None = None
) -> VectorResult:
    """Evaluate a rule set over columns of inputs (each a sequence or numpy array of one length, or
    a Column from to_columns); `constants` are inputs with one value for every row."""
    normalized, n = to_columns(ruleset, columns, constants)
    evaluator = _Evaluator(normalized, n, now)
    fired = np.zeros((len(ruleset.rules), n), dtype=bool)
    for index, rule in enumerate(ruleset.rules):
        if rule.valid_at(now):
            fired[index] = evaluator.test(rule.condition, True)
    if ruleset.hit != "first":
        return VectorResult(ruleset.name, fired, None)
    chosen = np.full(n, -1, dtype=np.int64)
    for index in range(len(ruleset.rules) - 1, -1, -1):
        chosen[fired[index]] = index
    only_chosen = np.zeros_like(fired)
    hit = chosen >= 0
    only_chosen[chosen[hit], np.flatnonzero(hit)] = True
    return VectorResult(ruleset.name, only_chosen, chosen)
