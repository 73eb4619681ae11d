"""Type checking of parsed conditions against a rule set's declared inputs."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping

from decision_server.rules.ir import (
    FUNCTIONS,
    And,
    Arith,
    Call,
    Cmp,
    Expr,
    In,
    ListLit,
    Lit,
    Missing,
    Not,
    Or,
    Ref,
    Type,
)
from decision_server.rules.parser import ExprError


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """A declared input: its type, and for text the values it may take (empty: any)."""

    name: str
    type: Type
    values: tuple = ()
    description: str = ""


def check_condition(node: Expr, inputs: Mapping[str, InputSpec]) -> Expr:
    """Resolve names and check types; return the typed condition or raise ExprError."""
    typed, kind = _check(node, inputs)
    if kind is not Type.BOOLEAN:
        raise ExprError(f"a condition must be true or false, but this is a {kind}", node.pos)
    return typed


def _unknown_name(ref: Ref, inputs: Mapping[str, InputSpec]) -> ExprError:
    close = difflib.get_close_matches(ref.name, list(inputs), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f"; declared inputs: {', '.join(sorted(inputs))}"
    return ExprError(f"unknown name '{ref.name}'{hint}", ref.pos)


def _check(node: Expr, inputs: Mapping[str, InputSpec]) -> tuple[Expr, Type]:
    if isinstance(node, Lit):
        return node, node.type
    if isinstance(node, Ref):
        spec = inputs.get(node.name)
        if spec is None:
            if node.name in FUNCTIONS or node.name == "date":
                raise ExprError(f"'{node.name}' is a function: write {node.name}(…)", node.pos)
            raise _unknown_name(node, inputs)
        return Ref(node.name, spec.type, node.pos), spec.type
    if isinstance(node, ListLit):
        raise ExprError("a list may only follow 'in'", node.pos)
    if isinstance(node, Arith):
        left, lt = _check(node.left, inputs)
        _require(lt, Type.NUMBER, node.left, f"'{_op_name(node.op)}' works on numbers")
        right = None
        if node.right is not None:
            right, rt = _check(node.right, inputs)
            _require(rt, Type.NUMBER, node.right, f"'{node.op}' works on numbers")
        return Arith(node.op, left, right, node.pos), Type.NUMBER
    if isinstance(node, Call):
        return _check_call(node, inputs)
    if isinstance(node, Cmp):
        return _check_cmp(node, inputs), Type.BOOLEAN
    if isinstance(node, In):
        return _check_in(node, inputs), Type.BOOLEAN
    if isinstance(node, Missing):
        operand, _ = _check(node.operand, inputs)
        return Missing(operand, node.negated, node.pos), Type.BOOLEAN
    if isinstance(node, (And, Or)):
        items = []
        word = "and" if isinstance(node, And) else "or"
        for item in node.items:
            typed, kind = _check(item, inputs)
            _require(kind, Type.BOOLEAN, item, f"each side of '{word}' must be true or false")
            items.append(typed)
        return type(node)(tuple(items), node.pos), Type.BOOLEAN
    if isinstance(node, Not):
        item, kind = _check(node.item, inputs)
        _require(kind, Type.BOOLEAN, node.item, "'not' needs something true or false")
        return Not(item, node.pos), Type.BOOLEAN
    raise ExprError(f"unsupported expression {type(node).__name__}", getattr(node, "pos", 0))


def _op_name(op: str) -> str:
    return "-" if op == "neg" else op


def _require(actual: Type, expected: Type, node: Expr, message: str) -> None:
    if actual is not expected:
        raise ExprError(f"{message}, but this is a {actual}", node.pos)


def _check_call(node: Call, inputs: Mapping[str, InputSpec]) -> tuple[Expr, Type]:
    signature = FUNCTIONS.get(node.func)
    if signature is None:
        close = difflib.get_close_matches(node.func, list(FUNCTIONS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; functions: {', '.join(sorted(FUNCTIONS))}"
        raise ExprError(f"unknown function '{node.func}'{hint}", node.pos)
    arg_types, result = signature
    if arg_types is not None and len(node.args) != len(arg_types):
        raise ExprError(f"{node.func}() takes {len(arg_types)} argument(s), got {len(node.args)}", node.pos)
    if arg_types is None and len(node.args) < (1 if node.func == "coalesce" else 2):
        raise ExprError(f"{node.func}() needs at least {1 if node.func == 'coalesce' else 2} arguments", node.pos)
    args = []
    for index, arg in enumerate(node.args):
        typed, kind = _check(arg, inputs)
        expected = Type.NUMBER if arg_types is None else arg_types[index]
        _require(kind, expected, arg, f"{node.func}() takes a {expected}")
        args.append(typed)
    return Call(node.func, tuple(args), node.pos), result


def _check_cmp(node: Cmp, inputs: Mapping[str, InputSpec]) -> Cmp:
    left, lt = _check(node.left, inputs)
    right, rt = _check(node.right, inputs)
    if lt is not rt:
        raise ExprError(f"cannot compare a {lt} with a {rt}", node.right.pos)
    if lt is Type.LIST:
        raise ExprError("lists cannot be compared; use 'in'", node.pos)
    if lt in (Type.STRING, Type.BOOLEAN) and node.op not in ("==", "!="):
        raise ExprError(f"a {lt} can only be compared with == or !=", node.pos)
    _check_text_values(left, right, inputs)
    _check_text_values(right, left, inputs)
    return Cmp(node.op, left, right, node.pos)


def _check_text_values(ref: Expr, other: Expr, inputs: Mapping[str, InputSpec]) -> None:
    """Refuse a text literal that a text input with declared values can never take (a typo)."""
    if not isinstance(ref, Ref) or ref.type not in (Type.STRING, Type.LIST):
        return
    allowed = inputs[ref.name].values
    literals = [other] if isinstance(other, Lit) else []
    if isinstance(other, ListLit):
        positions = other.positions or (other.pos,) * len(other.values)
        literals = [Lit(v, Type.STRING, p) for v, p in zip(other.values, positions, strict=True)]
    for literal in literals:
        if allowed and literal.value not in allowed:
            close = difflib.get_close_matches(literal.value, [str(v) for v in allowed], n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; it may be one of: {', '.join(map(str, allowed))}"
            verb = "never holds" if ref.type is Type.LIST else "is never"
            raise ExprError(f"'{ref.name}' {verb} '{literal.value}'{hint}", literal.pos)


def _check_in(node: In, inputs: Mapping[str, InputSpec]) -> In:
    item, kind = _check(node.item, inputs)
    container = node.container
    if isinstance(container, Ref):
        container, ctype = _check(container, inputs)
        if ctype is not Type.LIST:
            raise ExprError(f"'in' needs a list, but '{container.name}' is a {ctype}", container.pos)
        _require(kind, Type.STRING, node.item, "only text can be looked up in a list input")
        _check_text_values(container, item, inputs)  # "gld" in offer.target_segments, when its values are declared
    else:
        if container.values and kind is not container.type:
            raise ExprError(f"cannot look up a {kind} in a list of {container.type}s", node.item.pos)
        if kind not in (Type.NUMBER, Type.STRING):
            raise ExprError(f"'in' works on numbers or text, but this is a {kind}", node.item.pos)
        _check_text_values(item, container, inputs)
    return In(item, container, node.negated, node.pos)
