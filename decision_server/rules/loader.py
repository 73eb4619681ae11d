"""Turning one rule file into a checked RuleSet, collecting every problem with its place."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from decision_server.rules.check import InputSpec, check_condition
from decision_server.rules.ir import Lit, Type
from decision_server.rules.model import HIT_POLICIES, OutputSpec, Partition, RuleSet, make_rule, to_epoch
from decision_server.rules.parser import ExprError, parse
from decision_server.rules.source import Document

NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
RULE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")
TOP_KEYS = {"ruleset", "description", "hit", "inputs", "outputs", "default", "partition", "rules"}
RULE_KEYS = {"id", "description", "when", "then", "priority", "enabled", "valid_from", "valid_to"}
TYPES = {t.value: t for t in Type}
OUTPUT_TYPES = (Type.NUMBER, Type.STRING, Type.BOOLEAN)


def load_ruleset(doc: Document) -> RuleSet | None:
    """Check a parsed rule file; record problems on `doc` and return None when it has errors."""
    data = doc.value
    if doc.problems:
        return None
    if not isinstance(data, dict):
        doc.problem((), "a rule file must be a mapping with ruleset, hit, inputs, outputs and rules")
        return None
    for key in data:
        if key not in TOP_KEYS:
            doc.problem((key,), f"unknown key '{key}'; expected one of: {', '.join(sorted(TOP_KEYS))}")
    stem = doc.name.removesuffix(".yaml")
    name = data.get("ruleset", stem)
    if name != stem:
        doc.problem(("ruleset",), f"ruleset '{name}' must be named like its file ('{stem}')")
    hit = data.get("hit")
    if hit not in HIT_POLICIES:
        doc.problem(("hit",), f"hit must be one of: {', '.join(HIT_POLICIES)} (how rules that fire combine)")
    inputs = _inputs(doc, data.get("inputs"))
    outputs = _outputs(doc, data.get("outputs"))
    default = None
    if "default" in data:
        if hit != "first":
            doc.problem(("default",), "only a 'first' rule set has a default outcome")
        default = _outcome(doc, ("default",), data["default"], outputs)
    rules = _rules(doc, data.get("rules"), inputs, outputs)
    partition = _partition(doc, data.get("partition"), inputs) if "partition" in data else None
    if any(p.severity == "error" for p in doc.problems):
        return None
    return RuleSet(
        name=name,
        file=doc.name,
        description=str(data.get("description") or ""),
        hit=hit,
        inputs=inputs,
        outputs=outputs,
        default=default,
        rules=tuple(rules),
        partition=partition,
    )


def _type(doc: Document, path: tuple, raw: Any, allowed: tuple[Type, ...]) -> tuple[Type, tuple, str] | None:
    spec = raw if isinstance(raw, dict) else {"type": raw}
    for key in spec:
        if key not in ("type", "values", "description"):
            doc.problem(path + (key,), f"unknown key '{key}'; expected type, values, description")
    kind = TYPES.get(spec.get("type"))
    if kind not in allowed:
        doc.problem(path, f"type must be one of: {', '.join(t.value for t in allowed)}")
        return None
    values = spec.get("values") or ()
    if values and (
        kind not in (Type.STRING, Type.LIST) or not isinstance(values, list) or not all(isinstance(v, str) for v in values)
    ):
        doc.problem(path + ("values",), "values must be a list of text, for a text or list input or a text output")
        return None
    return kind, tuple(values), str(spec.get("description") or "")


def _inputs(doc: Document, raw: Any) -> dict[str, InputSpec]:
    if not isinstance(raw, dict) or not raw:
        doc.problem(("inputs",), "inputs must map each name the rules read to its type")
        return {}
    inputs = {}
    for name, spec in raw.items():
        if not isinstance(name, str) or not NAME.match(name):
            doc.problem(("inputs", name), f"input name '{name}' must be lower-case letters, digits, _ and dots")
            continue
        typed = _type(doc, ("inputs", name), spec, tuple(Type))
        if typed:
            inputs[name] = InputSpec(name, *typed)
    return inputs


def _outputs(doc: Document, raw: Any) -> dict[str, OutputSpec]:
    if not isinstance(raw, dict) or not raw:
        doc.problem(("outputs",), "outputs must map each outcome field to its type")
        return {}
    outputs = {}
    for name, spec in raw.items():
        if not isinstance(name, str) or not NAME.match(name):
            doc.problem(("outputs", name), f"output name '{name}' must be lower-case letters, digits and _")
            continue
        typed = _type(doc, ("outputs", name), spec, OUTPUT_TYPES)
        if typed:
            outputs[name] = OutputSpec(name, typed[0], typed[1])
    return outputs


def _outcome(doc: Document, path: tuple, raw: Any, outputs: dict[str, OutputSpec]) -> dict[str, Any]:
    if not isinstance(raw, dict) or not raw:
        doc.problem(path, f"must map outputs to values, e.g. {{{next(iter(outputs), 'segment')}: …}}")
        return {}
    outcome = {}
    for key, value in raw.items():
        spec = outputs.get(key)
        if spec is None:
            doc.problem(path + (key,), f"'{key}' is not a declared output; outputs: {', '.join(outputs)}")
            continue
        ok = {
            Type.NUMBER: isinstance(value, (int, float)) and not isinstance(value, bool),
            Type.STRING: isinstance(value, str),
            Type.BOOLEAN: isinstance(value, bool),
        }[spec.type]
        if not ok:
            doc.problem(path + (key,), f"'{key}' must be a {spec.type}")
        elif spec.values and value not in spec.values:
            doc.problem(path + (key,), f"'{value}' is not one of the values of '{key}': {', '.join(spec.values)}")
        else:
            outcome[key] = value
    return outcome


def _timestamp(doc: Document, path: tuple, raw: Any) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, (date, datetime, str)):
        try:
            return to_epoch(raw)
        except ValueError:
            pass
    doc.problem(path, "must be a date like 2026-01-31 or a time like 2026-01-31T08:00:00Z")
    return None


def _rules(doc: Document, raw: Any, inputs: dict[str, InputSpec], outputs: dict[str, OutputSpec]) -> list:
    if not isinstance(raw, list) or not raw:
        doc.problem(("rules",), "rules must be a list of rules, each with id, when and then")
        return []
    rules, seen = [], set()
    for index, item in enumerate(raw):
        path = ("rules", index)
        if not isinstance(item, dict):
            doc.problem(path, "each rule must be a mapping with id, when and then")
            continue
        for key in item:
            if key not in RULE_KEYS:
                doc.problem(path + (key,), f"unknown key '{key}'; a rule has: {', '.join(sorted(RULE_KEYS))}")
        rule_id = item.get("id")
        if not isinstance(rule_id, str) or not RULE_ID.match(rule_id):
            doc.problem(path + ("id",), "id must start with a letter and hold letters, digits, _ . -")
            continue
        if rule_id in seen:
            doc.problem(path + ("id",), f"rule id '{rule_id}' is used twice")
        seen.add(rule_id)
        condition = _condition(doc, path + ("when",), item.get("when", ...), inputs)
        then = _outcome(doc, path + ("then",), item.get("then"), outputs)
        priority = item.get("priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int):
            doc.problem(path + ("priority",), "priority must be a whole number (higher is evaluated first)")
            priority = 0
        enabled = item.get("enabled", True)
        if not isinstance(enabled, bool):
            doc.problem(path + ("enabled",), "enabled must be true or false")
        valid_from = _timestamp(doc, path + ("valid_from",), item.get("valid_from"))
        valid_to = _timestamp(doc, path + ("valid_to",), item.get("valid_to"))
        if valid_from is not None and valid_to is not None and valid_to <= valid_from:
            doc.problem(path + ("valid_to",), "valid_to must be after valid_from; the rule could never apply")
        if condition is None or enabled is not True:
            continue
        rules.append(
            (
                -priority,
                index,
                make_rule(
                    id=rule_id,
                    description=str(item.get("description") or ""),
                    condition=condition,
                    then=then,
                    priority=priority,
                    valid_from=valid_from,
                    valid_to=valid_to,
                    line=doc.mark(path).line,
                ),
            )
        )
    return [rule for _, _, rule in sorted(rules, key=lambda r: (r[0], r[1]))]


def _condition(doc: Document, path: tuple, raw: Any, inputs: dict[str, InputSpec]):
    if raw is ...:
        doc.problem(path[:-1], "a rule needs 'when', its condition (write 'when: true' for always)")
        return None
    if isinstance(raw, bool):
        return Lit(raw, Type.BOOLEAN)
    if not isinstance(raw, str):
        doc.problem(path, "when must be a condition such as: value_score >= 70")
        return None
    try:
        return check_condition(parse(raw), inputs)
    except ExprError as exc:
        line, column = doc.text_position(path, exc.pos)
        doc.problem(path, exc.message, at=(line, column))
        return None


def _partition(doc: Document, raw: Any, inputs: dict[str, InputSpec]) -> Partition | None:
    path = ("partition",)
    if not isinstance(raw, dict) or set(raw) != {"input", "range"}:
        doc.problem(path, "partition needs 'input' (a number input) and 'range' ([low, high])")
        return None
    spec = inputs.get(raw["input"])
    if spec is None or spec.type is not Type.NUMBER:
        doc.problem(path + ("input",), f"'{raw['input']}' is not a declared number input")
        return None
    bounds = raw["range"]
    if (
        not isinstance(bounds, list)
        or len(bounds) != 2
        or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
        or bounds[0] >= bounds[1]
    ):
        doc.problem(path + ("range",), "range must be [low, high] with low below high")
        return None
    return Partition(raw["input"], float(bounds[0]), float(bounds[1]))
