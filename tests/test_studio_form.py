"""The rule form's service: what it offers for every shipped file, and text edits that change only what they say."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from decision_server.rules.engine import build_revision
from decision_server.rules.source import RulesInvalid, read_rules_dir
from decision_server.studio.form import FormInvalid, apply, describe

RULES = Path(__file__).resolve().parent.parent / "rules"
SHIPPED = read_rules_dir(RULES)
RULE_FILES = sorted(name for name in SHIPPED if not name.endswith(".cases.yaml"))


def _changed(field):
    """A different value for a field, of the kind a person would enter."""
    if field.kind == "enabled":
        return not field.value, [""] if field.value else ["", "on"]
    if field.kind == "number":
        new = field.value + (1 if float(field.value).is_integer() else 0.05)
        new = round(new, 6)
        if field.name == "partition:low":
            new = field.value - 1
        text = str(int(new)) if float(new).is_integer() else str(new)
        return float(text), [text]
    if field.kind == "date":
        if field.text:
            new = (dt.date.fromisoformat(field.text[:10]) - dt.timedelta(days=1)).isoformat()
        else:
            new = "2026-01-01" if field.name.endswith("valid_from") else "2099-01-01"
        return new, [new]
    if len(field.value) > 1:
        kept = field.value[:-1]
    else:
        kept = field.value + tuple(v for v in field.options if v not in field.value)[:1]
    return set(kept), ["", *kept]


def _diff_size(old: str, new: str) -> tuple[int, int]:
    """How many characters of the old text and of the new text lie between their common prefix and suffix."""
    prefix = 0
    while prefix < min(len(old), len(new)) and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < min(len(old), len(new)) - prefix and old[-1 - suffix] == new[-1 - suffix]:
        suffix += 1
    return len(old) - prefix - suffix, len(new) - prefix - suffix


def _value(field):
    return set(field.value) if field.kind == "choices" else field.value


@pytest.mark.parametrize("file", RULE_FILES)
def test_every_shipped_file_reads_back_unchanged(file):
    text = SHIPPED[file]
    form = describe(file, text)
    assert not form.problems and form.editable
    assert form.edits(form.values()) == []
    assert apply(text, form.edits(form.values())) == text
    # Every rule has a card, and every threshold's text is in its rule's condition at its line.
    assert [r.id for r in form.rules] == [r["id"] for r in yaml.safe_load(text)["rules"]]
    lines = text.splitlines()
    for rule in form.rules:
        for field in rule.thresholds:
            assert field.before + field.text + field.after in " ".join(rule.condition.split())
            assert "when:" in lines[field.line - 1]


@pytest.mark.parametrize("file", RULE_FILES)
def test_each_field_of_every_shipped_file_changes_alone_and_round_trips(file):
    text = SHIPPED[file]
    form = describe(file, text)
    for name, field in form.fields.items():
        expected, posted = _changed(field)
        new = apply(text, form.edits({name: posted}))
        assert new != text, name
        again = describe(file, new)
        assert not again.problems, (name, again.problems)
        if field.kind == "date":
            assert again.fields[name].text == expected, name
        else:
            assert _value(again.fields[name]) == expected, name
        for other, before in form.fields.items():
            if other != name and other in again.fields and not other.startswith("boundary:"):
                assert _value(again.fields[other]) == _value(before), (name, other)
        removed, added = _diff_size(text, new)
        if field.kind in ("number", "enabled", "date") and not name.startswith("boundary:"):
            assert removed <= 30 and added <= 40, (name, removed, added)  # one literal, or one line
        files = {file: new}  # the rule file with its cases (no other file reads it), not run: a threshold moved may fail one
        if field.kind != "enabled":  # its cases may name the rule switched off: the rule file must build without them
            files[file.replace(".yaml", ".cases.yaml")] = SHIPPED[file.replace(".yaml", ".cases.yaml")]
        if field.kind == "enabled" and form.partition is not None:
            with pytest.raises(RulesInvalid, match="falls in no rule"):  # a threshold rule switched off leaves a gap
                build_revision(files, backend="python", run_cases=False).close()
        else:
            build_revision(files, backend="python", run_cases=False).close()


def test_the_high_value_boundary_changes_both_rules_as_an_editor_would():
    text = SHIPPED["value.yaml"]
    form = describe("value.yaml", text)
    [high, medium] = form.boundaries
    assert (high.label, high.text, high.after) == ("high from", "70", "; medium below it")
    assert (medium.label, medium.text, medium.after) == ("medium from", "40", "; low below it")
    # Each rule's threshold is shown in its sentence and set by the boundary, never on its own.
    cards = {r.id: r for r in form.rules}
    assert [(f.before, f.text, f.boundary) for f in cards["high_value"].thresholds] == [("value_score >= ", "70", high.name)]
    assert not any(f.startswith("high_value:n") or f.startswith("medium_value:n") for f in form.fields)
    new = apply(text, form.edits({high.name: "75"}))
    assert new == text.replace("when: value_score >= 70", "when: value_score >= 75").replace(
        "when: 40 <= value_score < 70", "when: 40 <= value_score < 75"
    )
    revision = build_revision({**SHIPPED, "value.yaml": new}, backend="python")
    assert revision.evaluate("value", {"value_score": 72}).outcome == {"value_segment": "medium"}
    revision.close()


def test_a_boundary_needs_one_rule_on_each_side():
    text = SHIPPED["value.yaml"].replace("when: 40 <= value_score < 70", "when: 40 <= value_score <= 70")
    form = describe("value.yaml", text)  # 70 in both rules (an overlap): two fields, the problem left to validation
    assert [b.text for b in form.boundaries] == ["40"]
    assert {"high_value:n0", "medium_value:n1"} <= set(form.fields)


def test_lists_are_checkboxes_over_the_declared_values():
    text = SHIPPED["offers.yaml"]
    form = describe("offers.yaml", text)
    field = form.fields["vip_needs_status:c0"]
    assert (field.before, field.value, field.options, field.negated) == (
        "tier in ",
        ("bronze", "silver"),
        ("bronze", "silver", "gold", "platinum"),
        False,
    )
    new = apply(text, form.edits({field.name: ["", "silver", "bronze", "gold"]}))
    assert new == text.replace('tier in ["bronze", "silver"]', 'tier in ["bronze", "silver", "gold"]')
    assert describe("offers.yaml", new).fields[field.name].value == ("bronze", "silver", "gold")


def test_switching_a_rule_off_and_on_again_gives_back_the_text():
    text = SHIPPED["offers.yaml"]
    form = describe("offers.yaml", text)
    off = apply(text, form.edits({"vip_not_by_sms:enabled": [""]}))
    assert off == text.replace(
        '    then: {check: applicability, reason: "VIP early access is not offered by SMS."}\n',
        '    then: {check: applicability, reason: "VIP early access is not offered by SMS."}\n    enabled: false\n',
    )
    again = describe("offers.yaml", off)
    assert again.fields["vip_not_by_sms:enabled"].value is False
    assert apply(off, again.edits({"vip_not_by_sms:enabled": ["", "on"]})) == text


def test_a_validity_window_is_added_changed_and_removed_by_lines():
    text = SHIPPED["arbitration.yaml"]
    form = describe("arbitration.yaml", text)
    assert form.fields["december_upsell_push:valid_from"].text == "2026-12-01"
    moved = apply(text, form.edits({"december_upsell_push:valid_from": "2026-11-15"}))
    assert moved == text.replace("valid_from: 2026-12-01", "valid_from: 2026-11-15")
    gone = apply(text, form.edits({"december_upsell_push:valid_to": ""}))
    assert gone == text.replace("    valid_to: 2027-01-01\n", "")
    added = apply(text, form.edits({"vip_for_high_value:valid_to": "2027-06-30"}))
    assert added == text.replace(
        "    then: {factor: lever, weight: 1.3}\n", "    then: {factor: lever, weight: 1.3}\n    valid_to: 2027-06-30\n"
    )


@pytest.mark.parametrize(
    ("file", "values", "field", "message"),
    [
        ("value.yaml", {"boundary:medium_value:high_value": "7O"}, "boundary:medium_value:high_value", "must be a number"),
        ("value.yaml", {"boundary:medium_value:high_value": "inf"}, "boundary:medium_value:high_value", "must be a number"),
        ("value.yaml", {"partition:high": "1e20"}, "partition:high", "without an exponent"),
        ("value.yaml", {"partition:high": "-5"}, "partition:high", "above the start of the range"),
        ("value.yaml", {"high_value:valid_from": "2026-13-45"}, "high_value:valid_from", "must be a date"),
        ("value.yaml", {"high_value:valid_from": "20261201"}, "high_value:valid_from", "must be a date"),
        (
            "arbitration.yaml",
            {"december_upsell_push:valid_to": "2026-11-30"},
            "december_upsell_push:valid_to",
            "must be after",
        ),
        ("offers.yaml", {"vip_needs_status:c0": ["", "gld"]}, "vip_needs_status:c0", "gld: not a value of tier"),
        ("offers.yaml", {"vip_needs_status:c0": [""]}, "vip_needs_status:c0", "choose at least one"),
    ],
)
def test_bad_values_are_refused_with_their_field(file, values, field, message):
    form = describe(file, SHIPPED[file])
    with pytest.raises(FormInvalid) as refused:
        form.edits(values)
    assert list(refused.value.errors) == [field] and message in refused.value.errors[field][0]


def test_numbers_are_written_as_a_person_writes_them():
    form = describe("value.yaml", SHIPPED["value.yaml"])
    new = apply(SHIPPED["value.yaml"], form.edits({"boundary:medium_value:high_value": " 075.0 "}))
    assert "value_score >= 75\n" in new and "< 75\n" in new
    assert form.edits({"boundary:medium_value:high_value": "70.0"}) == []  # the same number: nothing to write


TRICKY = """\
# A rule file written every way YAML allows: the form must leave all of it alone.
ruleset: tricky
description: 'Quoting, folding and comments'
hit: collect
inputs:
  score: {type: number}
  stage: {type: string, values: [a, b, c]}
