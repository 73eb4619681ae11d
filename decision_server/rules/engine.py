"""A rule revision: every rule file of a folder loaded, checked, compiled and tested as one whole."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from decision_server.errors import NotFound, ValidationError
from decision_server.rules import cases as cases_module
from decision_server.rules import pyeval, vector
from decision_server.rules.analysis import analyse
from decision_server.rules.loader import load_ruleset
from decision_server.rules.model import Result, RuleSet, make_normalizer
from decision_server.rules.source import DEFAULT_LIMITS, Document, Limits, Problem, RulesInvalid, revision_id

log = logging.getLogger("decision_server.rules")

BACKENDS = ("durable", "python")
CASES_SUFFIX = ".cases.yaml"


class CompiledRuleSet:
    """One rule set with its compiled evaluators."""

    def __init__(self, ruleset: RuleSet):
        self.ruleset = ruleset
        self.evaluate_python, self.source = pyeval.compile_ruleset(ruleset)
        self.normalize = make_normalizer(ruleset)
        self.windows = [i for i, rule in enumerate(ruleset.rules) if rule.valid_from is not None or rule.valid_to is not None]
        slots = {name: i for i, name in enumerate(ruleset.inputs)}
        # Per rule, what its explanation reads: (input name, position in the value tuple, spec).
        self.reads = [tuple((n, slots[n], ruleset.inputs[n]) for n in rule.reads) for rule in ruleset.rules]
        self.durable = None  # a DurableRuleSet when the revision runs on durable-rules

    def skip(self, now: float) -> frozenset:
        """Return the indexes of rules outside their validity window at `now`."""
        if not self.windows:
            return frozenset()
        return frozenset(i for i in self.windows if not self.ruleset.rules[i].valid_at(now))


class Revision:
    """A complete, validated set of rule files, ready to evaluate; immutable once built."""

    def __init__(
        self,
        files: Mapping[str, str],
        rulesets: dict[str, RuleSet],
        warnings: list[Problem],
        cases: dict[str, list],
        backend: str,
        durable_host=None,
        limits: Limits | None = None,
    ):
        self.files = dict(files)
        self.id = revision_id(files)
        self.warnings = warnings
        self.cases = cases
        self.backend = backend
        self.limits = limits or DEFAULT_LIMITS  # what it was built within: copies of it (a bulk job's workers) are too
        self.compiled = {name: CompiledRuleSet(rs) for name, rs in rulesets.items()}
        self._lock = threading.Lock()
        self._closed = False
        self._host = durable_host
        self._groups: dict[tuple[str, ...], Any] = {}  # DurableGroups made on first use
        if durable_host is not None:
            from decision_server.rules.durable import DurableRuleSet

            try:
                for compiled in self.compiled.values():
                    compiled.durable = DurableRuleSet(durable_host, compiled.ruleset, self.id)
            except BaseException:
                self.close()
                raise

    @property
    def short_id(self) -> str:
        """Return the first 12 characters of the revision hash, as shown to people."""
        return self.id[:12]

    @property
    def rulesets(self) -> dict[str, RuleSet]:
        """Return the rule sets by name."""
        return {name: c.ruleset for name, c in self.compiled.items()}

    def _get(self, name: str) -> CompiledRuleSet:
        compiled = self.compiled.get(name)
        if compiled is None:
            raise NotFound(f"no rule set named '{name}' in revision {self.short_id}", code="ruleset_not_found")
        return compiled

    def evaluate(self, ruleset: str, facts: Mapping[str, Any], *, now: float | None = None, backend: str | None = None) -> Result:
        """Evaluate one rule set for one input; `now` is epoch seconds (default: the clock)."""
        compiled, now, backend, skip = self._prepare(ruleset, now, backend)
        values = compiled.normalize(facts)
        if backend == "durable":
            indexes = compiled.durable.evaluate(values, now, skip)
        else:
            indexes = compiled.evaluate_python(values, now, skip)
        return self._result(compiled, values, indexes, backend)

    def evaluate_many(
        self, ruleset: str, rows: list[Mapping[str, Any]], *, now: float | None = None, backend: str | None = None
    ) -> list[Result]:
        """Evaluate one rule set for several inputs at once (one engine session on durable-rules)."""
        compiled, now, backend, skip = self._prepare(ruleset, now, backend)
        values = [compiled.normalize(facts) for facts in rows]
        if backend == "durable":
            indexes = compiled.durable.evaluate_many(values, now, skip)
        else:
            indexes = [compiled.evaluate_python(v, now, skip) for v in values]
        return [self._result(compiled, v, i, backend) for v, i in zip(values, indexes, strict=True)]

    def evaluate_group(
        self, rulesets: Sequence[str], facts: Mapping[str, Any], *, now: float | None = None, backend: str | None = None
    ) -> dict[str, Result]:
        """Evaluate several rule sets on one input (each reads its own inputs from `facts`).

        On durable-rules the rule sets share one engine session, which is what makes a decision
        affordable there; results are the same as evaluating each alone.
        """
        return self.evaluate_group_many(rulesets, [facts], now=now, backend=backend)[0]

    def evaluate_group_many(
        self, rulesets: Sequence[str], rows: list[Mapping[str, Any]], *, now: float | None = None, backend: str | None = None
    ) -> list[dict[str, Result]]:
        """Evaluate several rule sets on several inputs (a customer's offers, say) in one session."""
        if not rulesets:
            raise ValidationError("name at least one rule set", errors={"rulesets": ["must not be empty"]})
        prepared = [self._prepare(name, now, backend) for name in rulesets]
        compiled = [p[0] for p in prepared]
        now, backend = prepared[0][1], prepared[0][2]
        skips = [p[3] for p in prepared]
        values = [[c.normalize(facts) for c in compiled] for facts in rows]
        if backend == "durable" and len(rows) == 1:
            indexes = [self._durable_group(tuple(rulesets)).evaluate_all(values[0], now, skips)]
        elif backend == "durable" and rows:
            indexes = self._durable_group(tuple(rulesets)).evaluate_all_many(values, now, skips)
        else:
            indexes = [[c.evaluate_python(v, now, s) for c, v, s in zip(compiled, row, skips, strict=True)] for row in values]
        return [
            {c.ruleset.name: self._result(c, v, i, backend) for c, v, i in zip(compiled, row_values, row_indexes, strict=True)}
            for row_values, row_indexes in zip(values, indexes, strict=True)
        ]

    def _durable_group(self, names: tuple[str, ...]):
        """Return the engine rule set for evaluating `names` together, registering it on first use."""
        group = self._groups.get(names)
        if group is None:
            from decision_server.rules.durable import DurableGroup

            with self._lock:
                if self._closed:
                    raise RuntimeError(f"revision {self.short_id} is closed")
                group = self._groups.get(names)
                if group is None:
                    group = DurableGroup(self._host, [self.compiled[n].ruleset for n in names], self.id)
                    self._groups[names] = group
        return group

    def _prepare(self, ruleset: str, now: float | None, backend: str | None) -> tuple[CompiledRuleSet, float, str, frozenset]:
        """Resolve the rule set, the time, the backend (python when durable is not loaded) and the rules out of date."""
        compiled = self._get(ruleset)
        backend = backend or self.backend
        if backend not in BACKENDS:
            raise ValidationError(f"unknown backend '{backend}'", errors={"backend": [f"one of: {', '.join(BACKENDS)}"]})
        if backend == "durable" and compiled.durable is None:
            backend = "python"
        now = time.time() if now is None else now
        return compiled, now, backend, compiled.skip(now)

    def _result(self, compiled: CompiledRuleSet, values: tuple, indexes: list[int], backend: str) -> Result:
        rs = compiled.ruleset
        if rs.hit == "first":
            outcome = dict(rs.rules[indexes[0]].then) if indexes else (dict(rs.default) if rs.default is not None else None)
        else:
            outcome = tuple(dict(rs.rules[i].then) for i in indexes)
        return Result(rs.name, self.id, outcome, backend, rules=rs.rules, reads=compiled.reads, values=values, indexes=indexes)

    def evaluate_columns(
        self, ruleset: str, columns: Mapping[str, Any], *, now: float | None = None, constants: Mapping[str, Any] | None = None
    ) -> vector.VectorResult:
        """Evaluate one rule set over columns of many inputs with the vectorized backend.

        `constants` are inputs with one value on every row (one offer tried on many customers);
        columns may be the Columns of vector.to_columns, normalized once for many evaluations.
        """
        compiled = self._get(ruleset)
        return vector.evaluate_columns(compiled.ruleset, columns, now=time.time() if now is None else now, constants=constants)

    def outcome_columns(
        self, ruleset: str, columns: Mapping[str, Any], outputs: Sequence[str], *, now: float | None = None
    ) -> dict[str, Any]:
        """Evaluate a `first` rule set over columns and return each output as a column.

        Rows where no rule fired get the rule set's default (None without one). The extra key
        "rule_id" holds the id of the rule that decided each row ("default" when none fired).
        """
        rs = self._get(ruleset).ruleset
        if rs.hit != "first":
            raise ValueError(f"rule set {ruleset!r} is {rs.hit!r}; outcome columns need a 'first' rule set")
        chosen = self.evaluate_columns(ruleset, columns, now=now).chosen
        table = [rule.then for rule in rs.rules] + [rs.default or {}]  # index -1: no rule fired
        out: dict[str, Any] = {"rule_id": np.array([rule.id for rule in rs.rules] + ["default"], dtype=object)[chosen]}
        for output in outputs:
            values = [row.get(output) for row in table]
            kind = object if any(isinstance(v, str) or v is None for v in values) else np.float64
            out[output] = np.array(values, dtype=kind)[chosen]
        return out

    def close(self) -> None:
        """Free the durable-rules rule sets (the host waits for evaluations still running)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for compiled in self.compiled.values():
            if compiled.durable is not None:
                compiled.durable.release()
        for group in self._groups.values():
            group.release()


def build_revision(
    files: Mapping[str, str], *, backend: str = "durable", durable_host=None, run_cases: bool = True, limits: Limits | None = None
) -> Revision:
    """Load, check, compile and test a complete set of rule files; raise RulesInvalid with every problem."""
    limits = limits or DEFAULT_LIMITS
    if backend not in BACKENDS:
        raise ValidationError(f"unknown rules backend '{backend}'", errors={"backend": [f"one of: {', '.join(BACKENDS)}"]})
    if len(files) > limits.files:
        raise RulesInvalid(
            [Problem("(rules)", 1, 1, f"{len(files):,} rule files; a revision may hold at most {limits.files} (RULES_MAX_FILES)")]
        )
    host = durable_host if backend == "durable" else None
    key = (revision_id(files), backend, host is not None, limits)
    known = _checked.recall(key, run_cases)
    if known is not None:  # these files passed before within these limits: only compile them (registered on this host)
        return Revision(files, known.rulesets, list(known.warnings), dict(known.cases), backend, host, limits)
    problems: list[Problem] = []
    rulesets: dict[str, RuleSet] = {}
    refused: set[str] = set()  # rule files with errors: their cases cannot run and are not reported
    case_docs: dict[str, Document] = {}
    docs: dict[str, Document] = {}
    remaining = limits.total_values
    for name in sorted(files):  # every file checked and counted before any is built: building is what costs
        docs[name] = Document(name, files[name], limits, build=False, remaining=remaining)
        remaining -= docs[name].value_count
        if remaining < 0:
            raise RulesInvalid([p for doc in docs.values() for p in doc.problems])
    for name, doc in docs.items():
        doc.build()
        if name.endswith(CASES_SUFFIX):
            case_docs[name] = doc
            problems.extend(doc.problems)
            continue
        ruleset = load_ruleset(doc)
        problems.extend(doc.problems)
        if ruleset is not None:
            rulesets[ruleset.name] = ruleset
            problems.extend(analyse(ruleset))
        else:
            refused.add(name.removesuffix(".yaml"))
    if not rulesets and not problems:
        problems.append(Problem("(rules)", 1, 1, "no rule files (*.yaml) found"))
    cases = {}
    for name, doc in case_docs.items():
        if doc.problems or name.removesuffix(CASES_SUFFIX) in refused:
            continue
        parsed = cases_module.load_cases(doc, rulesets)
        problems.extend(doc.problems)
        cases[name] = parsed
    if any(p.severity == "error" for p in problems):
        raise RulesInvalid(problems)
    revision = Revision(files, rulesets, problems, cases, backend, host, limits)
    if run_cases:
        failures = cases_module.failures(revision)
        if failures:
            revision.close()
            raise RulesInvalid(failures)
    _checked.remember(key, _Checked(rulesets, tuple(problems), cases, run_cases))
    return revision


class _Checked:
    """What building a set of files proved: its rule sets, warnings and cases, and whether the cases ran and passed."""

    __slots__ = ("rulesets", "warnings", "cases", "cases_passed")

    def __init__(self, rulesets: dict[str, RuleSet], warnings: tuple[Problem, ...], cases: dict[str, list], cases_passed: bool):
        self.rulesets, self.warnings, self.cases, self.cases_passed = rulesets, warnings, cases, cases_passed


class _CheckedFiles:
    """The last few file sets that built, by (content hash, backend, on a durable host, limits).

    Loading, checking and running the cases is a pure function of the files' text (cases carry their
    own `now`), and the RuleSets it yields are frozen, so building the same files again (every app a
    process creates on the same folder, a rollback, the test suite's hundreds of apps) need only
    compile them into a new Revision, which owns its own engine rule sets as before. Refused files are
    not kept: a bad edit is checked afresh every time it is built.
    """

    def __init__(self, size: int):
        self._size = size
        self._entries: OrderedDict[tuple, _Checked] = OrderedDict()
        self._lock = threading.Lock()

    def recall(self, key: tuple, run_cases: bool) -> _Checked | None:
        with self._lock:
            known = self._entries.get(key)
            if known is None or (run_cases and not known.cases_passed):
                return None
            self._entries.move_to_end(key)
            return known

    def remember(self, key: tuple, checked: _Checked) -> None:
        with self._lock:
            known = self._entries.get(key)
            if known is not None and known.cases_passed and not checked.cases_passed:
                checked = known
            self._entries[key] = checked
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


_checked = _CheckedFiles(16)
