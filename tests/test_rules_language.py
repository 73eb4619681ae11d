"""The rule language: parsing, type checks and load-time analysis, with the place of every error."""

from __future__ import annotations

import pytest

from decision_server.rules.engine import build_revision
from decision_server.rules.source import RulesInvalid

VALUE = """\
ruleset: value
hit: first
inputs:
  value_score: number
outputs:
  value_segment: {type: string, values: [high, medium, low]}
partition: {input: value_score, range: [0, 100]}
rules:
  - id: high
    when: value_score >= 70
    then: {value_segment: high}
  - id: medium
    when: 40 <= value_score < 70
    then: {value_segment: medium}
  - id: low
    when: value_score < 40
    then: {value_segment: low}
"""

PROFILE = """\
ruleset: profile
hit: collect
inputs:
  stage: {type: string, values: [growth, win_back]}
  spend: number
  visits: number
  vip: boolean
  last_purchase_at: timestamp
  offer.stages: {type: list, values: [growth, win_back, retention]}
outputs:
  tag: string
rules:
  - id: rule
    when: WHEN
    then: {tag: x}
"""


def problems_of(files: dict[str, str]) -> list:
    with pytest.raises(RulesInvalid) as caught:
        build_revision(files, backend="python")
    return caught.value.problems


def only_problem(files: dict[str, str]):
    [problem] = [p for p in problems_of(files) if p.severity == "error"]
    return problem


def profile(when: str) -> dict[str, str]:
    return {"profile.yaml": PROFILE.replace("WHEN", when)}


def evaluate(when: str, facts: dict, now: str = "2026-06-01T00:00:00Z"):
    from decision_server.rules.model import to_epoch

    quoted = "'" + when.replace("'", '"') + "'"
    revision = build_revision(profile(quoted), backend="python")
    return revision.evaluate("profile", facts, now=to_epoch(now)).fired_ids == ["rule"]


def test_a_typo_in_a_threshold_is_refused_with_its_line_and_column():
    broken = VALUE.replace("value_score >= 70", "value_scor >= 70")
    problem = only_problem({"value.yaml": broken})
    assert (problem.file, problem.line, problem.column) == ("value.yaml", 10, 11)
    assert "unknown name 'value_scor'" in problem.message and "did you mean 'value_score'" in problem.message


def test_a_syntax_error_points_at_the_offending_character():
    problem = only_problem({"value.yaml": VALUE.replace("value_score >= 70", "value_score => 70")})
    assert (problem.line, problem.column) == (10, 23)
    assert "unexpected character '='" in problem.message


def test_a_single_equals_sign_gets_a_hint():
    problem = only_problem(profile("spend = 5"))
    assert "write == to compare" in problem.message


@pytest.mark.parametrize(
    "when, message",
    [
        ("spend > 'high'", "cannot compare a number with a string"),
        ("stage > 'growth'", "a string can only be compared with == or !="),
        ("stage == 'grwoth'", "'stage' is never 'grwoth'; did you mean 'growth'?"),
        ("stage in ['growth', 'winback']", "'stage' is never 'winback'; did you mean 'win_back'?"),
        ("spend + stage > 3", "'+' works on numbers, but this is a string"),
        ("spend", "a condition must be true or false, but this is a number"),
        ("days_since(spend) > 3", "days_since() takes a timestamp, but this is a number"),
        ("day_since(last_purchase_at) > 3", "unknown function 'day_since'; did you mean 'days_since'?"),
        ("spend > 3 and", "expected a value, found end of condition"),
        ("(spend > 3", "expected ')', found end of condition"),
        ("spend in offer.stages", "only text can be looked up in a list input"),
        ("'grwoth' in offer.stages", "'offer.stages' never holds 'grwoth'; did you mean 'growth'?"),
        ("spend > 3 extra", "unexpected 'extra' after a complete condition"),
        ("__import__('os')", "unknown function '__import__'"),
        ("spend.__class__ > 1", "unknown name 'spend.__class__'"),
    ],
)
def test_type_and_name_errors_are_explained(when, message):
    quoted = when.replace("'", "''")
    problem = only_problem(profile(f"'{quoted}'"))
    assert message in problem.message
    assert PROFILE.replace("WHEN", f"'{quoted}'").splitlines()[problem.line - 1][problem.column - 1] != " "
    assert problem.line == 14


def test_gaps_and_overlaps_in_thresholds_are_errors():
    gap = VALUE.replace("40 <= value_score < 70", "40 <= value_score <= 69")
    [problem] = problems_of({"value.yaml": gap})
    assert "a value_score in (69, 70) falls in no rule" in problem.message
    overlap = VALUE.replace("40 <= value_score < 70", "40 <= value_score <= 70")
    [problem] = problems_of({"value.yaml": overlap})
    assert "rules 'high' and 'medium' overlap: a value_score in [70, 70] falls in both" in problem.message
    assert problem.line == 12


def test_a_changed_threshold_that_still_partitions_is_accepted():
    moved = VALUE.replace(">= 70", ">= 75").replace("< 70", "< 75")
    revision = build_revision({"value.yaml": moved}, backend="python")
    assert revision.evaluate("value", {"value_score": 72}).outcome == {"value_segment": "medium"}


def test_rules_that_can_never_fire_are_reported():
    problem = only_problem(profile("spend > 10 and spend < 5"))
    assert "can never fire" in problem.message
    always_first = VALUE.replace("when: value_score >= 70", "when: true").replace(
        "partition: {input: value_score, range: [0, 100]}\n", ""
    )
    messages = [p.message for p in problems_of({"value.yaml": always_first})]
    assert any("rule 'medium' can never fire: rule 'high' before it always fires" in m for m in messages)


