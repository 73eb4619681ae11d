"""Building the same rule files again reuses what the first build checked, never what it did not."""

from __future__ import annotations

from pathlib import Path

import pytest

from decision_server.rules.durable_host import DurableHost
from decision_server.rules.engine import build_revision
from decision_server.rules.source import RulesInvalid, read_rules_dir

REPO = Path(__file__).resolve().parent.parent


def test_a_second_build_of_the_same_files_is_its_own_revision():
    host = DurableHost()
    files = read_rules_dir(REPO / "rules")
    first = build_revision(files, backend="durable", durable_host=host)
    second = build_revision(files, backend="durable", durable_host=host)
    assert second is not first and second.id == first.id
    assert [w.to_dict() for w in second.warnings] == [w.to_dict() for w in first.warnings]
    facts = {"value_score": 90}
    first.close()  # the second owns its own engine rule sets: closing the first leaves it serving
    result = second.evaluate("value", facts, backend="durable")
    assert result.outcome == {"value_segment": "high"} and result.backend == "durable"
    second.close()
    assert host.names() == []


def test_files_built_without_their_cases_still_have_them_run_when_asked():
    files = read_rules_dir(REPO / "rules")
    files["value.cases.yaml"] = files["value.cases.yaml"].replace(
        "given: {value_score: 90}\n    expect: {value_segment: high}",
        "given: {value_score: 90}\n    expect: {value_segment: low}",
    )
    build_revision(files, backend="python", run_cases=False).close()  # loads: cases are not run
    with pytest.raises(RulesInvalid) as caught:
        build_revision(files, backend="python")
    assert any("value.cases.yaml" in str(p) and "a clearly high score" in str(p) for p in caught.value.problems)


def test_an_edit_is_checked_afresh_and_a_refused_edit_stays_refused():
    files = read_rules_dir(REPO / "rules")
    build_revision(files, backend="python").close()
    broken = dict(files, **{"value.yaml": files["value.yaml"].replace("value_score >= 70", "value_score >= ")})
    for _ in range(2):
        with pytest.raises(RulesInvalid) as caught:
            build_revision(broken, backend="python")
        assert any(p.file == "value.yaml" for p in caught.value.problems)
