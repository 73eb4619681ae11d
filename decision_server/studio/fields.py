"""The fields of a rule file's form: what each rule lets a person change, and where in the text it is written."""

from __future__ import annotations

import dataclasses
import re
from datetime import date, datetime
from typing import Any

from decision_server.rules.model import RuleSet
from decision_server.rules.source import Document
from decision_server.studio import yamltext
from decision_server.studio.spots import Spot, spots

RULE_KEYS = ("enabled", "valid_from", "valid_to")  # also the order new lines are inserted in
_KEY_LABELS = {"enabled": "Enabled", "valid_from": "Applies from", "valid_to": "Applies until"}


@dataclasses.dataclass(frozen=True)
class InWhen:
    """A piece of a condition: when[value_start:value_end], written at text[start:end] in a scalar of `style`."""

    path: tuple
    value_start: int
    value_end: int
    start: int
    end: int
    style: str | None
    spot: Spot


@dataclasses.dataclass(frozen=True)
class Scalar:
    """A whole one-line scalar at text[start:end] (a partition's range end)."""

    path: tuple
    start: int
    end: int


@dataclasses.dataclass(frozen=True)
class RuleKey:
    """A rule's `key:`: its scalar at text[start:end] and its removable line, or None when the key is absent."""

    path: tuple  # the rule's
    key: str
    start: int | None = None
    end: int | None = None
    line: tuple[int, int] | None = None  # None: the line holds more than the key (e.g. "- enabled: false")
    rule_line: int = 0  # where the rule's first key is, and how far in: an absent key's line goes after the rule
    indent: int = 0


