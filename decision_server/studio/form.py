"""The form view of a rule file: what a marketing manager can change without reading YAML, written back as YAML.

`describe` lists the fields of one file: per rule its enabled flag, its validity window, the
numbers in its condition (each in its sentence) and its lists of declared values; and, in a
threshold rule set, each boundary two rules share once. `Form.edits` reads a posted form into
edits and `apply` makes them as text: a few characters replaced, or one line inserted or removed,
never a re-dumped file, so comments, order and quoting survive and the text editor shows what a
person would have typed. `apply` then reads the result back and refuses it unless it means
exactly the old file with the intended changes.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import yaml

from decision_server.errors import ValidationError
from decision_server.rules.loader import load_ruleset
from decision_server.rules.model import RuleSet, to_epoch
from decision_server.rules.source import Document, Problem
from decision_server.studio import yamltext
from decision_server.studio.spots import Spot, spots
from decision_server.studio.yamltext import Splice

NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?")
RULE_KEYS = ("enabled", "valid_from", "valid_to")  # the order they are inserted in
ON = {"on", "true", "1", "yes"}
_ABSENT = object()


class FormInvalid(ValidationError):
    """Posted values the form cannot write: `errors` maps each field name to its messages."""

    code = "rule_form_invalid"


@dataclasses.dataclass(frozen=True)
class Field:
    """One input of the form: its current value and, privately, where and how it is written."""

    name: str  # the form field's name, e.g. "high_value:enabled"
    kind: str  # enabled, date, number, choices
    label: str
    line: int
    value: Any  # bool (enabled), ISO text or "" (date), float (number), tuple of text (choices)
    text: str = ""  # how it is written now ("70", "2026-12-01", "")
    before: str = ""  # a threshold's sentence: the comparison before and after the number
    after: str = ""
    options: tuple[str, ...] = ()  # choices: the input's declared values
    negated: bool = False  # choices: `not in`
    input: str | None = None
    hint: str = ""  # the input's description
    boundary: str | None = None  # a threshold another (boundary) field sets together with its pair
    targets: tuple = dataclasses.field(default=(), repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class RuleForm:
    """One rule's card: its title and fields, and its condition as written (read-only)."""

    id: str
    description: str
    line: int
    condition: str
    enabled: Field | None  # None for the fields of a rule written as a flow mapping `{…}`
    valid_from: Field | None
    valid_to: Field | None
    thresholds: tuple[Field, ...]
    choices: tuple[Field, ...]
    fixed: int = 0  # literals of the condition only the editor can change (written in a way we do not splice)


@dataclasses.dataclass(frozen=True)
class Edit:
    """A change the form makes: text splices, and what the file's data must become (to check them)."""

    field: str
    splices: tuple[Splice, ...]
    changes: tuple[tuple, ...]  # ("text", path, start, end, piece) | ("set", path, value) | ("delete", path)
    digest: str  # of the text the edit was made for


@dataclasses.dataclass(frozen=True)
class Form:
    """The form of one rule file."""

    file: str
    text: str
    digest: str
    description: str
    problems: tuple[Problem, ...]  # the file does not load: nothing to edit until it is fixed
    partition: tuple[Field, Field] | None  # the range every value of the input must fall in
    partition_input: str | None
    boundaries: tuple[Field, ...]
    rules: tuple[RuleForm, ...]

    @property
    def fields(self) -> dict[str, Field]:
        """Every field by name."""
        found = [*(self.partition or ()), *self.boundaries]
        for rule in self.rules:
            found += [f for f in (rule.enabled, rule.valid_from, rule.valid_to) if f] + [*rule.thresholds, *rule.choices]
        return {f.name: f for f in found if f.boundary is None}

    @property
    def editable(self) -> bool:
        """Tell whether the form has anything to change."""
        return bool(self.fields)

    def values(self) -> dict[str, list[str]]:
        """Return the current values as the HTML form posts them (checkboxes after an empty hidden input)."""
        posted = {"enabled": lambda f: ["", "on"] if f.value else [""], "choices": lambda f: ["", *f.value]}
        return {n: posted.get(f.kind, lambda f: [f.text])(f) for n, f in self.fields.items()}

    def edits(self, values: Mapping[str, Any]) -> list[Edit]:
        """Read posted values (a field left out is left alone) into edits; raise FormInvalid naming each bad field."""
        fields, errors, edits, read = self.fields, {}, [], {}
        for name, field in fields.items():
            if name not in values:
                continue
            raw = values.getlist(name) if hasattr(values, "getlist") else values[name]
            raw = [raw] if isinstance(raw, str) else [str(v) for v in raw]
            try:
                read[name] = _read(field, raw)
            except ValueError as exc:
                errors[name] = [str(exc)]
        _check_together(self, read, errors)
        if errors:
            raise FormInvalid(f"{len(errors)} field(s) to correct", errors=errors)
        for name, value in read.items():
            if value is not _UNCHANGED:
                edits.append(_edit(self, fields[name], value))
        return edits