def test_every_problem_of_a_file_is_reported_at_once():
    broken = VALUE.replace("value_score >= 70", "value_scor >= 70").replace("{value_segment: low}", "{value_segment: lo}")
    messages = [p.message for p in problems_of({"value.yaml": broken})]
    assert any("value_scor" in m for m in messages) and any("'lo' is not one of the values" in m for m in messages)


def test_unknown_keys_and_duplicate_ids_are_errors():
    messages = [
        p.message
        for p in problems_of(
            {"value.yaml": VALUE.replace("  - id: medium", "  - id: high").replace("hit: first", "hit: first\nhits: 3")}
        )
    ]
    assert any("unknown key 'hits'" in m for m in messages)
    assert any("rule id 'high' is used twice" in m for m in messages)


def test_yaml_that_does_not_parse_names_its_line():
    problem = only_problem({"value.yaml": VALUE.replace("  - id: low\n", "  - id: low\n   bad: [\n")})
    assert problem.line >= 16 and "not valid YAML" in problem.message


def test_python_object_tags_are_refused():
    problem = only_problem(
        {"value.yaml": VALUE.replace("value_segment: low}", "value_segment: !!python/object/apply:os.system [ls]}")}
    )
    assert "not valid YAML" in problem.message


@pytest.mark.parametrize(
    "when, facts, fires",
    [
        ("spend > 10", {"spend": 11}, True),
        ("spend > 10", {}, False),
        ("not (spend > 10)", {}, False),  # missing stays unknown under not
        ("not (spend > 10)", {"spend": 3}, True),
        ("spend is missing", {}, True),
        ("spend is not missing", {"spend": 0}, True),
        ("spend > 10 or visits > 1", {"visits": 2}, True),
        ("spend between 10 and 20", {"spend": 20}, True),
        ("10 <= spend < 20", {"spend": 20}, False),
        ("spend / visits > 2", {"spend": 10, "visits": 0}, False),  # division by zero is missing
        ("not (spend / visits > 2)", {"spend": 10, "visits": 0}, False),
        ("spend * 2 - visits >= 19", {"spend": 10, "visits": 1}, True),
        ("-spend < -5", {"spend": 10}, True),
        ("coalesce(spend, 0) == 0", {}, True),
        ("max(spend, visits) == 7 and min(spend, visits) == 2", {"spend": 2, "visits": 7}, True),
        ("abs(spend) == 4", {"spend": -4}, True),
        ("stage in ['growth', 'win_back']", {"stage": "growth"}, True),
        ("stage not in ['growth']", {"stage": "win_back"}, True),
        ("stage not in ['growth']", {}, False),
        ("'growth' in offer.stages", {"offer.stages": ["growth"]}, True),
        ("'growth' in offer.stages", {"offer.stages": ["retention"]}, False),
        ("stage not in offer.stages", {"stage": "growth", "offer.stages": ["win_back"]}, True),
        ("vip", {"vip": True}, True),
        ("not vip", {"vip": False}, True),
        ("not vip", {}, False),
        ("vip == false", {"vip": False}, True),
        ("days_since(last_purchase_at) == 31", {"last_purchase_at": "2026-05-01T00:00:00Z"}, True),
        ("days_since(last_purchase_at) == 30", {"last_purchase_at": "2026-05-01T00:00:01Z"}, True),
        ("last_purchase_at < date('2026-05-02')", {"last_purchase_at": "2026-05-01"}, True),
        ("visits == 3", {"visits": 3.0}, True),
        ("spend > 5e-05", {"spend": 0.0001}, True),
    ],
)
def test_conditions_mean_what_they_say(when, facts, fires):
    assert evaluate(when, facts) is fires


def test_text_in_a_rule_stays_data_in_the_compiled_backend():
    # The compiled backend generates Python from the parsed form; literals go through repr(), so
    # rule text that looks like code can only ever be compared, never run.
    files = {
        "notes.yaml": """\
ruleset: notes
hit: collect
inputs:
  note: string
outputs:
  hit: boolean
rules:
  - id: quoted
    when: |
      note == "a\\" or True or \\"b" or note == "__import__('os').system('false')"
    then: {hit: true}
"""
    }
    for backend in ("python", "durable"):
        from decision_server.rules.durable_host import DurableHost

        revision = build_revision(files, backend=backend, durable_host=DurableHost() if backend == "durable" else None)
        fires = lambda note, revision=revision: revision.evaluate("notes", {"note": note}).fired_ids == ["quoted"]  # noqa: E731
        assert fires('a" or True or "b') and fires("__import__('os').system('false')")
        assert not fires("b") and not fires("")
        assert "__import__" not in revision.compiled["notes"].source.replace(repr("__import__('os').system('false')"), "")
        revision.close()


@pytest.mark.parametrize("style", ["plain", "folded", "literal"])
def test_errors_in_multi_line_conditions_point_at_the_word(style):
    lead = {"plain": "", "folded": ">\n      ", "literal": "|\n      "}[style]
    when = f"{lead}spend > 10 and\n      visits > 2 and vistis < 9"
    problem = only_problem(profile(when))
    assert "unknown name 'vistis'" in problem.message
    assert (problem.line, problem.column) == ((15, 22) if style == "plain" else (16, 22))


def test_errors_on_a_more_indented_line_of_a_literal_block_point_at_the_word():
    # The block's indentation comes from its first line: the extra spaces of a deeper line are part of the value.
    when = "|\n      spend > 10\n        and vistis < 9"
    problem = only_problem(profile(when))
    assert "unknown name 'vistis'" in problem.message
    assert (problem.line, problem.column) == (16, 13)
