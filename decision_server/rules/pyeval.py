"""The compiled backend: a rule set's IR turned into one plain Python function.

The function's source is generated from the checked IR, never from the rule text: names become
`v0, v1, …` (positions in the input tuple), literals are written with repr() of typed Python values,
and the namespace holds only the helpers below. Missing values are None; a condition fires only when
definitely true (Kleene logic), so each node compiles to "is true" and "is false" tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from decision_server.rules.ir import SECONDS_PER_DAY, And, Arith, Call, Cmp, In, ListLit, Lit, Missing, Not, Or, Ref
from decision_server.rules.model import RuleSet

Evaluator = Callable[[tuple, float, frozenset], list]


def _nan_to_none(value: float) -> float | None:
    # NaN and overflow to ±inf are missing, as on the other backends.
    return value if -_INF < value < _INF else None


_INF = float("inf")


def _add(a, b):
    return None if a is None or b is None else _nan_to_none(a + b)


def _sub(a, b):
    return None if a is None or b is None else _nan_to_none(a - b)


def _mul(a, b):
    return None if a is None or b is None else _nan_to_none(a * b)


def _div(a, b):
    if a is None or b is None or b == 0:
        return None
    return _nan_to_none(a / b)


def _neg(a):
    return None if a is None else -a


def _abs(a):
    return None if a is None else abs(a)


def _min(*args):
    return None if any(a is None for a in args) else min(args)


def _max(*args):
    return None if any(a is None for a in args) else max(args)


def _coalesce(*args):
    for a in args:
        if a is not None:
            return a
    return None


def _days_since(ts, now):
    return None if ts is None else float(math.floor((now - ts) / SECONDS_PER_DAY))


def _days_until(ts, now):
    return None if ts is None else float(math.floor((ts - now) / SECONDS_PER_DAY))


HELPERS = {
    "_add": _add,
    "_sub": _sub,
    "_mul": _mul,
    "_div": _div,
    "_neg": _neg,
    "_abs": _abs,
    "_min": _min,
    "_max": _max,
    "_coalesce": _coalesce,
    "_days_since": _days_since,
    "_days_until": _days_until,
}
_ARITH = {"+": "_add", "-": "_sub", "*": "_mul", "/": "_div"}


class Codegen:
    """Generates Python source from IR nodes; `slots` maps input names to tuple positions."""

    def __init__(self, slots: dict[str, int]):
        self.slots = slots
        self.constants: dict[str, object] = {}
        self.temps = 0

    def function(
        self, name: str, body: list[str], *, params: str = "v, now", extra: dict | None = None, label: str = ""
    ) -> tuple[Callable, str]:
        """Compile `def name(params)`: unpack the inputs, then `body` (one indented level); return it and its source.

        The one place generated code is compiled: the namespace holds only the helpers and the
        constants of this generator, and no builtins.
        """
        lines = [f"def {name}({params}):"]
        if self.slots:
            names = ", ".join(f"v{i}" for i in range(len(self.slots)))
            lines.append(f"    {names}{',' if len(self.slots) == 1 else ''} = v")
        lines.extend(f"    {line}" for line in body)
        source = "\n".join(lines) + "\n"
        namespace: dict = {"__builtins__": {}, **HELPERS, **self.constants, **(extra or {})}
        exec(compile(source, f"<rules {label or name}>", "exec"), namespace)  # generated from the IR, see module doc
        return namespace[name], source

    def constant(self, value: object) -> str:
        name = f"_k{len(self.constants)}"
        self.constants[name] = value
        return name

    def temp(self) -> str:
        self.temps += 1
        return f"_t{self.temps}"

    def value(self, node) -> tuple[str, bool]:
        """Return code for a node's value and whether it can be None."""
        if isinstance(node, Lit):
            return repr(node.value), False
        if isinstance(node, Ref):
            return f"v{self.slots[node.name]}", True
        if isinstance(node, Arith):
            if node.op == "neg":
                return f"_neg({self.value(node.left)[0]})", True
            return f"{_ARITH[node.op]}({self.value(node.left)[0]}, {self.value(node.right)[0]})", True
        if isinstance(node, Call):
            args = ", ".join(self.value(a)[0] for a in node.args)
            if node.func in ("days_since", "days_until"):
                return f"_{node.func}({args}, now)", True
            return f"_{node.func}({args})", True
        raise TypeError(f"not a value: {node!r}")

    def operand(self, node) -> tuple[str, list[str]]:
        """Return code for a value bound once, and the guards that it is present."""
        code, nullable = self.value(node)
        if not nullable:
            return code, []
        if isinstance(node, Ref):
            return code, [f"{code} is not None"]
        name = self.temp()
        return name, [f"({name} := {code}) is not None"]

    def test(self, node, want: bool) -> str:
        """Return code that is True exactly when the condition is definitely `want`."""
        if isinstance(node, Lit):
            return repr(node.value == want)
        if isinstance(node, Ref):  # a boolean input used as a condition
            return f"v{self.slots[node.name]} is {want!r}"
        if isinstance(node, Not):
            return self.test(node.item, not want)
        if isinstance(node, (And, Or)):
            joiner = " and " if isinstance(node, And) == want else " or "
            return "(" + joiner.join(self.test(item, want) for item in node.items) + ")"
        if isinstance(node, Missing):
            code, nullable = self.value(node.operand)
            if not nullable:
                return repr(node.negated == want)
            is_missing = want != node.negated
            return f"{code} is {'' if is_missing else 'not '}None"
        if isinstance(node, Cmp):
            left, guards = self.operand(node.left)
            right, more = self.operand(node.right)
            op = node.op if want else {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}[node.op]
            return "(" + " and ".join(guards + more + [f"{left} {op} {right}"]) + ")"
        if isinstance(node, In):
            item, guards = self.operand(node.item)
            if isinstance(node.container, ListLit):
                container = self.constant(frozenset(node.container.values))
                more: list[str] = []
            else:
                container, more = self.operand(node.container)
            member = want != node.negated
            return "(" + " and ".join(guards + more + [f"{item} {'in' if member else 'not in'} {container}"]) + ")"
        raise TypeError(f"not a condition: {node!r}")


def compile_ruleset(ruleset: RuleSet) -> tuple[Evaluator, str]:
    """Compile a rule set to fn(values, now, skip) -> indexes of the rules that fire; also return the source."""
    gen = Codegen({name: index for index, name in enumerate(ruleset.inputs)})
    first = ruleset.hit == "first"
    body = ["fired = []"]
    for index, rule in enumerate(ruleset.rules):
        body.append(f"if {gen.test(rule.condition, True)} and {index} not in skip:")
        body.append(f"    return [{index}]" if first else f"    fired.append({index})")
    body.append("return fired")
    return gen.function("evaluate", body, params="v, now, skip", label=ruleset.name)
