"""The durable-rules backend: a rule set's IR compiled to durable_rules conditions over one fact.

durable_rules compares fields with literals or with other fields and combines them with $and/$or;
it has no `not`, no date functions and no notion of our missing values. So:
- `not` is pushed down to the comparisons (De Morgan; `<` becomes `>=`), which under Kleene logic
  is exact as long as every comparison also requires its fields to be present ($ex guards);
- arithmetic, function calls and membership in a list input are computed in Python by the same
  helpers as the compiled backend and sent as derived fields (`d0`, `d1`, …) of the fact;
- inputs are fields `f0`, `f1`, … (positions in the input tuple), so rule text never names a field;
- rules are `r0`, `r1`, … (positions in evaluation order), and the hit policy is applied here.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from decision_server.rules import pyeval
from decision_server.rules.ir import And, Cmp, In, Lit, Missing, Not, Or, Ref
from decision_server.rules.model import RuleSet

ALWAYS = "always"  # a condition that is true for every fact
_TRUE_FIELD = "t"  # every fact carries t: 1, so "always" has something to match
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
_NEGATE = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}
_OPS = {"<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte", "!=": "$neq"}
_names = itertools.count(1)


class _Compiler:
    def __init__(self, ruleset: RuleSet, prefix: str):
        self.slots = {name: index for index, name in enumerate(ruleset.inputs)}
        self.prefix = prefix  # keeps the fields of several rule sets in one fact apart
        self.derived: list = []  # expressions computed in Python, by field number
        self._derived_index: dict = {}

    def field(self, node) -> str:
        """Return the fact field holding a value node (an input, or a derived value)."""
        if isinstance(node, Ref):
            return f"{self.prefix}f{self.slots[node.name]}"
        if node not in self._derived_index:
            self._derived_index[node] = len(self.derived)
            self.derived.append(node)
        return f"{self.prefix}d{self._derived_index[node]}"

    def test(self, node, want: bool):
        """Return the durable condition for "definitely `want`", ALWAYS, or None for never."""
        if isinstance(node, Lit):
            return ALWAYS if node.value == want else None
        if isinstance(node, Ref):  # a boolean input used as a condition
            return {self.field(node): want}
        if isinstance(node, Not):
            return self.test(node.item, not want)
        if isinstance(node, (And, Or)):
            conjunction = isinstance(node, And) == want
            parts = [self.test(item, want) for item in node.items]
            if conjunction:
                if any(p is None for p in parts):
                    return None
                parts = [p for p in parts if p is not ALWAYS]
                return ALWAYS if not parts else parts[0] if len(parts) == 1 else {"$and": parts}
            if any(p is ALWAYS for p in parts):
                return ALWAYS
            parts = [p for p in parts if p is not None]
            return None if not parts else parts[0] if len(parts) == 1 else {"$or": parts}
        if isinstance(node, Missing):
            if isinstance(node.operand, Lit):
                return ALWAYS if node.negated == want else None
            is_missing = want != node.negated
            return {"$nex" if is_missing else "$ex": {self.field(node.operand): 1}}
        if isinstance(node, Cmp):
            return self._cmp(node, want)
        if isinstance(node, In):
            return self._in(node, want)
        raise TypeError(f"not a condition: {node!r}")

    def _cmp(self, node: Cmp, want: bool):
        op = node.op if want else _NEGATE[node.op]
        left, right = node.left, node.right
        if isinstance(left, Lit) and isinstance(right, Lit):
            return ALWAYS if _compare(op, left.value, right.value) else None
        if isinstance(left, Lit):
            left, right, op = right, left, _FLIP[op]
        field = self.field(left)
        if isinstance(right, Lit):
            if op == "==":
                return {field: right.value}
            # An absent field matches no comparison, $neq included (measured), so no $ex guard.
            return {_OPS[op]: {field: right.value}}
        other = self.field(right)
        leaf = {_OPS.get(op, "$eq"): {field: {"$m": other}}}
        return {"$and": [{"$ex": {field: 1}}, {"$ex": {other: 1}}, leaf]}

    def _in(self, node: In, want: bool):
        member = want != node.negated
        if isinstance(node.container, Ref):
            return {self.field(node): member}  # membership computed in Python: true, false or absent
        field = self.field(node.item)
        values = list(dict.fromkeys(node.container.values))
        if member:
            if not values:
                return None
            branches = [{field: value} for value in values]
            return branches[0] if len(branches) == 1 else {"$or": branches}
        return {"$and": [{"$ex": {field: 1}}] + [{"$neq": {field: value}} for value in values]}


def _compare(op: str, a, b) -> bool:
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b, "!=": a != b}[op]


def _deriver(compiler: _Compiler) -> Callable[[tuple, float], tuple] | None:
    """Compile the derived values into one generated function, using the compiled backend's helpers."""
    if not compiler.derived:
        return None
    gen = pyeval.Codegen(compiler.slots)
    items = []
    for node in compiler.derived:
        if isinstance(node, In):  # item in a list input
            item, container = gen.value(node.item)[0], gen.value(node.container)[0]
            items.append(f"_member({item}, {container})")
        else:
            items.append(gen.value(node)[0])
    return gen.function("derive", [f"return ({', '.join(items)},)"], extra={"_member": _member})[0]


