"""Synchronous, thread-safe host that evaluates single facts against durable_rules rulesets."""

from __future__ import annotations

import itertools
import math
import numbers
import re
import threading
from collections.abc import Mapping
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any

import durable_rules_engine as _engine

# Engine limits measured on durable_rules 2.0.28 (see /tmp/durable_findings.md):
# - a fact that matches no rule leaves a session whose delete_state can segfault, so every
#   C ruleset gets a sentinel rule that matches every fact we assert;
# - more than 64 alpha nodes passing at once for one fact fail with error 303 (deleting that
#   session then segfaults), 512 alpha siblings hang assert_fact forever, one alpha node
#   with 256 rules behind it segfaults, and an $or of more than 14 $and lists is rejected
#   (error 113).  Every rule is flattened to disjunctive normal form, each term becomes its
#   own engine rule, and at most _MAX_TERMS_PER_SHARD terms go into one C ruleset.  Passing
#   alpha nodes pending at once never outnumber the terms, so 32 keeps half of the stack
#   free (65 all-true terms in one C ruleset reproduce error 303, 64 do not);
# - more than 1,024 live sessions per ruleset raise MemoryError, so each evaluation uses a
#   throw-away session that is always deleted;
# - numbers in exponent notation fail to parse (error 204), integers beyond int64 wrap.
_MAX_TERMS_PER_SHARD = 32
_MAX_TERMS_PER_RULE = 4096
_MAX_FACT_FIELDS = 251  # 253 properties parse, sid and the marker take two of them
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# The engine keeps a per-session state fact {"sid", "id", "$s"} that also runs through the
# rules, so a condition such as $nex would fire for it.  Every asserted fact carries the
# marker field and every rule term tests it first: the state fact is rejected at one node.
_MARKER_LEAF = '{"_q":1}'
_INDEX = "_n"  # which fact of an evaluate_many() batch an action is about
_INDEX_KEY = '"_n":'
_SENTINEL = "$sentinel"  # '$' and '~' are outside the rule id alphabet, so they cannot clash
_SENTINEL_RULE = '"$sentinel":{"all":[{"m":{"_q":1}}]}'

_RULE_ID = re.compile(r"[a-z0-9_.-]+\Z")
# Fields starting with '_' or '$' and the names sid/id belong to the engine and this module.
_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_ENGINE_FIELDS = frozenset({"sid", "id"})

_COMPARISONS = {"$lt", "$lte", "$gt", "$gte", "$neq"}
_ARITHMETIC = {"$add", "$sub", "$mul", "$div"}

# Evaluations take no lock.  The C extension never releases the GIL (it imports no
# PyEval_SaveThread), so each engine call is atomic and concurrent evaluations merely
# interleave calls on distinct sessions, which stayed exact under 16 threads.  Any lock on
# the hot path convoys under the GIL: with 16 busy threads a short registry lock taken twice
# per evaluation gave 7-9.6k evaluations/s at 1-2 ms median latency, one lock around whole
# evaluations 12-14k/s with a 25 ms p99, and no lock 14-15k/s with a 6 ms p99.
_session_ids = itertools.count(1)
_revisions = itertools.count(1)

_key_prefixes: dict[str, str] = {}


class _Ruleset:
    """The engine rulesets of one registered name and the evaluations currently using them."""

    __slots__ = ("handles", "users", "released")

    def __init__(self, handles: list[int]) -> None:
        self.handles = handles
        self.users: list[object] = []  # one token per running evaluation
        self.released = False


