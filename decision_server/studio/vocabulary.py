"""What the rule editor may complete in one file: its rule set's inputs and outputs, the functions, keys and keywords."""

from __future__ import annotations

from typing import Any

from decision_server.rules.cases import CASE_KEYS
from decision_server.rules.engine import CASES_SUFFIX
from decision_server.rules.ir import FUNCTIONS
from decision_server.rules.loader import RULE_KEYS, TOP_KEYS
from decision_server.rules.model import RuleSet
from decision_server.rules.parser import KEYWORDS

# In the order a person writes them (the sets in loader.py are unordered).
_RULE_KEY_ORDER = ("id", "description", "when", "then", "priority", "enabled", "valid_from", "valid_to")
_TOP_KEY_ORDER = ("ruleset", "description", "hit", "inputs", "outputs", "default", "partition", "rules")
_CASE_KEY_ORDER = ("name", "given", "now", "expect", "fired")
_CASES_TOP_KEYS = ("ruleset", "now", "cases")
_KEYWORD_ORDER = ("and", "or", "not", "in", "is", "missing", "between", "true", "false")

_FUNCTION_HELP = {
    "days_since": "Days from a time to now (days_since(last_purchase_at) >= 60).",
    "days_until": 'Days from now to a time (days_until(date("2026-12-24")) <= 7).',
    "abs": "The number without its sign.",
    "min": "The smallest of two or more numbers.",
    "max": "The largest of two or more numbers.",
    "coalesce": "The first number that is not missing (coalesce(points_balance, 0)).",
    "date": 'A fixed date or time in UTC (first_purchase_at >= date("2026-01-31")).',
}

assert set(_RULE_KEY_ORDER) == RULE_KEYS and set(_TOP_KEY_ORDER) == TOP_KEYS and set(_CASE_KEY_ORDER) == CASE_KEYS
assert set(_KEYWORD_ORDER) == KEYWORDS and set(_FUNCTION_HELP) == set(FUNCTIONS) | {"date"}


def _signature(name: str) -> str:
    if name == "date":
        return 'date("YYYY-MM-DD") → timestamp'
    arguments, result = FUNCTIONS[name]
    if arguments is None:
        first = "number" if name == "coalesce" else "number, number"
        return f"{name}({first}, …) → {result}"
    return f"{name}({', '.join(a.value for a in arguments)}) → {result}"


def functions() -> list[dict[str, str]]:
    """Describe every function a condition may call."""
    return [{"name": n, "signature": _signature(n), "description": _FUNCTION_HELP[n]} for n in (*FUNCTIONS, "date")]


def vocabulary(file: str, ruleset: RuleSet | None) -> dict[str, Any]:
    """Return what the editor of `file` completes; `ruleset` is the rule set the file is (or tests), None when unknown."""
    inputs = [
        {"name": n, "type": s.type.value, "values": list(s.values), "description": s.description}
        for n, s in (ruleset.inputs.items() if ruleset else ())
    ]
    outputs = [
        {"name": n, "type": s.type.value, "values": list(s.values), "description": ""}
        for n, s in (ruleset.outputs.items() if ruleset else ())
    ]
    cases = file.endswith(CASES_SUFFIX)
    return {
        "file": file,
        "ruleset": ruleset.name if ruleset else None,
        "inputs": inputs,
        "outputs": outputs,
        "functions": functions(),
        "keys": list(_CASE_KEY_ORDER if cases else _RULE_KEY_ORDER),
        "top_keys": list(_CASES_TOP_KEYS if cases else _TOP_KEY_ORDER),
        "keywords": list(_KEYWORD_ORDER),
        "rules": [rule.id for rule in ruleset.rules] if ruleset else [],
    }
