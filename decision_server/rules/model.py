"""Rule sets as loaded and checked, the normalized inputs they read, and evaluation results."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from decision_server.errors import ValidationError
from decision_server.rules.check import InputSpec
from decision_server.rules.ir import Expr, Type, refs
from decision_server.rules.parser import parse_timestamp

HIT_POLICIES = ("first", "collect")


@dataclasses.dataclass(frozen=True)
class OutputSpec:
    """A declared outcome field: its type, and for text the values it may take."""

    name: str
    type: Type
    values: tuple = ()


@dataclasses.dataclass(frozen=True)
class Rule:
    """One rule: when `condition` is true (and the rule is valid now), the outcome is `then`."""

    id: str
    description: str
    condition: Expr
    then: Mapping[str, Any]
    priority: int
    valid_from: float | None
    valid_to: float | None
    reads: tuple[str, ...]
    line: int

    def valid_at(self, now: float) -> bool:
        """Tell whether the rule's validity window holds `now` (epoch seconds)."""
        if self.valid_from is not None and now < self.valid_from:
            return False
        return not (self.valid_to is not None and now >= self.valid_to)


@dataclasses.dataclass(frozen=True)
class Partition:
    """A threshold rule set: every value of `input` in [low, high] falls in exactly one rule."""

    input: str
    low: float
    high: float


@dataclasses.dataclass(frozen=True)
class RuleSet:
    """One rule file, checked: enabled rules in evaluation order (priority, then file order)."""

    name: str
    file: str
    description: str
    hit: str
    inputs: Mapping[str, InputSpec]
    outputs: Mapping[str, OutputSpec]
    default: Mapping[str, Any] | None
    rules: tuple[Rule, ...]
    partition: Partition | None = None

    @property
    def input_names(self) -> tuple[str, ...]:
        """Return the declared input names in declaration order (the order of value tuples)."""
        return tuple(self.inputs)

    def rule_index(self) -> dict[str, int]:
        """Map each rule id to its position in evaluation order."""
        return {rule.id: index for index, rule in enumerate(self.rules)}


def make_rule(
    *,
    id: str,
    description: str,
    condition: Expr,
    then: Mapping[str, Any],
    priority: int,
    valid_from: float | None,
    valid_to: float | None,
    line: int,
) -> Rule:
    """Build a Rule, recording the inputs its condition reads."""
    return Rule(id, description, condition, dict(then), priority, valid_from, valid_to, tuple(refs(condition)), line)


@dataclasses.dataclass(frozen=True)
class Fired:
    """A rule that decided the outcome, with the input values its condition read."""

    rule: str
    reads: Mapping[str, Any]
    then: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Render for JSON."""
        return {"rule": self.rule, "reads": dict(self.reads), "then": dict(self.then)}


class Result:
    """The outcome of one rule set for one input: `first` gives a mapping, `collect` a list.

    The explanation (`fired`, with the input values each rule read) is built on first use, so
    callers that only need the outcome (bulk runs, the event path) do not pay for it.
    """

    __slots__ = ("ruleset", "revision", "outcome", "backend", "_rules", "_reads", "_values", "_indexes", "_fired")

    def __init__(
        self,
        ruleset: str,
        revision: str,
        outcome: Any,
        backend: str,
        *,
        rules: tuple,
        reads: list,
        values: tuple,
        indexes: list[int],
    ):
        self.ruleset = ruleset
        self.revision = revision
        self.outcome = outcome
        self.backend = backend
        self._rules = rules
        self._reads = reads
        self._values = values
        self._indexes = indexes
        self._fired: tuple[Fired, ...] | None = None

    @property
    def fired_ids(self) -> list[str]:
        """Return the ids of the rules that fired, in evaluation order."""
        return [self._rules[i].id for i in self._indexes]

    @property
    def fired(self) -> tuple[Fired, ...]:
        """Return the rules that fired with the input values each one read."""
        if self._fired is None:
            values = self._values
            self._fired = tuple(
                Fired(
                    self._rules[i].id,
                    {n: explain_value(spec, values[slot]) for n, slot, spec in self._reads[i]},
                    self._rules[i].then,
                )
                for i in self._indexes
            )
        return self._fired

    def to_dict(self) -> dict[str, Any]:
        """Render for JSON, with the explanation of which rules fired and what they read."""
        outcome = [dict(o) for o in self.outcome] if isinstance(self.outcome, tuple) else self.outcome
        return {
            "ruleset": self.ruleset,
            "revision": self.revision,
            "outcome": outcome,
            "fired": [f.to_dict() for f in self.fired],
            "backend": self.backend,
        }


def to_epoch(value: Any) -> float:
    """Turn a datetime, date, ISO text or epoch number into epoch seconds (naive means UTC)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    if isinstance(value, str):
        return parse_timestamp(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"not a date or time: {value!r}")