def _member(item, container):
    return None if item is None or container is None else item in container


class _Part:
    """One rule set inside a DurableGroup: its field names, derived values and hit policy."""

    def __init__(self, ruleset: RuleSet, compiler: _Compiler):
        self.first = ruleset.hit == "first"
        self.fields = [f"{compiler.prefix}f{i}" for i in range(len(ruleset.inputs))]
        self.derive = _deriver(compiler)
        self.derived_fields = [f"{compiler.prefix}d{i}" for i in range(len(compiler.derived))]

    def add_to(self, fact: dict, values: tuple, now: float) -> None:
        for field, value in zip(self.fields, values, strict=True):
            if value is not None:
                # A list input is only ever tested for presence here; membership is derived.
                fact[field] = True if type(value) is tuple else value
        if self.derive is not None:
            for field, value in zip(self.derived_fields, self.derive(values, now), strict=True):
                if value is not None:
                    fact[field] = value


class DurableGroup:
    """One or more rule sets registered with a DurableHost as one engine rule set.

    Rule sets evaluated together (a customer's lifecycle, value, tiers and segments; an offer's
    eligibility, contact policy and arbitration) then cost one engine session instead of one each.
    Rule `i` of the `k`-th rule set is named `s{k}r{i}`; its fields are `s{k}f…` and `s{k}d…`.
    """

    def __init__(self, host, rulesets: list[RuleSet], revision: str):
        conditions = {}
        self.parts = []
        for k, ruleset in enumerate(rulesets):
            compiler = _Compiler(ruleset, f"s{k}")
            for index, rule in enumerate(ruleset.rules):
                condition = compiler.test(rule.condition, True)
                if condition is not None:  # None: can never fire
                    conditions[f"s{k}r{index}"] = {_TRUE_FIELD: 1} if condition is ALWAYS else condition
            self.parts.append(_Part(ruleset, compiler))
        self.host = host
        self.name = f"{revision[:12]}.{'+'.join(rs.name for rs in rulesets)}.{next(_names)}"
        host.register(self.name, conditions)

    def _fact(self, values: list[tuple], now: float) -> dict:
        fact = {_TRUE_FIELD: 1}
        for part, part_values in zip(self.parts, values, strict=True):
            part.add_to(fact, part_values, now)
        return fact

    def _split(self, names: frozenset, skips: list[frozenset]) -> list[list[int]]:
        fired: list[list[int]] = [[] for _ in self.parts]
        for name in names:
            k, _, index = name[1:].partition("r")
            fired[int(k)].append(int(index))
        result = []
        for part, indexes, skip in zip(self.parts, fired, skips, strict=True):
            indexes = [i for i in sorted(indexes) if i not in skip]
            result.append(indexes[:1] if part.first else indexes)
        return result

    def evaluate_all(self, values: list[tuple], now: float, skips: list[frozenset]) -> list[list[int]]:
        """Assert one fact holding every rule set's inputs; return each rule set's fired indexes."""
        return self._split(self.host.evaluate(self.name, self._fact(values, now)), skips)

    def evaluate_all_many(self, rows: list[list[tuple]], now: float, skips: list[frozenset]) -> list[list[list[int]]]:
        """Evaluate several such facts in one session (one per offer, say)."""
        names = self.host.evaluate_many(self.name, [self._fact(values, now) for values in rows])
        return [self._split(n, skips) for n in names]

    def release(self) -> None:
        """Free the engine's rule sets once evaluations in flight have finished."""
        self.host.release(self.name)


class DurableRuleSet(DurableGroup):
    """A single rule set on durable-rules."""

    def __init__(self, host, ruleset: RuleSet, revision: str):
        super().__init__(host, [ruleset], revision)

    def evaluate(self, values: tuple, now: float, skip: frozenset) -> list[int]:
        """Assert one fact and return the indexes of the rules that fire, after the hit policy."""
        return self.evaluate_all([values], now, [skip])[0]

    def evaluate_many(self, rows: list[tuple], now: float, skip: frozenset) -> list[list[int]]:
        """Evaluate several inputs in one session; return the fired indexes of each."""
        return [fired[0] for fired in self.evaluate_all_many([[values] for values in rows], now, [skip])]