@dataclasses.dataclass(frozen=True)
class Field:
    """One input of the form: its current value and where (and how) it is written."""

    name: str  # the form field's name, e.g. "high_value:enabled"
    kind: str  # enabled, date, number, choices
    label: str
    line: int
    value: Any  # bool (enabled), ISO text or "" (date), float (number), tuple of text (choices)
    text: str = ""  # how it is written now ("70", "2026-12-01", "")
    before: str = ""  # the sentence around it: the comparison before and after the number or list
    after: str = ""
    options: tuple[str, ...] = ()  # choices: the input's declared values
    negated: bool = False  # choices: `not in`
    input: str | None = None
    hint: str = ""  # the input's description
    boundary: str | None = None  # set: a boundary field changes this threshold together with its pair
    targets: tuple[InWhen | Scalar | RuleKey, ...] = dataclasses.field(default=(), repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class RuleForm:
    """One rule's card: its title and fields, and its condition as written (read-only)."""

    id: str
    description: str
    line: int
    condition: str
    enabled: Field | None  # None: not changeable here (a rule written as a flow mapping `{…}`)
    valid_from: Field | None
    valid_to: Field | None
    thresholds: tuple[Field, ...]
    choices: tuple[Field, ...]
    fixed: int = 0  # numbers and lists of the condition only the editor can change (escapes in a quoted scalar)

    @property
    def own_thresholds(self) -> tuple[Field, ...]:
        """The thresholds set on this card (the others are boundaries, set once for the rule set)."""
        return tuple(f for f in self.thresholds if f.boundary is None)

    @property
    def bound_sentences(self) -> tuple[str, ...]:
        """The comparisons whose numbers the boundaries set, each once (`40 <= value_score < 70`)."""
        sentences = (f.before + f.text + f.after for f in self.thresholds if f.boundary)
        return tuple(dict.fromkeys(sentences))


def rule_form(doc: Document, ruleset: RuleSet, index: int) -> RuleForm:
    """Return the card of the rule at `rules[index]` of a loaded rule file."""
    path = ("rules", index)
    item = doc.value["rules"][index]
    rule_id, mark = item["id"], doc.mark(path)
    block = doc.text[yamltext.offset(doc.text, mark.line, mark.column)] != "{"
    keys = [_key_field(doc, path, item, key) if block else None for key in RULE_KEYS]
    found: dict[str, list[Field]] = {"number": [], "choices": []}
    fixed = 0
    when = item.get("when")
    for spot in spots(when, ruleset.inputs) if isinstance(when, str) else ():
        name = f"{rule_id}:{spot.kind[0]}{len(found[spot.kind])}"  # n0, n1, … and c0, c1, … in the condition's order
        field = _spot_field(doc, ruleset, path + ("when",), spot, name)
        if field is None:
            fixed += 1
            found[spot.kind].append(None)  # keeps the names of the later ones
        else:
            found[spot.kind].append(field)
    condition = when.strip() if isinstance(when, str) else str(when).lower()
    thresholds, choices = (tuple(f for f in found[k] if f) for k in ("number", "choices"))
    return RuleForm(rule_id, str(item.get("description") or ""), mark.line, condition, *keys, thresholds, choices, fixed)


def _key_field(doc: Document, path: tuple, item: dict, key: str) -> Field | None:
    """A rule's enabled flag or validity date: present (its scalar's span) or absent (a line to add)."""
    text, name, label = doc.text, f"{item['id']}:{key}", _KEY_LABELS[key]
    kind = "enabled" if key == "enabled" else "date"
    if key not in item:
        default = True if kind == "enabled" else ""
        mark = doc.mark(path)
        target = RuleKey(path, key, rule_line=mark.line, indent=mark.column - 1)
        return Field(name, kind, label, mark.line, default, targets=(target,))
    mark = doc.mark(path + (key,))
    start = yamltext.offset(text, mark.line, mark.column)
    end = yamltext.scalar_end(text, start, flow=False)
    value = item[key]
    if end is None or not yamltext.rest_is_blank(text, end) or isinstance(value, (dict, list)):
        return None  # written over several lines, or beside something else: the editor's job
    removal = yamltext.key_line(text, start, key)
    target = RuleKey(path, key, start, end, removal)
    if kind == "enabled":
        return Field(name, kind, label, mark.line, value, targets=(target,))
    shown = _date_text(value)
    return Field(name, kind, label, mark.line, shown, shown, targets=(target,))


def _date_text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return "" if value is None else str(value)


def _spot_field(doc: Document, ruleset: RuleSet, path: tuple, spot: Spot, name: str) -> Field | None:
    """A number or a list of the condition as a field, when its place in the file is certain."""
    when, style, line = doc.value["rules"][path[1]]["when"], doc.mark(path).style, doc.mark(path).line
    start = yamltext.offset(doc.text, *doc.text_position(path, spot.start))
    end = yamltext.offset(doc.text, *doc.text_position(path, spot.end - 1)) + 1
    written = when[spot.start : spot.end]
    if yamltext.squash(doc.text[start:end]) != yamltext.squash(yamltext.encode(written, style)):
        return None  # escapes in a quoted scalar move the offsets: leave it to the editor
    before = re.sub(r"\s+", " ", when[spot.context[0] : spot.start])  # line breaks as spaces, spacing as written
    after = re.sub(r"\s+", " ", when[spot.end : spot.context[1]])
    target = InWhen(path, spot.start, spot.end, start, end, style, spot)
    if spot.kind == "number":
        spec = ruleset.inputs.get(spot.bound.input) if spot.bound else None
        return Field(
            name,
            "number",
            "Threshold",
            line,
            spot.value,
            written,
            before,
            after,
            input=spec.name if spec else None,
            hint=spec.description if spec else "",
            targets=(target,),
        )
    spec = ruleset.inputs[spot.input]
    return Field(
        name,
        "choices",
        spot.input,
        line,
        spot.value,
        "",
        before,
        after,
        spec.values,
        spot.negated,
        spot.input,
        spec.description,
        targets=(target,),
    )


def partition_fields(doc: Document, ruleset: RuleSet) -> tuple[Field, Field] | None:
    """Return the two ends of a threshold rule set's range as fields (None when not written as plain numbers)."""
    fields = []
    for index, end_name in enumerate(("low", "high")):
        path = ("partition", "range", index)
        if path not in doc.marks:
            return None
        mark = doc.mark(path)
        start = yamltext.offset(doc.text, mark.line, mark.column)
        end = yamltext.scalar_end(doc.text, start, flow=True)
        if end is None:
            return None
        value = float(doc.value["partition"]["range"][index])
        label = "From" if index == 0 else "to"
        target = Scalar(path, start, end)
        spec = ruleset.inputs[ruleset.partition.input]
        fields.append(
            Field(
                f"partition:{end_name}",
                "number",
                label,
                mark.line,
                value,
                doc.text[start:end],
                input=spec.name,
                hint=spec.description,
                targets=(target,),
            )
        )
    return fields[0], fields[1]


def pair_boundaries(doc: Document, ruleset: RuleSet, rules: list[RuleForm]) -> tuple[list[RuleForm], list[Field]]:
    """Pair the thresholds where two rules' ranges of the partition's input meet, to set each such number once.

    A number v is a boundary when exactly one enabled rule starts at v (`x >= v` or `x > v`) and
    exactly one other ends there the complementary way (`x < v` or `x <= v`): moving one without
    the other would open a gap or an overlap, so the form shows them as one field. The order of
    the rules in the file does not matter; any other threshold stays a field of its own.
    """
    name = ruleset.partition.input
    sides: dict[tuple[float, str], list[tuple[RuleForm, Field]]] = {}
    for rule in rules:
        if rule.enabled is not None and rule.enabled.value is False:
            continue
        for field in rule.thresholds:
            bound = field.targets[0].spot.bound
            if bound is not None and bound.input == name:
                sides.setdefault((field.value, bound.side), []).append((rule, field))
    boundaries, bound_to = [], {}
    for (value, side), starting in sorted(sides.items(), reverse=True):
        ending = sides.get((value, "high"), [])
        if side != "low" or len(starting) != 1 or len(ending) != 1 or starting[0][0] is ending[0][0]:
            continue
        (upper, starts), (lower, ends) = starting[0], ending[0]
        inclusive = starts.targets[0].spot.bound.inclusive
        if inclusive == ends.targets[0].spot.bound.inclusive:
            continue  # both take v (an overlap) or neither does (a gap): not a seam to keep
        label = f"{_outcome(doc, upper)} {'from' if inclusive else 'above'}"
        after = f"; {_outcome(doc, lower)} {'below' if inclusive else 'up to'} it"
        field_name = f"boundary:{lower.id}:{upper.id}"
        boundaries.append(
            Field(
                field_name,
                "number",
                label,
                starts.line,
                value,
                starts.text,
                label,
                after,
                input=name,
                hint=ruleset.inputs[name].description,
                targets=starts.targets + ends.targets,
            )
        )
        bound_to[starts.name] = bound_to[ends.name] = field_name
    rules = [
        dataclasses.replace(r, thresholds=tuple(dataclasses.replace(f, boundary=bound_to.get(f.name)) for f in r.thresholds))
        for r in rules
    ]
    return rules, boundaries


def _outcome(doc: Document, rule: RuleForm) -> str:
    """Name a rule by its outcome when it gives one text value (`high`), else by its id."""
    item = next(i for i in doc.value["rules"] if i.get("id") == rule.id)
    then = item.get("then")
    if isinstance(then, dict) and len(then) == 1 and isinstance(next(iter(then.values())), str):
        return next(iter(then.values()))
    return rule.id
