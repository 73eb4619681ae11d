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
from typing import Any

import yaml

from decision_server.errors import ValidationError
from decision_server.rules.loader import load_ruleset
from decision_server.rules.model import RuleSet, to_epoch
from decision_server.rules.source import Document, Problem
from decision_server.studio import yamltext
from decision_server.studio.fields import (
    RULE_KEYS,
    Field,
    InWhen,
    RuleForm,
    RuleKey,
    Scalar,
    pair_boundaries,
    partition_fields,
    rule_form,
)
from decision_server.studio.spots import Spot
from decision_server.studio.yamltext import Splice

NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?")
ON = {"on", "true", "1", "yes"}
_ABSENT = object()  # a path the data does not have
_UNCHANGED = object()  # a posted value equal to what the file says


class FormInvalid(ValidationError):
    """Posted values the form cannot write: `errors` maps each field name to its messages."""

    code = "rule_form_invalid"


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


def describe(file: str, text: str, ruleset: RuleSet | None = None) -> Form:
    """Describe what the form can change in rule file `file` (`ruleset`: the file's checked rule set, if at hand)."""
    doc = Document(file, text)
    if ruleset is None and not doc.problems:
        ruleset = load_ruleset(doc)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    if ruleset is None or doc.problems:
        problems = tuple(doc.problems) or (Problem(file, 1, 1, "the file does not load"),)
        return Form(file, text, digest, "", problems, None, None, (), ())
    rules = [rule_form(doc, ruleset, index) for index in range(len(doc.value["rules"]))]
    partition, boundaries = None, []
    if ruleset.partition is not None:
        partition = partition_fields(doc, ruleset)
        rules, boundaries = pair_boundaries(doc, ruleset, rules)
    name = ruleset.partition.input if ruleset.partition else None
    return Form(file, text, digest, ruleset.description, (), partition, name, tuple(boundaries), tuple(rules))


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
        if isinstance(field.targets[0], Scalar) and not isinstance(yaml.safe_load(written), (int, float)):
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
        if isinstance(target, InWhen):
            piece = value if field.kind == "number" else _list_text(target.spot, value)
            splices.append(Splice(target.start, target.end, 0, yamltext.encode(piece, target.style)))
            changes.append(("text", target.path, target.value_start, target.value_end, piece))
        elif isinstance(target, Scalar):
            splices.append(Splice(target.start, target.end, 0, value))
            changes.append(("set", target.path, yaml.safe_load(value)))
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


def _key_edit(text: str, target: RuleKey, field: Field, value: Any) -> tuple[Splice, tuple]:
    """Set, add or remove a rule's `enabled`, `valid_from` or `valid_to` line."""
    path = target.path + (target.key,)
    default = value is True if field.kind == "enabled" else value == ""
    written = ("true" if value else "false") if field.kind == "enabled" else value
    if target.start is not None:  # the key is there
        if default and target.line is not None:
            return Splice(*target.line), ("delete", path)
        written = written or "null"  # its line cannot go: an empty date is written as such
        return Splice(target.start, target.end, 0, written), ("set", path, yaml.safe_load(written))
    at = yamltext.block_end(text, target.rule_line, target.indent)
    line = " " * target.indent + f"{target.key}: {written}" + yamltext.newline(text)
    if at == len(text) and text and not text.endswith("\n"):
        line = yamltext.newline(text) + line
    return Splice(at, at, RULE_KEYS.index(target.key), line), ("set", path, yaml.safe_load(written))


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
