"""Test cases that live beside the rule files (`*.cases.yaml`): given inputs, expect an outcome."""

from __future__ import annotations

import dataclasses
from typing import Any

from decision_server.errors import ValidationError
from decision_server.rules.model import RuleSet, normalize, to_epoch
from decision_server.rules.source import Document, Problem

CASE_KEYS = {"name", "given", "now", "expect", "fired"}


@dataclasses.dataclass(frozen=True)
class Case:
    """One example: inputs, the time to evaluate at, and what must come out."""

    file: str
    line: int
    ruleset: str
    name: str
    given: dict[str, Any]
    now: float
    expect: Any
    has_expect: bool
    fired: tuple[str, ...] | None


@dataclasses.dataclass(frozen=True)
class CaseResult:
    """A case run on one backend: passed, or what came out instead."""

    case: Case
    backend: str
    passed: bool
    outcome: Any
    fired: list[str]
    message: str

    def to_dict(self) -> dict[str, Any]:
        """Render for JSON."""
        return {
            "file": self.case.file,
            "line": self.case.line,
            "ruleset": self.case.ruleset,
            "case": self.case.name,
            "backend": self.backend,
            "passed": self.passed,
            "outcome": self.outcome,
            "fired": self.fired,
            "message": self.message,
        }


def load_cases(doc: Document, rulesets: dict[str, RuleSet]) -> list[Case]:
    """Check a cases file against the rule sets; record problems on `doc`."""
    data = doc.value
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        doc.problem((), "a cases file needs 'ruleset' and a list of 'cases'")
        return []
    for key in data:
        if key not in ("ruleset", "now", "cases"):
            doc.problem((key,), f"unknown key '{key}'; expected ruleset, now, cases")
    name = data.get("ruleset", doc.name.removesuffix(".cases.yaml"))
    ruleset = rulesets.get(name)
    if ruleset is None:
        doc.problem(("ruleset",), f"no valid rule set named '{name}' to test")
        return []
    default_now = _now(doc, ("now",), data.get("now"))
    cases = []
    for index, item in enumerate(data["cases"]):
        path = ("cases", index)
        if not isinstance(item, dict) or "given" not in item or not ({"expect", "fired"} & set(item)):
            doc.problem(path, "each case needs 'given' and 'expect' and/or 'fired'")
            continue
        for key in item:
            if key not in CASE_KEYS:
                doc.problem(path + (key,), f"unknown key '{key}'; a case has: {', '.join(sorted(CASE_KEYS))}")
        given = item["given"] or {}
        if not isinstance(given, dict):
            doc.problem(path + ("given",), "given must map input names to values")
            continue
        for key in given:
            if key not in ruleset.inputs:
                doc.problem(path + ("given", key), f"'{key}' is not an input of rule set '{name}'")
        try:
            normalize(ruleset, given)
        except ValidationError as exc:
            for field, messages in exc.errors.items():
                doc.problem(path + ("given", field), f"'{field}' {messages[0]}")
            continue
        fired = item.get("fired")
        if fired is not None:
            known = {rule.id for rule in ruleset.rules}
            if not isinstance(fired, list) or not all(isinstance(f, str) for f in fired):
                doc.problem(path + ("fired",), "fired must be a list of rule ids")
                continue
            for rule_id in fired:
                if rule_id not in known:
                    doc.problem(path + ("fired",), f"no enabled rule '{rule_id}' in rule set '{name}'")
        now = _now(doc, path + ("now",), item["now"]) if "now" in item else default_now
        expect = item.get("expect")
        if ruleset.hit == "collect" and isinstance(expect, list):
            expect = [dict(e) if isinstance(e, dict) else e for e in expect]
        cases.append(
            Case(
                doc.name,
                doc.mark(path).line,
                name,
                str(item.get("name") or f"case {index + 1}"),
                dict(given),
                now,
                expect,
                "expect" in item,
                tuple(fired) if fired is not None else None,
            )
        )
    return cases


def _now(doc: Document, path: tuple, raw: Any) -> float:
    if raw is None:
        return to_epoch("2026-01-01T00:00:00Z")
    try:
        return to_epoch(raw)
    except (TypeError, ValueError):
        doc.problem(path, "now must be a date or time like 2026-06-01T00:00:00Z")
        return 0.0


def run_cases(revision, *, backends: tuple[str, ...] | None = None, ruleset: str | None = None) -> list[CaseResult]:
    """Run every case of a revision (optionally of one rule set) on each backend, vectorized included.

    The vectorized backend gets each rule set's cases as the rows of one evaluation per `now`
    (one call per case cost ~3 ms of numpy set-up each, most of a rule studio check).
    """
    backends = backends or (("durable", "python", "vector") if revision.backend == "durable" else ("python", "vector"))
    selected = [c for cases in revision.cases.values() for c in cases if not ruleset or c.ruleset == ruleset]
    vector = _run_vector(revision, selected) if "vector" in backends else {}
    results = []
    for index, case in enumerate(selected):
        for backend in backends:
            results.append(vector[index] if backend == "vector" else _run(revision, case, backend))
    return results


def _run_vector(revision, cases: list[Case]) -> dict[int, CaseResult]:
    """Run cases on the vectorized backend, the cases of one rule set and one `now` as rows of one evaluation."""
    groups: dict[tuple[str, float], list[int]] = {}
    for index, case in enumerate(cases):
        groups.setdefault((case.ruleset, case.now), []).append(index)
    results = {}
    for (name, now), indexes in groups.items():
        ruleset = revision.rulesets[name]
        columns = {input_name: [cases[i].given.get(input_name) for i in indexes] for input_name in ruleset.inputs}
        result = revision.evaluate_columns(name, columns, now=now)
        ids = [r.id for r in ruleset.rules]
        for row, index in enumerate(indexes):
            fired = result.fired_ids(row, ids)
            thens = [dict(ruleset.rules[ids.index(f)].then) for f in fired]
            if ruleset.hit == "first":
                outcome = thens[0] if thens else (dict(ruleset.default) if ruleset.default is not None else None)
            else:
                outcome = thens
            results[index] = _judge(cases[index], "vector", outcome, fired)
    return results


def _run(revision, case: Case, backend: str) -> CaseResult:
    result = revision.evaluate(case.ruleset, case.given, now=case.now, backend=backend)
    outcome = list(result.outcome) if isinstance(result.outcome, tuple) else result.outcome
    return _judge(case, backend, outcome, result.fired_ids)


def _judge(case: Case, backend: str, outcome: Any, fired: list[str]) -> CaseResult:
    problems = []
    if case.has_expect and outcome != case.expect:
        problems.append(f"expected outcome {case.expect!r}, got {outcome!r}")
    if case.fired is not None and list(case.fired) != fired:
        problems.append(f"expected rules {list(case.fired)} to fire, got {fired}")
    return CaseResult(case, backend, not problems, outcome, fired, "; ".join(problems))


def failures(revision) -> list[Problem]:
    """Return a problem for every case that fails on any backend."""
    return [
        Problem(r.case.file, r.case.line, 1, f"case '{r.case.name}' ({r.backend}): {r.message}")
        for r in run_cases(revision)
        if not r.passed
    ]