outputs:
  hit: {type: boolean}
rules:
- id: plain_multi_line   # a comment beside the id
  when: score >= 10 and
    stage in ['a', 'b']
  then: {hit: true}
  # a comment between keys
  valid_to: "2027-01-01"
- id: literal
  when: |
    score > 1.5
      and stage not in ["c"]
  then:
    hit: true
- id: folded
  when: >
    score < -2
    or score >= 1e3
  then: {hit: true}
- id: single_quoted
  when: 'score == 3 and stage in [''a'']'
  then: {hit: true}
- enabled: false
  id: flag_first
  when: score == 5
  then: {hit: true}
- {id: flow, when: score == 7, then: {hit: true}}
- id: double_quoted
  when: "stage in [\\"a\\"] and score == 8"
  then: {hit: true}
"""


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_every_way_of_writing_yaml_survives_byte_for_byte(newline):
    text = TRICKY.replace("\n", newline)
    form = describe("tricky.yaml", text)
    assert not form.problems
    assert form.edits(form.values()) == []
    fields = form.fields
    for name, field in fields.items():
        expected, posted = _changed(field)
        new = apply(text, form.edits({name: posted}))
        again = describe("tricky.yaml", new)
        assert not again.problems, (name, new)
        assert (again.fields[name].text if field.kind == "date" else _value(again.fields[name])) == expected, name
        removed, added = _diff_size(text, new)
        assert removed <= 30 and added <= 40, (name, new)
    cards = {r.id: r for r in form.rules}
    assert [f.text for f in cards["plain_multi_line"].thresholds] == ["10"]
    assert [(f.before, f.value) for f in cards["plain_multi_line"].choices] == [("stage in ", ("a", "b"))]
    assert [f.text for f in cards["literal"].thresholds] == ["1.5"]
    assert [(f.before, f.negated) for f in cards["literal"].choices] == [("stage not in ", True)]
    assert [f.text for f in cards["folded"].thresholds] == ["-2", "1e3"]
    assert cards["flow"].enabled is None and [f.text for f in cards["flow"].thresholds] == ["7"]
    # Escapes in a double-quoted condition move every offset: its spots are left to the editor.
    assert cards["double_quoted"].thresholds == () and cards["double_quoted"].fixed == 2
    # A first key cannot lose its line (the "- " would go too): switching it on writes the default.
    on = apply(text, form.edits({"flag_first:enabled": ["", "on"]}))
    assert on == text.replace("- enabled: false", "- enabled: true")
    # Quotes are doubled inside a single-quoted condition.
    both = apply(text, form.edits({"single_quoted:c0": ["", "a", "c"]}))
    assert "when: 'score == 3 and stage in [''a'', ''c'']'" in both


def test_edits_for_another_text_are_refused():
    form = describe("value.yaml", SHIPPED["value.yaml"])
    edits = form.edits({"boundary:medium_value:high_value": "75"})
    with pytest.raises(ValueError, match="another text"):
        apply(SHIPPED["value.yaml"] + "\n", edits)


def test_a_change_that_would_mean_something_else_is_refused():
    text = """\
ruleset: odd
hit: collect
inputs:
  stage: {type: string, values: [a, "b #c"]}
outputs:
  hit: {type: boolean}
rules:
  - id: r
    when: stage in ["a"]
    then: {hit: true}
"""
    form = describe("odd.yaml", text)
    with pytest.raises(FormInvalid) as refused:  # ' #' would start a comment in the plain scalar
        apply(text, form.edits({"r:c0": ["", "a", "b #c"]}))
    assert list(refused.value.errors) == ["r:c0"]


def test_a_file_that_does_not_load_has_nothing_to_edit():
    form = describe("value.yaml", SHIPPED["value.yaml"].replace("value_score >= 70", "value_scor >= 70"))
    assert not form.editable and "did you mean 'value_score'" in form.problems[0].message
