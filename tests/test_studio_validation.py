"""The editor's file-by-file check finds what the whole build (publishing) finds, on the shipped files and on edits of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from decision_server.rules.durable_host import DurableHost
from decision_server.rules.engine import build_revision
from decision_server.rules.source import DEFAULT_LIMITS, Limits, RulesInvalid, read_rules_dir
from decision_server.studio.validation import check_files

BACKENDS = re.compile(r"\((?:durable|python|vector)(?:, (?:durable|python|vector))*\):")
SHIPPED = read_rules_dir(Path(__file__).resolve().parent.parent / "rules")

# (file, text to find, replacement): typos, gaps, bad YAML, wrong names, failing cases, warnings.
EDITS = [
    ("value.yaml", "when: value_score >= 70", "when: valu_score >= 70"),
    ("value.yaml", "value_score >= 70", "value_score >= 75"),
    ("value.yaml", "rules:", "rulez:"),
    ("value.yaml", "hit: first", "hit: all"),
    ("value.yaml", "  - id: low_value", "  - id: high_value"),
    ("tiers.yaml", "ruleset", "  ruleset"),
    ("offers.yaml", "ruleset: offers", "ruleset: offer"),
    ("offers.yaml", 'offer.category == "vip"', 'offer.category == "vipp"'),
    ("value.cases.yaml", "expect: {value_segment: high}", "expect: {value_segment: low}"),
    ("value.cases.yaml", "given: {value_score: 90}", "given: {value_scor: 90}"),
    ("value.cases.yaml", "ruleset: value", "ruleset: valeu"),
    ("value.cases.yaml", "fired: [high_value]", "fired: [top_value]"),
    ("lifecycle.cases.yaml", "cases:", "kases:"),
]


@pytest.fixture(scope="module")
def host():
    return DurableHost()


def _published(files, host) -> tuple[bool, set[str]]:
    """What publishing says: valid or not, and its problems (one line per problem, backends folded)."""
    try:
        revision = build_revision(files, backend="durable", durable_host=host, run_cases=True)
    except RulesInvalid as exc:
        return False, {_folded(str(p)) for p in exc.problems}
    revision.close()
    return True, {str(p) for p in revision.warnings}


def _folded(line: str) -> str:
    """A failing case names one backend per problem when published; the editor names them all in one."""
    return BACKENDS.sub("(…):", line)


def test_the_shipped_files_pass_with_every_case_counted(host):
    report = check_files(SHIPPED, backend="durable", limits=DEFAULT_LIMITS)
    assert report.valid and report.failed == 0
    cases = sum(text.count("- name:") for name, text in SHIPPED.items() if name.endswith(".cases.yaml"))
    assert report.passed == cases and report.cases_of("value") == (6, 0)
    assert _published(SHIPPED, host) == (True, {str(p) for p in report.problems})


@pytest.mark.parametrize(("file", "old", "new"), EDITS, ids=[f"{f}:{n}" for f, _, n in EDITS])
def test_an_edit_gets_the_problems_publishing_reports(host, file, old, new):
    assert old in SHIPPED[file]
    files = {**SHIPPED, file: SHIPPED[file].replace(old, new, 1)}
    report = check_files(files, backend="durable", limits=DEFAULT_LIMITS)
    valid, published = _published(files, host)
    assert report.valid == valid
    mine = {_folded(str(p)) for p in report.problems}
    # Publishing stops at the first step that fails: errors in the files (reported with the
    # warnings), else failing cases (reported alone). The editor reports all it found at once.
    failures = {p for p in mine if ": error: case '" in p}
    files_problems = mine - failures
    if any(": error: " in p for p in files_problems):
        assert published == files_problems
    elif failures:
        assert published == failures
    else:
        assert published == mine
    assert mine, "each edit should break something"
    again = check_files(files, backend="durable", limits=DEFAULT_LIMITS)  # from memory, the same
    assert again.problems == report.problems and again.passed == report.passed and again.failed == report.failed


def test_a_file_set_past_the_revision_limits_gets_the_whole_builds_answer():
    limits = Limits(total_values=500)
    report = check_files(SHIPPED, backend="python", limits=limits)
    with pytest.raises(RulesInvalid) as refused:
        build_revision(SHIPPED, backend="python", run_cases=False, limits=limits)
    assert not report.valid and list(report.problems) == refused.value.problems
    assert "RULES_MAX_TOTAL_VALUES" in str(report.problems[-1])


def test_python_only_servers_run_the_cases_on_python_and_vector():
    files = {
        **SHIPPED,
        "value.cases.yaml": SHIPPED["value.cases.yaml"].replace("{value_segment: high}", "{value_segment: low}", 1),
    }
    [failure] = check_files(files, backend="python", limits=DEFAULT_LIMITS).problems
    assert "(python, vector):" in failure.message