_UNCHANGED = object()


def describe(file: str, text: str, ruleset: RuleSet | None = None) -> Form:
    """Describe what the form can change in rule file `file` (`ruleset`: the file's checked rule set, if at hand)."""
    doc = Document(file, text)
    if ruleset is None and not doc.problems:
        ruleset = load_ruleset(doc)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    if ruleset is None or doc.problems:
        problems = tuple(doc.problems) or (Problem(file, 1, 1, "the file does not load"),)
        return Form(file, text, digest, "", problems, None, None, (), ())
    rules = [_rule(doc, ruleset, index, item) for index, item in enumerate(doc.value["rules"])]
    partition, boundaries = None, ()
    if ruleset.partition is not None:
        partition = _partition(doc, ruleset)
        rules, boundaries = _boundaries(doc, ruleset, rules)
    return Form(file, text, digest, ruleset.description, (), partition, ruleset.partition and ruleset.partition.input,
                tuple(boundaries), tuple(rules))  # fmt: skip


# -- describing -----------------------------------------------------------------------------


def _rule(doc: Document, ruleset: RuleSet, index: int, item: dict) -> RuleForm:
    path = ("rules", index)
    rule_id = item["id"]
    mark = doc.mark(path)
    block = doc.text[yamltext.offset(doc.text, mark.line, mark.column)] != "{"
    keys = {key: _key_field(doc, path, item, key, rule_id) if block else None for key in RULE_KEYS}
    thresholds, choices, fixed = [], [], 0
    when = item.get("when")
    if isinstance(when, str):
        counts = {"number": 0, "choices": 0}  # fields named n0, n1, … and c0, c1, … in the condition's order
        for spot in spots(when, ruleset.inputs):
            name = f"{rule_id}:{spot.kind[0]}{counts[spot.kind]}"
            counts[spot.kind] += 1
            field = _spot_field(doc, ruleset, path + ("when",), when, spot, name)
            if field is None:
                fixed += 1
            else:
                (thresholds if spot.kind == "number" else choices).append(field)
    condition = when if isinstance(when, str) else str(when).lower()
    return RuleForm(rule_id, str(item.get("description") or ""), mark.line, condition.strip(), *keys.values(),
                    tuple(thresholds), tuple(choices), fixed)  # fmt: skip


def _key_field(doc: Document, path: tuple, item: dict, key: str, rule_id: str) -> Field | None:
    """A rule's enabled flag or validity date: present (its scalar's span) or absent (where a line goes)."""
    text, name = doc.text, f"{rule_id}:{key}"
    label = {"enabled": "Enabled", "valid_from": "Applies from", "valid_to": "Applies until"}[key]
    kind = "enabled" if key == "enabled" else "date"
    line = doc.mark(path).line
    if key in item:
        mark = doc.mark(path + (key,))
        start = yamltext.offset(text, mark.line, mark.column)
        end = yamltext.scalar_end(text, start, flow=False)
        value = item[key]
        if end is None or not yamltext.rest_is_blank(text, end) or isinstance(value, (dict, list)):
            return None  # written over several lines, or beside something else: the editor's job
        shown = value if kind == "enabled" else _date_text(value)
        removal = yamltext.key_line(text, start, key)
        return Field(name, kind, label, mark.line, shown, shown if kind == "date" else "",
                     targets=(("key", path, key, start, end, removal),))  # fmt: skip
    default = True if kind == "enabled" else ""
    return Field(name, kind, label, line, default, targets=(("key", path, key, None, None, None),))


def _date_text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return "" if value is None else str(value)


def _spot_field(doc: Document, ruleset: RuleSet, path: tuple, when: str, spot: Spot, name: str) -> Field | None:
    """A number or a list of the condition as a field, when its place in the file is certain."""
    text, style = doc.text, doc.mark(path).style
    start = yamltext.offset(doc.text, *doc.text_position(path, spot.start))
    end = yamltext.offset(doc.text, *doc.text_position(path, spot.end - 1)) + 1
    if yamltext.squash(text[start:end]) != yamltext.squash(yamltext.encode(when[spot.start : spot.end], style)):
        return None  # escapes in a quoted scalar move the offsets: leave it to the editor
    before = " ".join(when[spot.context[0] : spot.start].split())
    after = " ".join(when[spot.end : spot.context[1]].split())
    target = ("when", path, spot.start, spot.end, start, end, style, spot)
    if spot.kind == "number":
        spec = ruleset.inputs.get(spot.bound.input) if spot.bound else None
        return Field(name, "number", "Threshold", doc.mark(path).line, spot.value, when[spot.start : spot.end],
                     before, after, input=spec and spec.name, hint=spec.description if spec else "",
                     targets=(target,))  # fmt: skip
    spec = ruleset.inputs[spot.input]
    return Field(name, "choices", spot.input, doc.mark(path).line, spot.value, before=before, after=after,
                 options=spec.values, negated=spot.negated, input=spot.input, hint=spec.description,
                 targets=(target,))  # fmt: skip


