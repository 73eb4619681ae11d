"""Load-time analysis of a rule set: rules that can never fire, and gaps or overlaps in thresholds."""

from __future__ import annotations

import dataclasses
import math

from decision_server.rules.ir import And, Cmp, Lit, Ref, Type
from decision_server.rules.model import RuleSet
from decision_server.rules.source import Problem


@dataclasses.dataclass(frozen=True)
class Interval:
    """A range of numbers; `*_closed` says whether the bound itself belongs to it."""

    low: float = -math.inf
    low_closed: bool = False
    high: float = math.inf
    high_closed: bool = False

    def empty(self) -> bool:
        """Tell whether no number lies in the range."""
        if self.low > self.high:
            return True
        return self.low == self.high and not (self.low_closed and self.high_closed)

    def meet(self, other: Interval) -> Interval:
        """Return the intersection of two ranges."""
        if other.low > self.low or (other.low == self.low and not other.low_closed):
            low, low_closed = other.low, other.low_closed
        else:
            low, low_closed = self.low, self.low_closed
        if other.high < self.high or (other.high == self.high and not other.high_closed):
            high, high_closed = other.high, other.high_closed
        else:
            high, high_closed = self.high, self.high_closed
        return Interval(low, low_closed, high, high_closed)

    def __str__(self) -> str:
        left = "[" if self.low_closed else "("
        right = "]" if self.high_closed else ")"
        return f"{left}{_num(self.low)}, {_num(self.high)}{right}"


def _num(value: float) -> str:
    if math.isinf(value):
        return "-∞" if value < 0 else "∞"
    return str(int(value)) if value.is_integer() else str(value)


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def _atom_interval(node: Cmp) -> tuple[str, Interval] | None:
    """Read `ref op literal` (either way round) as a range of the ref; None if it is not one."""
    left, right, op = node.left, node.right, node.op
    if isinstance(left, Lit) and isinstance(right, Ref):
        left, right, op = right, left, _FLIP[op]
    if not (isinstance(left, Ref) and isinstance(right, Lit) and left.type is Type.NUMBER):
        return None
    value = right.value
    ranges = {
        "<": Interval(high=value),
        "<=": Interval(high=value, high_closed=True),
        ">": Interval(low=value),
        ">=": Interval(low=value, low_closed=True),
        "==": Interval(value, True, value, True),
    }
    return (left.name, ranges[op]) if op in ranges else None


def intervals(condition) -> dict[str, Interval] | None:
    """Read a condition made only of `and`ed number thresholds as a range per input, else None."""
    atoms = condition.items if isinstance(condition, And) else (condition,)
    result: dict[str, Interval] = {}
    for atom in atoms:
        if isinstance(atom, And):
            nested = intervals(atom)
            if nested is None:
                return None
            pairs = list(nested.items())
        elif isinstance(atom, Cmp) and (pair := _atom_interval(atom)) is not None:
            pairs = [pair]
        else:
            return None
        for name, interval in pairs:
            result[name] = result.get(name, Interval()).meet(interval)
    return result


def analyse(ruleset: RuleSet) -> list[Problem]:
    """Return the problems found by looking at the rules together."""
    problems: list[Problem] = []

    def report(line: int, message: str, severity: str = "error") -> None:
        problems.append(Problem(ruleset.file, line, 1, message, severity))

    for rule in ruleset.rules:
        ranges = intervals(rule.condition)
        if ranges:
            for name, interval in ranges.items():
                if interval.empty():
                    report(rule.line, f"rule '{rule.id}' can never fire: no value of '{name}' satisfies its condition")
    if ruleset.hit == "first":
        for index, rule in enumerate(ruleset.rules):
            if (
                isinstance(rule.condition, Lit)
                and rule.condition.value is True
                and rule.valid_from is None
                and rule.valid_to is None
            ):
                for later in ruleset.rules[index + 1 :]:
                    report(
                        later.line,
                        f"rule '{later.id}' can never fire: rule '{rule.id}' before it always fires"
                        " (give it a lower priority or a condition)",
                    )
                break
    if ruleset.partition is not None:
        problems.extend(_partition_problems(ruleset, report))
    return problems


def _partition_problems(ruleset: RuleSet, report) -> list[Problem]:
    partition = ruleset.partition
    name = partition.input
    domain = Interval(partition.low, True, partition.high, True)
    pieces: list[tuple[Interval, str, int]] = []
    for rule in ruleset.rules:
        ranges = intervals(rule.condition)
        if ranges is None or set(ranges) != {name}:
            report(
                rule.line,
                f"in a threshold rule set every condition must be a range of '{name}' (like {name} >= 40 and {name} < 70)",
            )
            return []
        piece = ranges[name].meet(domain)
        if not piece.empty():
            pieces.append((piece, rule.id, rule.line))
    for i, (a, a_id, _) in enumerate(pieces):
        for b, b_id, b_line in pieces[i + 1 :]:
            both = a.meet(b)
            if not both.empty():
                report(b_line, f"rules '{a_id}' and '{b_id}' overlap: a {name} in {both} falls in both")
    for gap in _gaps(domain, [p[0] for p in pieces]):
        report(1, f"a {name} in {gap} falls in no rule (the range is {domain})")
    return []


def _gaps(domain: Interval, pieces: list[Interval]) -> list[Interval]:
    """Return the parts of `domain` that no piece covers."""
    gaps = []
    cursor, cursor_closed = domain.low, domain.low_closed  # the next value not yet covered
    for piece in sorted(pieces, key=lambda p: (p.low, not p.low_closed)):
        starts_after = piece.low > cursor or (piece.low == cursor and cursor_closed and not piece.low_closed)
        if starts_after:
            gap = Interval(cursor, cursor_closed, piece.low, not piece.low_closed)
            if not gap.empty():
                gaps.append(gap)
        if piece.high > cursor or (piece.high == cursor and piece.high_closed and cursor_closed):
            cursor, cursor_closed = piece.high, not piece.high_closed
    tail = Interval(cursor, cursor_closed, domain.high, domain.high_closed)
    if not tail.empty():
        gaps.append(tail)
    return gaps
