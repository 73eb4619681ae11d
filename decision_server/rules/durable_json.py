"""Rules and facts as the JSON text the durable_rules C engine accepts, within its measured limits."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any

# The limits below are explained at the top of durable_host.py (measured in bench/durable_findings.md).
_MAX_TERMS_PER_SHARD = 32
_MAX_TERMS_PER_RULE = 4096
_MAX_FACT_FIELDS = 251  # 253 properties parse, sid and the marker take two of them
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# The engine keeps a per-session state fact {"sid", "id", "$s"} that also runs through the
# rules, so a condition such as $nex would fire for it.  Every asserted fact carries the
# marker field and every rule term tests it first: the state fact is rejected at one node.
_MARKER_LEAF = '{"_q":1}'

_RULE_ID = re.compile(r"[a-z0-9_.-]+\Z")
# Fields starting with '_' or '$' and the names sid/id belong to the engine and this module.
_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_ENGINE_FIELDS = frozenset({"sid", "id"})

_COMPARISONS = {"$lt", "$lte", "$gt", "$gte", "$neq"}
_ARITHMETIC = {"$add", "$sub", "$mul", "$div"}

_key_prefixes: dict[str, str] = {}


def shard(compiled: dict[str, list[str]]) -> list[dict[str, list[str]]]:
    """Pack DNF terms into groups of at most _MAX_TERMS_PER_SHARD, keeping a rule's terms together."""
    shards: list[dict[str, list[str]]] = []
    current: dict[str, list[str]] = {}
    used = 0
    for rule_id, terms in compiled.items():
        if used + len(terms) > _MAX_TERMS_PER_SHARD >= len(terms) and current:
            shards.append(current)
            current, used = {}, 0
        for term in terms:
            if used == _MAX_TERMS_PER_SHARD:
                shards.append(current)
                current, used = {}, 0
            current.setdefault(rule_id, []).append(term)
            used += 1
    if current:
        shards.append(current)
    return shards


def compile_rules(rules: Mapping[str, Mapping]) -> dict[str, list[str]]:
    """Validate rules and return each rule's DNF terms as JSON, marker test first."""
    if not isinstance(rules, Mapping):
        raise ValueError("rules must be a mapping of rule id to condition")
    compiled = {}
    for rule_id, condition in rules.items():
        if not isinstance(rule_id, str) or not _RULE_ID.match(rule_id):
            raise ValueError(f"rule id {rule_id!r} must match [a-z0-9_.-]+")
        try:
            terms = _dnf(condition)
        except ValueError as exc:
            raise ValueError(f"rule {rule_id!r}: {exc}") from None
        compiled[rule_id] = ['{"$and":[' + ",".join((_MARKER_LEAF, *term)) + "]}" for term in dict.fromkeys(terms)]
    return compiled


def _dnf(condition: Any) -> list[tuple[str, ...]]:
    """Flatten a condition into a list of conjunctions of leaf conditions (JSON strings)."""
    if not isinstance(condition, Mapping) or not condition:
        raise ValueError(f"condition must be a non-empty mapping, got {condition!r}")
    if len(condition) > 1:
        # The engine silently ignores every key but the first; the intent is a conjunction.
        return _dnf_and([{key: value} for key, value in condition.items()])
    ((op, arg),) = condition.items()
    if op in ("$and", "$or"):
        if not isinstance(arg, (list, tuple)) or not arg:
            raise ValueError(f"{op} needs a non-empty list")
        if op == "$and":
            return _dnf_and(arg)
        terms = [term for item in arg for term in _dnf(item)]
        _check_size(len(terms))
        return terms
    if not isinstance(op, str):
        raise ValueError(f"invalid condition key {op!r}")
    if op in _COMPARISONS or op == "$eq":
        return _per_field(op, arg, _operand)
    if op in ("$ex", "$nex"):
        return _per_field(op, arg, lambda _value, _refs: "1")
    if op in ("$mt", "$imt"):
        return _per_field(op, arg, _pattern)
    if op.startswith("$"):
        raise ValueError(f"unsupported operator {op}")
    return _per_field("$eq", {op: arg}, _operand)


def _dnf_and(items: Any) -> list[tuple[str, ...]]:
    terms: list[tuple[str, ...]] = [()]
    for item in items:
        alternatives = _dnf(item)
        _check_size(len(terms) * len(alternatives))
        terms = [left + right for left in terms for right in alternatives]
    return terms


