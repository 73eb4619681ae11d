"""Checking a draft while its author types: the checks publishing runs, file by file, remembered between keystrokes.

Publishing builds the whole file set (`rules.engine.build_revision`): every file is parsed,
loaded, analysed, and every case is run on every backend. That is 40–170 ms for the shipped
files on a 2-core machine, too slow to answer each pause in typing. But each step depends on one
file alone (a rule file) or on one cases file and the rule file it tests, so this module runs the
same steps per file and remembers each result by the texts it came from: a keystroke re-checks
the one file that changed (and its cases) and takes the rest from memory, 1–15 ms in all.

The cases run on the same backends as at publication (durable-rules, Python and vectorized when
the server runs durable-rules), so a draft that shows no problems here publishes. What cannot be
judged one file at a time (more files or more values than a revision may hold) falls back to the
whole build. tests/test_studio_validation.py holds the two paths to the same problems.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from decision_server.rules import cases as cases_module
from decision_server.rules.analysis import analyse
from decision_server.rules.engine import CASES_SUFFIX, Revision, build_revision
from decision_server.rules.loader import load_ruleset
from decision_server.rules.model import RuleSet
from decision_server.rules.source import Document, Limits, Problem, RulesInvalid

MEMO_SIZE = 512  # file results kept (a few hundred bytes each, plus the rule set)


@dataclasses.dataclass(frozen=True)
class Report:
    """A draft's check: its problems (errors and warnings, every file), its cases and how long it took."""

    problems: tuple[Problem, ...]
    passed: int  # cases that pass on every backend, in all the draft's cases files
    failed: int
    elapsed_ms: float
    by_ruleset: Mapping[str, tuple[int, int]] = dataclasses.field(default_factory=dict)  # rule set -> (passed, failed)

    @property
    def valid(self) -> bool:
        """True when the draft would publish: no error and no failing case."""
        return self.failed == 0 and not any(p.severity == "error" for p in self.problems)

    def cases_of(self, ruleset: str | None) -> tuple[int, int]:
        """Return (passed, failed) of one rule set's cases (those of the whole draft when None)."""
        return (self.passed, self.failed) if ruleset is None else self.by_ruleset.get(ruleset, (0, 0))

    def to_dict(self, ruleset: str | None = None) -> dict[str, Any]:
        """Render for JSON (the editor's contract): `cases` of `ruleset` (the file being edited), `draft_cases` of all."""
        passed, failed = self.cases_of(ruleset)
        return {
            "valid": self.valid,
            "problems": [p.to_dict() for p in self.problems],
            "cases": {"passed": passed, "failed": failed},
            "draft_cases": {"passed": self.passed, "failed": self.failed},
            "elapsed_ms": round(self.elapsed_ms, 1),
        }


@dataclasses.dataclass(frozen=True)
class _RuleFile:
    values: int
    problems: tuple[Problem, ...]
    ruleset: RuleSet | None


@dataclasses.dataclass(frozen=True)
class _CasesFile:
    values: int
    tests: str | None  # the rule set the file names (None: it could not be read)
    problems: tuple[Problem, ...]


@dataclasses.dataclass(frozen=True)
class _CaseRun:
    problems: tuple[Problem, ...]  # the file's problems against its rule set, then its failing cases
    passed: int
    failed: int


class _Memo:
    """A small thread-safe LRU map."""

    def __init__(self, size: int):
        self._size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key: tuple) -> Any:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple, value: Any) -> Any:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


_memo = _Memo(MEMO_SIZE)
_host_lock = threading.Lock()
_host = None


def _durable_host():
    """One durable-rules host for the checks of this process (rule sets are released after each run)."""
    global _host
    with _host_lock:
        if _host is None:
            from decision_server.rules.durable_host import DurableHost

            _host = DurableHost()
        return _host


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _rule_file(name: str, text: str, limits: Limits) -> _RuleFile:
    key = ("rules", name, _digest(text), limits)
    known = _memo.get(key)
    if known is None:
        doc = Document(name, text, limits)
        ruleset = load_ruleset(doc)
        problems = list(doc.problems)
        if ruleset is not None:
            problems.extend(analyse(ruleset))
        known = _memo.put(key, _RuleFile(doc.value_count, tuple(problems), ruleset))
    return known


def _cases_file(name: str, text: str, limits: Limits) -> tuple[_CasesFile, Document]:
    """Parse a cases file once per text; load_cases records problems on a copy of the parsed document."""
    key = ("cases", name, _digest(text), limits)
    known = _memo.get(key)
    if known is None:
        doc = Document(name, text, limits)
        data = doc.value
        tests = data.get("ruleset", name.removesuffix(CASES_SUFFIX)) if isinstance(data, dict) and not doc.problems else None
        tests = tests if isinstance(tests, str) else None
        known = _memo.put(key, (_CasesFile(values=doc.value_count, tests=tests, problems=tuple(doc.problems)), doc))
    return known


