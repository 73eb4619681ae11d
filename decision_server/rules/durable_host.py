"""Synchronous, thread-safe host that evaluates single facts against durable_rules rulesets."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from typing import Any

import durable_rules_engine as _engine

from decision_server.rules import durable_json

# Engine limits measured on durable_rules 2.0.28 (see bench/durable_findings.md):
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
_INDEX = "_n"  # which fact of an evaluate_many() batch an action is about
_INDEX_KEY = '"_n":'
_SENTINEL = "$sentinel"  # '$' and '~' are outside the rule id alphabet, so they cannot clash
_SENTINEL_RULE = '"$sentinel":{"all":[{"m":{"_q":1}}]}'

# Evaluations take no lock.  The C extension never releases the GIL (it imports no
# PyEval_SaveThread), so each engine call is atomic and concurrent evaluations merely
# interleave calls on distinct sessions, which stayed exact under 16 threads.  Any lock on
# the hot path convoys under the GIL: with 16 busy threads a short registry lock taken twice
# per evaluation gave 7-9.6k evaluations/s at 1-2 ms median latency, one lock around whole
# evaluations 12-14k/s with a 25 ms p99, and no lock 14-15k/s with a 6 ms p99.
_session_ids = itertools.count(1)
_revisions = itertools.count(1)


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
        shards = durable_json.shard(durable_json.compile_rules(rules))
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
        tail = durable_json.encode_fact(fact)
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
        tails = [durable_json.encode_fact(fact) for fact in facts]
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
