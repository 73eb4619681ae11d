"""A rule set's cases in the studio: the table (inputs → expected), a run on every backend, adding a case.

Cases are examples the rule set must keep answering right; publishing is refused while one fails.
Adding a case appends it to the draft's cases file as text, so the file's comments and layout stay
as their author wrote them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any

import yaml

from decision_server.errors import ValidationError
from decision_server.rules.cases import run_cases
from decision_server.rules.engine import CASES_SUFFIX
from decision_server.rules.source import RulesInvalid

CASE_NAME_CHARS = 200


def files_of(file: str) -> tuple[str, str]:
    """The rule file and the cases file of a rule set, from either name."""
    rules_file = file.removesuffix(CASES_SUFFIX) + ".yaml" if file.endswith(CASES_SUFFIX) else file
    return rules_file, rules_file.removesuffix(".yaml") + CASES_SUFFIX


@dataclasses.dataclass(frozen=True)
class CaseRow:
    """One case and its result on each backend."""

    name: str
    line: int
    given: dict[str, Any]
    expect: Any
    has_expect: bool
    fired: tuple[str, ...] | None
    results: dict[str, dict[str, Any]]  # backend -> {passed, outcome, fired, message}

    @property
    def passed(self) -> bool:
        return all(r["passed"] for r in self.results.values())


@dataclasses.dataclass(frozen=True)
class CaseTable:
    """The cases of one rule set under a draft, run; or why they could not run."""

    ruleset: str | None
    rules_file: str
    cases_file: str
    backends: tuple[str, ...]
    rows: list[CaseRow]
    problems: list[dict[str, Any]]  # the draft's errors (then no case ran)

    @property
    def failed(self) -> int:
        return sum(not r.passed for r in self.rows)


def table(rulebook, files: dict[str, str], file: str) -> CaseTable:
    """Build the draft (without requiring its cases to pass) and run the cases of `file`'s rule set on every backend."""
    rules_file, cases_file = files_of(file)
    try:
        revision = rulebook.build(files, run_cases=False)
    except RulesInvalid as exc:
        return CaseTable(None, rules_file, cases_file, (), [], [p.to_dict() for p in exc.problems])
    try:
        ruleset = next((rs for rs in revision.rulesets.values() if rs.file == rules_file), None)
        if ruleset is None:
            return CaseTable(None, rules_file, cases_file, (), [], [])
        results = run_cases(revision, ruleset=ruleset.name)
        backends = tuple(dict.fromkeys(r.backend for r in results))
        rows: dict[tuple[str, int], CaseRow] = {}
        for r in results:
            case = r.case
            row = rows.setdefault(
                (case.file, case.line),
                CaseRow(case.name, case.line, case.given, case.expect, case.has_expect, case.fired, {}),
            )
            row.results[r.backend] = {"passed": r.passed, "outcome": r.outcome, "fired": r.fired, "message": r.message}
        return CaseTable(ruleset.name, rules_file, cases_file, backends, list(rows.values()), [])
    finally:
        revision.close()


def flow(value: Any) -> str:
    """Write a value as one line of YAML flow style (mappings as {a: 1}, lists as [x, y])."""
    return (
        yaml.safe_dump(value, default_flow_style=True, width=math.inf, allow_unicode=True, sort_keys=False)
        .strip()
        .removesuffix("\n...")
        .strip()
    )


def plain(value: Any) -> Any:
    """Make a fact writable in a cases file: datetimes as ISO 8601 in UTC, tuples as lists."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def case_text(*, name: str, given: dict[str, Any], expect: Any, fired: list[str] | None = None, now: str | None = None) -> str:
    """The YAML of one case, as an item of a cases file's `cases:` list (two-space indentation)."""
    name = " ".join((name or "").split())
    if not name:
        raise ValidationError("give the case a name", errors={"name": ["required"]})
    if len(name) > CASE_NAME_CHARS:
        raise ValidationError("the case name is too long", errors={"name": [f"at most {CASE_NAME_CHARS} characters"]})
    lines = [f"  - name: {flow(name)}"]
    if now:
        lines.append(f"    now: {now}")
    lines.append(f"    given: {flow(plain(given))}")
    lines.append(f"    expect: {flow(plain(expect))}")
    if fired is not None:
        lines.append(f"    fired: {flow(list(fired))}")
    return "\n".join(lines) + "\n"


def append_case(cases_text: str | None, ruleset: str, item: str) -> str:
    """Append a case (from case_text) at the end of a cases file, or start the file."""
    if not cases_text or not cases_text.strip():
        return f"ruleset: {ruleset}\ncases:\n{item}"
    text = cases_text if cases_text.endswith("\n") else cases_text + "\n"
    if "\ncases:" not in "\n" + text:
        return text + "cases:\n" + item
    if text.rstrip().endswith("cases: []"):
        return text.rstrip()[: -len("[]")].rstrip() + "\n" + item
    return text + item


def parse_value(field: str, text: str, *, mapping: bool = False) -> Any:
    """Read a value a user typed in YAML (a case's given, expect or fired); a clear error for the field."""
    try:
        value = yaml.safe_load(text) if text.strip() else ({} if mapping else None)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ValidationError(f"{field} is not valid YAML{where}", errors={field: [str(getattr(exc, "problem", exc))]}) from None
    if mapping and not isinstance(value, dict):
        raise ValidationError(f"{field} must map input names to values, like {{value_score: 72}}", errors={field: ["a mapping"]})
    return value


def check_draft(rulebook, files: dict[str, str]) -> dict[str, Any]:
    """Check a draft as publishing will: its problems, and every case on every backend (counted, failures listed).

    Unlike the API's validate, a failing case is reported as a case result, not as an error of the
    files, so the page can say "valid, 2 case results fail" and what they are.
    """
    from decision_server.rules.source import revision_id

    try:
        revision = rulebook.build(files, run_cases=False)
    except RulesInvalid as exc:
        return {
            "valid": False,
            "revision": revision_id(files),
            "problems": [p.to_dict() for p in exc.problems],
            "cases": {},
            "failures": [],
        }
    try:
        results = run_cases(revision)
        failures = [r.to_dict() for r in results if not r.passed]
        every = {(r.case.file, r.case.line) for r in results}
        failed = {(f["file"], f["line"]) for f in failures}
        return {
            "valid": True,
            "revision": revision.id,
            "problems": [p.to_dict() for p in revision.warnings],
            # Cases, each counted once: a case passes when it passes on every backend.
            "cases": {"passed": len(every - failed), "failed": len(failed)},
            "backends": sorted({r.backend for r in results}),
            "failures": failures,
        }
    finally:
        revision.close()