def _case_run(name: str, text: str, parsed: Document, ruleset: RuleSet | None, rule_text: str, limits: Limits, backend: str):
    """Load a cases file against its rule set and run its cases (remembered by both texts)."""
    key = ("run", name, _digest(text), ruleset.name if ruleset else None, _digest(rule_text), limits, backend)
    known = _memo.get(key)
    if known is not None:
        return known
    doc = copy.copy(parsed)  # the parsed values are only read; the problems are this run's own
    doc.problems = list(parsed.problems)
    cases = cases_module.load_cases(doc, {ruleset.name: ruleset} if ruleset is not None else {})
    problems = list(doc.problems)
    passed = failed = 0
    if cases and not problems:
        host = _durable_host() if backend == "durable" else None
        revision = Revision({}, {ruleset.name: ruleset}, [], {name: cases}, backend, host, limits)
        try:
            results = cases_module.run_cases(revision)
        finally:
            revision.close()
        passed, failed, failures = _tally(results)
        problems.extend(failures)
    return _memo.put(key, _CaseRun(tuple(problems), passed, failed))


def _tally(results: list) -> tuple[int, int, list[Problem]]:
    """Count cases (one passes when it passes on every backend); one problem per failing case, naming its backends."""
    by_case: dict[tuple, list] = {}
    for result in results:
        by_case.setdefault((result.case.line, result.case.name), []).append(result)
    failures = []
    for runs in by_case.values():
        bad = [r for r in runs if not r.passed]
        if bad:
            messages = dict.fromkeys(r.message for r in bad)
            backends = ", ".join(r.backend for r in bad)
            case = bad[0].case
            failures.append(Problem(case.file, case.line, 1, f"case '{case.name}' ({backends}): {'; '.join(messages)}"))
    return len(by_case) - len(failures), len(failures), failures


def check_files(files: Mapping[str, str], *, backend: str, limits: Limits) -> Report:
    """Check a complete file set as publishing would (without building a revision to serve)."""
    started = time.perf_counter()
    if len(files) > limits.files:
        return _whole(files, limits, started)
    problems: list[Problem] = []
    rulesets: dict[str, RuleSet] = {}
    refused: set[str] = set()
    case_files: dict[str, tuple[_CasesFile, Document]] = {}
    values = 0
    for name in sorted(files):
        if name.endswith(CASES_SUFFIX):
            case_files[name] = _cases_file(name, files[name], limits)
            values += case_files[name][0].values
            problems.extend(case_files[name][0].problems)
            continue
        checked = _rule_file(name, files[name], limits)
        values += checked.values
        problems.extend(checked.problems)
        if checked.ruleset is not None:
            rulesets[checked.ruleset.name] = checked.ruleset
        else:
            refused.add(name.removesuffix(".yaml"))
    if values > limits.total_values:  # the whole build says where the revision ran out
        return _whole(files, limits, started)
    if not rulesets and not problems:
        problems.append(Problem("(rules)", 1, 1, "no rule files (*.yaml) found"))
    passed = failed = 0
    by_ruleset: dict[str, tuple[int, int]] = {}
    for name, (cases_file, doc) in sorted(case_files.items()):
        if cases_file.problems or name.removesuffix(CASES_SUFFIX) in refused or cases_file.tests is None:
            continue
        ruleset = rulesets.get(cases_file.tests)
        rule_text = files.get(f"{cases_file.tests}.yaml", "")
        run = _case_run(name, files[name], doc, ruleset, rule_text, limits, backend)
        problems.extend(run.problems)
        passed += run.passed
        failed += run.failed
        before = by_ruleset.get(cases_file.tests, (0, 0))
        by_ruleset[cases_file.tests] = (before[0] + run.passed, before[1] + run.failed)
    return Report(tuple(problems), passed, failed, (time.perf_counter() - started) * 1000, by_ruleset)


def _whole(files: Mapping[str, str], limits: Limits, started: float) -> Report:
    """The whole build, for a file set past a revision's limits (it refuses them before building anything)."""
    try:
        revision = build_revision(files, backend="python", run_cases=False, limits=limits)
    except RulesInvalid as exc:
        return Report(tuple(exc.problems), 0, 0, (time.perf_counter() - started) * 1000)
    revision.close()  # not reached: build_revision refuses such a set before building it
    return Report(tuple(revision.warnings), 0, 0, (time.perf_counter() - started) * 1000)


def ruleset_of(name: str, text: str | None, limits: Limits) -> RuleSet | None:
    """The rule set a rule file's text declares, when it checks (None otherwise)."""
    return None if text is None else _rule_file(name, text, limits).ruleset


def check_draft(rulebook, files: Mapping[str, str]) -> Report:
    """Check a draft's complete file set with the serving rulebook's backend and limits."""
    return check_files(files, backend=rulebook.backend, limits=rulebook.limits)