class DurableHost:
    """Runs durable_rules rulesets synchronously in the calling thread, with no timer threads.

    Fact fields and rule conditions may not use the names sid, id, or names starting with
    '_' or '$'; those are reserved for the engine and for this host's marker field.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rulesets: dict[str, _Ruleset | None] = {}

    def register(self, name: str, rules: Mapping[str, Mapping]) -> None:
        """Compile and register ruleset `name` mapping rule ids to single-fact conditions."""
        if not isinstance(name, str) or not name:
            raise ValueError("ruleset name must be a non-empty string")
        shards = _shard(_compile_rules(rules))
        with self._lock:
            if name in self._rulesets:
                raise ValueError(f"ruleset {name!r} is already registered")
            # Reserve the name while the engine rulesets are built outside the lock.
            self._rulesets[name] = None
        handles: list[int] = []
        try:
            revision = next(_revisions)
            for index, shard in enumerate(shards):
                # C ruleset names only need to be unique; a revision never reuses one.
                handles.append(_create(f"{name}#{revision}.{index}", shard))
        except BaseException:
            with self._lock:
                del self._rulesets[name]
            _free(handles)
            raise
        with self._lock:
            self._rulesets[name] = _Ruleset(handles)

    def evaluate(self, name: str, fact: Mapping[str, Any]) -> frozenset[str]:
        """Return the ids of the rules of `name` that fire for `fact`."""
        tail = _encode_fact(fact)
        entry = self._rulesets.get(name)
        if entry is None:
            raise KeyError(name)
        # Lock-free drain, each step atomic under the GIL: an evaluation announces itself
        # before it checks `released`, and release sets `released` before it looks for users,
        # so whichever side sees no users last frees the handles, never under a user.
        token = object()
        entry.users.append(token)
        try:
            if entry.released:
                raise KeyError(name)
            fired: set[str] = set()
            for handle in entry.handles:
                _run_session(handle, tail, fired)
            fired.discard(_SENTINEL)
            return frozenset(fired)
        finally:
            entry.users.remove(token)
            if entry.released and not entry.users:
                _free(entry.handles)

    def evaluate_many(self, name: str, facts: list[Mapping[str, Any]]) -> list[frozenset[str]]:
        """Return, for each fact, the ids of the rules of `name` that fire, using one session per shard.

        Cheaper than one evaluate() per fact (measured 1.6x for 8 facts): the session is made and
        dropped once. Facts do not see each other, since every rule tests one fact.
        """
        if not facts:
            return []
        tails = [_encode_fact(fact) for fact in facts]
        entry = self._rulesets.get(name)
        if entry is None:
            raise KeyError(name)
        token = object()  # the same lock-free drain as evaluate()
        entry.users.append(token)
        try:
            if entry.released:
                raise KeyError(name)
            fired: list[set[str]] = [set() for _ in facts]
            for handle in entry.handles:
                _run_many(handle, tails, fired)
            return [frozenset(f - {_SENTINEL}) for f in fired]
        finally:
            entry.users.remove(token)
            if entry.released and not entry.users:
                _free(entry.handles)

    def release(self, name: str) -> None:
        """Unregister `name`; its engine rulesets are freed by the last evaluation using them."""
        with self._lock:
            entry = self._rulesets.get(name)
            if entry is None:
                raise KeyError(name)
            del self._rulesets[name]
        entry.released = True
        if not entry.users:
            _free(entry.handles)

    def names(self) -> list[str]:
        """Return the registered ruleset names, sorted."""
        with self._lock:
            return sorted(name for name, entry in self._rulesets.items() if entry is not None)


def _run_session(handle: int, tail: str, fired: set[str]) -> None:
    """Assert one fact in a fresh session of `handle`, collect fired rule names, drop it."""
    sid = str(next(_session_ids))
    for engine_name, _message in _session(handle, sid, _engine.assert_fact, '{"sid":"' + sid + '","_q":1' + tail + "}"):
        fired.add(engine_name)


def _run_many(handle: int, tails: list[str], fired: list[set[str]]) -> None:
    """Assert several facts in one fresh session, each tagged with its index, and collect per fact."""
    sid = str(next(_session_ids))
    head = '{"sid":"' + sid + '","_q":1,"' + _INDEX + '":'
    body = "[" + ",".join(head + str(index) + tail + "}" for index, tail in enumerate(tails)) + "]"
    for engine_name, message in _session(handle, sid, _engine.assert_facts, body):
        # The index field is ours: values are JSON-escaped, so '"_n":' only occurs as the key.
        start = message.index(_INDEX_KEY) + len(_INDEX_KEY)
        end = start
        while message[end].isdigit():
            end += 1
        fired[int(message[start:end])].add(engine_name)


def _session(handle: int, sid: str, assert_call, body: str):
    """Assert `body` in session `sid`, yield (rule id, action message) per fired rule, then delete the session."""
    try:
        code, state = assert_call(handle, body)
    except _engine.error as exc:
        # Parse and size errors happen before the session exists.  For errors raised later
        # (303) delete_state segfaults, so the session is left to the engine rather than
        # crash the process; neither can be produced through this module's encoder.
        raise RuntimeError(f"durable_rules rejected the fact: {exc}") from exc
    if code != 0:
        # Unreachable while the sentinel rule exists; deleting such a session can segfault.
        raise RuntimeError(f"durable_rules did not handle the fact (code {code})")
    try:
        action = _engine.start_action_for_state(handle, state)
        message = None if action is None else action[1]
        while message is not None:
            # Each message is {"<rule>":{"m":{...}}}; rule ids never contain quotes,
            # and "~" separates a term number from the rule id.
            yield message[2 : message.index('"', 2)].partition("~")[0], message
            message = _engine.complete_and_start_action(handle, state)
    finally:
        _engine.delete_state(handle, sid)


def _create(name: str, shard: dict[str, list[str]]) -> int:
    rules = [_SENTINEL_RULE]
    for rule_id, terms in shard.items():
        # One engine rule per DNF term: an $or whose branches are $and lists is rejected
        # beyond 14 branches (error 113), while separate rules have no such limit.
        for index, term in enumerate(terms):
            engine_name = rule_id if index == 0 else f"{rule_id}~{index}"
            rules.append('"' + engine_name + '":{"all":[{"m":' + term + "}]}")
    try:
        return _engine.create_ruleset(name, "{" + ",".join(rules) + "}")
    except _engine.error as exc:
        raise ValueError(f"durable_rules rejected ruleset {name!r}: {exc}") from exc


def _free(handles: list[int]) -> None:
    # Two finishing evaluations may both get here; list.pop is atomic, so each handle is
    # deleted exactly once.
    while True:
        try:
            handle = handles.pop()
        except IndexError:
            return
        _engine.delete_ruleset(handle)


def _shard(compiled: dict[str, list[str]]) -> list[dict[str, list[str]]]:
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


def _compile_rules(rules: Mapping[str, Mapping]) -> dict[str, list[str]]:
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
        compiled[rule_id] = [
            '{"$and":[' + ",".join((_MARKER_LEAF, *term)) + "]}"
            for term in dict.fromkeys(terms)
        ]
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


def _encode_fact(fact: Mapping[str, Any]) -> str:
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