def from_epoch(value: float) -> str:
    """Render epoch seconds as ISO 8601 UTC text, for explanations."""
    return datetime.fromtimestamp(value, tz=UTC).isoformat().replace("+00:00", "Z")


def normalize_value(spec: InputSpec, value: Any) -> Any:
    """Return the value every backend sees for one input (None when missing); raise on a wrong type."""
    if value is None:
        return None
    kind = spec.type
    cls = type(value)
    # Fast paths for what the decision path sends; everything else takes the checks below.
    if kind is Type.NUMBER and (cls is float or cls is int):
        number = float(value)
        return number if math.isfinite(number) else None
    if (kind is Type.STRING and cls is str) or (kind is Type.BOOLEAN and cls is bool):
        return value
    if kind is Type.TIMESTAMP and cls is datetime and value.tzinfo is not None:
        return value.timestamp()
    if kind is Type.NUMBER:
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            raise ValueError("must be a number")
        number = float(value)
        # Not-a-number and infinities count as missing on every backend (durable-rules cannot hold them).
        return number if math.isfinite(number) else None
    if kind is Type.STRING:
        if not isinstance(value, str):
            raise ValueError("must be text")
        return value
    if kind is Type.BOOLEAN:
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if kind is Type.TIMESTAMP:
        try:
            seconds = to_epoch(value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError("must be a date or time in ISO 8601") from None
        return seconds if math.isfinite(seconds) else None
    if kind is Type.LIST:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ValueError("must be a list of text")
        return tuple(value)
    raise ValueError(f"unsupported type {kind}")


def normalize(ruleset: RuleSet, facts: Mapping[str, Any]) -> tuple:
    """Pick and normalize a rule set's inputs from `facts`; names not declared are ignored."""
    try:
        return tuple([normalize_value(spec, facts.get(name)) for name, spec in ruleset.inputs.items()])
    except ValueError:
        pass
    errors: dict[str, list[str]] = {}
    for name, spec in ruleset.inputs.items():
        try:
            normalize_value(spec, facts.get(name))
        except ValueError as exc:
            errors[name] = [str(exc)]
    raise ValidationError(f"inputs of rule set '{ruleset.name}' are not valid", errors=errors)


def _number(value: Any) -> Any:
    if type(value) is float:
        return value if math.isfinite(value) else None
    if type(value) is int:
        return float(value)
    raise TypeError


def _text(value: Any) -> Any:
    if type(value) is str:
        return value
    raise TypeError


def _timestamp(value: Any) -> Any:
    if type(value) is datetime and value.tzinfo is not None:
        return value.timestamp()
    return _number(value)  # epoch seconds


def _boolean(value: Any) -> Any:
    if type(value) is bool:
        return value
    raise TypeError


def _list(value: Any) -> Any:
    if (type(value) is list or type(value) is tuple) and all(type(v) is str for v in value):
        return tuple(value)
    raise TypeError


_FAST = {Type.NUMBER: _number, Type.STRING: _text, Type.TIMESTAMP: _timestamp, Type.BOOLEAN: _boolean, Type.LIST: _list}


def make_normalizer(ruleset: RuleSet):
    """Return fn(facts) -> values tuple, equal to normalize() but with per-input fast paths."""
    plan = [(name, _FAST[spec.type]) for name, spec in ruleset.inputs.items()]

    def normalize_fast(facts: Mapping[str, Any]) -> tuple:
        get = facts.get
        values = []
        try:
            for name, fast in plan:
                value = get(name)
                values.append(None if value is None else fast(value))
        except TypeError:  # anything off the fast path (ISO text, Decimal, a bad type) takes the full checks
            return normalize(ruleset, facts)
        return tuple(values)

    return normalize_fast


def explain_value(spec: InputSpec, value: Any) -> Any:
    """Render a normalized input value for an explanation."""
    if value is None:
        return None
    if spec.type is Type.TIMESTAMP:
        return from_epoch(value)
    if spec.type is Type.LIST:
        return list(value)
    if spec.type is Type.NUMBER and float(value).is_integer() and abs(value) < 2**53:
        return int(value)
    return value