def _partition(doc: Document, ruleset: RuleSet) -> tuple[Field, Field] | None:
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
        value = doc.value["partition"]["range"][index]
        label = "From" if index == 0 else "to"
        fields.append(Field(f"partition:{end_name}", "number", label, mark.line, float(value), doc.text[start:end],
                            input=ruleset.partition.input, targets=(("scalar", path, start, end),)))  # fmt: skip
    return fields[0], fields[1]


def _boundaries(doc: Document, ruleset: RuleSet, rules: list[RuleForm]) -> tuple[list[RuleForm], list[Field]]:
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
            bound = field.targets[0][-1].bound
            if bound is not None and bound.input == name:
                sides.setdefault((field.value, bound.side), []).append((rule, field))
    pairs = {}
    for (value, side), found in sides.items():
        other = sides.get((value, "high"), []) if side == "low" else []
        if side != "low" or len(found) != 1 or len(other) != 1 or found[0][0] is other[0][0]:
            continue
        (upper, starts), (lower, ends) = found[0], other[0]
        if starts.targets[0][-1].bound.inclusive == ends.targets[0][-1].bound.inclusive:
            continue  # both take v (an overlap) or neither does (a gap): not a seam to keep
        pairs[value] = (upper, starts, lower, ends)
    boundaries, bound_to = [], {}
    for value in sorted(pairs, reverse=True):
        upper, starts, lower, ends = pairs[value]
        field_name = f"boundary:{lower.id}:{upper.id}"
        inclusive = starts.targets[0][-1].bound.inclusive
        label = f"{_outcome(doc, upper)} {'from' if inclusive else 'above'}"
        after = f"; {_outcome(doc, lower)} {'below' if inclusive else 'up to'} it"
        boundaries.append(Field(field_name, "number", label, starts.line, value, starts.text, label, after, input=name,
                                hint=ruleset.inputs[name].description, targets=starts.targets + ends.targets))  # fmt: skip
        bound_to[id(starts)] = bound_to[id(ends)] = field_name
    rules = [
        dataclasses.replace(r, thresholds=tuple(dataclasses.replace(f, boundary=bound_to.get(id(f))) for f in r.thresholds))
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


# -- reading posted values ------------------------------------------------------------------


def _read(field: Field, raw: list[str]) -> Any:
    """Return the posted value of one field (or _UNCHANGED); raise ValueError with what is wrong."""
    if field.kind == "enabled":
        value = any(v.strip().lower() in ON for v in raw)
        return _UNCHANGED if value == field.value else value
    if field.kind == "choices":
        picked = list(dict.fromkeys(v.strip() for v in raw if v.strip()))
        unknown = [v for v in picked if v not in field.options]
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not a value of {field.input} ({', '.join(field.options)})")
        if not picked:
            raise ValueError("choose at least one (to switch the rule off, untick Enabled)")
        return _UNCHANGED if set(picked) == set(field.value) else tuple(picked)
    text = (raw[-1] if raw else "").strip()
    if field.kind == "number":
        if not NUMBER.fullmatch(text) or not math.isfinite(float(text)):
            raise ValueError("must be a number like 70 or 0.65")
        written = _number_text(float(text))
        if field.targets[0][0] == "scalar" and not isinstance(yaml.safe_load(written), (int, float)):
            raise ValueError("must be a number like 70 or 0.65, without an exponent")
        return _UNCHANGED if float(text) == field.value else written
    if text == field.text or (not text and not field.text):
        return _UNCHANGED
    if text:
        try:
            if not DATE.fullmatch(text):
                raise ValueError
            to_epoch(text)
        except ValueError:
            raise ValueError("must be a date like 2026-12-01 (or a time like 2026-12-01T08:00:00Z)") from None
    return text


def _number_text(value: float) -> str:
    """Write a number as a person would (75, not 75.0 or 075, which YAML would read as octal)."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _check_together(form: Form, read: dict[str, Any], errors: dict[str, list[str]]) -> None:
    """Check what depends on two fields: a validity window's end after its start, a range's low below its high."""

    def final(field: Field | None) -> Any:
        value = read.get(field.name, _UNCHANGED) if field else _UNCHANGED
        return (field.text if field.kind == "date" else field.value) if value is _UNCHANGED else value

    for rule in form.rules:
        start, end = rule.valid_from, rule.valid_to
        if start and end and start.kind == end.kind == "date" and start.name not in errors and end.name not in errors:
            low, high = final(start), final(end)
            if low and high and to_epoch(high) <= to_epoch(low):
                errors[end.name] = ["must be after the date it applies from; the rule could never apply"]
    if form.partition and not any(f.name in errors for f in form.partition):
        low, high = (float(final(f)) for f in form.partition)
        if low >= high:
            errors[form.partition[1].name] = ["must be above the start of the range"]


# -- writing --------------------------------------------------------------------------------


def _edit(form: Form, field: Field, value: Any) -> Edit:
    splices, changes = [], []
    for target in field.targets:
        kind, path = target[0], target[1]
        if kind == "when":
            _, _, v_start, v_end, start, end, style, spot = target
            piece = value if field.kind == "number" else _list_text(spot, value)
            splices.append(Splice(start, end, 0, yamltext.encode(piece, style)))
            changes.append(("text", path, v_start, v_end, piece))
        elif kind == "scalar":
            _, _, start, end = target
            splices.append(Splice(start, end, 0, value))
            changes.append(("set", path, yaml.safe_load(value)))
        else:
            splice, change = _key_edit(form.text, target, field, value)
            splices.append(splice)
            changes.append(change)
    return Edit(field.name, tuple(splices), tuple(changes), form.digest)


def _list_text(spot: Spot, picked: tuple[str, ...]) -> str:
    """Write a list like the original: its quotes and separator; kept values in their order, new ones after."""
    order = [v for v in spot.value if v in picked] + [v for v in picked if v not in spot.value]
    quoted = [spot.quote + v.replace("\\", "\\\\").replace(spot.quote, "\\" + spot.quote) + spot.quote for v in order]
    return "[" + spot.separator.join(quoted) + "]"


def _key_edit(text: str, target: tuple, field: Field, value: Any) -> tuple[Splice, tuple]:
    """Set, add or remove a rule's `enabled`, `valid_from` or `valid_to` line."""
    _, path, key, start, end, removal = target
    default = value is True if field.kind == "enabled" else value == ""
    written = ("true" if value else "false") if field.kind == "enabled" else value
    if start is not None:  # the key is there
        if default and removal is not None:
            return Splice(removal[0], removal[1]), ("delete", path + (key,))
        written = written or "null"
        return Splice(start, end, 0, written), ("set", path + (key,), yaml.safe_load(written))
    doc = Document("form.yaml", text)
    mark = doc.mark(path)
    indent = mark.column - 1
    at = yamltext.block_end(text, mark.line, indent)
    line = " " * indent + f"{key}: {written}" + yamltext.newline(text)
    if at == len(text) and text and not text.endswith("\n"):
        line = yamltext.newline(text) + line
    return Splice(at, at, RULE_KEYS.index(key), line), ("set", path + (key,), yaml.safe_load(written))


def apply(text: str, edits: Sequence[Edit]) -> str:
    """Make `edits` (from `describe(…, text).edits(…)`) in `text`; raise FormInvalid if the result would mean anything else."""
    if not edits:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    if any(e.digest != digest for e in edits):
        raise ValueError("the edits were made for another text")
    new = yamltext.splice(text, [s for e in edits for s in e.splices])
    before, after = Document("form.yaml", text), Document("form.yaml", new)
    expected = copy.deepcopy(before.value)
    changes = [c for e in edits for c in e.changes]
    # Pieces of one condition from the end backwards, so each one's offsets still hold.
    for change in sorted(changes, key=lambda c: -c[2] if c[0] == "text" else math.inf):
        _change(expected, change)
    if after.problems or after.value != expected:
        wrong = [
            e.field for e in edits if after.problems or any(_at(after.value, c[1]) != _at(expected, c[1]) for c in e.changes)
        ]
        message = "cannot be written into this file's text here; change it in the editor"
        raise FormInvalid("the change cannot be made in the form", errors={f: [message] for f in wrong or [edits[0].field]})
    return new


def _at(data: Any, path: tuple) -> Any:
    for key in path:
        if not isinstance(data, (dict, list)) or (isinstance(data, dict) and key not in data):
            return _ABSENT
        data = data[key]
    return data


def _change(data: Any, change: tuple) -> None:
    kind, path = change[0], change[1]
    parent = _at(data, path[:-1])
    if kind == "delete":
        del parent[path[-1]]
    elif kind == "set":
        parent[path[-1]] = change[2]
    else:
        _, _, start, end, piece = change
        parent[path[-1]] = parent[path[-1]][:start] + piece + parent[path[-1]][end:]