def _per_field(op: str, arg: Any, encode: Any) -> list[tuple[str, ...]]:
    if not isinstance(arg, Mapping) or not arg:
        raise ValueError(f"{op} needs a non-empty mapping of field to value")
    leaves = []
    for field, value in arg.items():
        references: list[str] = []
        encoded = encode(value, references)
        # A comparison with {"$m": field} that is not the first test of its chain matches
        # whenever that field is absent, so its presence is tested first.
        leaves.extend('{"$ex":{"' + reference + '":1}}' for reference in references)
        leaves.append(_leaf(op, field, encoded))
    return [tuple(leaves)]


def _leaf(op: str, field: Any, encoded: str) -> str:
    _check_field(field)
    if op == "$eq":
        return '{"' + field + '":' + encoded + "}"
    return '{"' + op + '":{"' + field + '":' + encoded + "}}"


def _check_size(count: int) -> None:
    if count > _MAX_TERMS_PER_RULE:
        raise ValueError(f"condition expands to more than {_MAX_TERMS_PER_RULE} alternatives")


def _check_field(field: Any) -> None:
    if not isinstance(field, str) or not _FIELD.match(field) or field in _ENGINE_FIELDS:
        raise ValueError(f"invalid or reserved field name {field!r}")


def _operand(value: Any, references: list[str]) -> str:
    """Encode a comparison's right-hand side: a scalar, {"$m": field} or arithmetic on those."""
    if isinstance(value, Mapping):
        if len(value) == 1:
            ((op, arg),) = value.items()
            if op == "$m":
                _check_field(arg)
                references.append(arg)
                return '{"$m":"' + arg + '"}'
            if op in _ARITHMETIC and isinstance(arg, Mapping) and set(arg) == {"$l", "$r"}:
                left = _operand(arg["$l"], references)
                right = _operand(arg["$r"], references)
                return '{"' + op + '":{"$l":' + left + ',"$r":' + right + "}}"
        raise ValueError(f"unsupported operand {value!r}")
    if not isinstance(value, (str, numbers.Real)):
        raise ValueError(f"unsupported operand {value!r}")
    encoded = _scalar(value)
    if encoded is None:
        raise ValueError(f"operand {value!r} is None or not finite")
    return encoded


def _pattern(value: Any, _references: list[str]) -> str:
    if not isinstance(value, str):
        raise ValueError(f"regular expression must be a string, got {value!r}")
    return encode_basestring(value)


def _scalar(value: Any) -> str | None:
    """Encode a scalar as engine JSON, or None when it must be treated as absent."""
    kind = type(value)
    if kind is str:
        # UTF-8 rather than \\u escapes keeps the engine's strcmp ordering equal to Python's.
        return encode_basestring(value)
    if kind is float:
        return _float(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value) if _INT64_MIN <= value <= _INT64_MAX else _float(float(value))
    if value is None:
        return None
    if isinstance(value, str):
        return encode_basestring(str(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return _scalar(int(value))
    if isinstance(value, numbers.Real):
        return _float(float(value))
    raise TypeError(f"unsupported value type {kind.__name__}")


def _float(value: float) -> str | None:
    """Format a finite float in fixed-point notation without losing precision."""
    if not math.isfinite(value):
        return None
    text = repr(value)
    if "e" in text:
        # repr is the shortest round-tripping form; Decimal re-renders it without exponent.
        text = format(Decimal(text), "f")
        if "." not in text:
            # Without a point the engine would parse an integer and wrap beyond int64.
            text += ".0"
    return text


def encode_fact(fact: Mapping[str, Any]) -> str:
    """Encode fact fields as ',"name":value' pairs, dropping None, NaN and infinities."""
    # Hot path: the common exact types are inlined, everything else goes through _scalar.
    parts = []
    for key, value in fact.items():
        prefix = _key_prefixes.get(key) or _key_prefix(key)
        kind = type(value)
        if kind is float:
            text = repr(value)
            if "e" in text or "n" in text:  # exponent form, or inf/nan
                text = _float(value)
                if text is None:
                    continue
        elif kind is int and _INT64_MIN <= value <= _INT64_MAX:
            text = str(value)
        elif kind is str:
            text = encode_basestring(value)
        else:
            text = _scalar(value)
            if text is None:
                continue
        parts.append(prefix + text)
    if len(parts) > _MAX_FACT_FIELDS:
        raise ValueError(f"fact has more than {_MAX_FACT_FIELDS} fields")
    return "".join(parts)


def _key_prefix(key: Any) -> str:
    _check_field(key)
    prefix = ',"' + key + '":'
    # Bounded so that arbitrary client keys cannot grow the cache without limit.
    if len(_key_prefixes) < 4096:
        _key_prefixes[key] = prefix
    return prefix
