"""Request and response schemas for rule revisions, drafts, publication and evaluation."""

from __future__ import annotations

import re

import marshmallow as ma
from marshmallow import fields

from decision_server.rules.engine import BACKENDS
from decision_server.schemas import JsonDocument, PageQuery, Pattern, StrictBoolean, Text, Timestamp, page_of

FILE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}(\.cases)?\.yaml$")
MAX_FILE_CHARS = 1024 * 1024

# A revision is its hash or its first 6 or more hex digits (as api.RevisionConverter in a path).
_REVISION = Pattern(r"^[0-9a-fA-F]{6,64}$", error="must be 6 to 64 hexadecimal characters")


class _FileName(fields.String):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.metadata.setdefault("pattern", FILE_NAME.pattern)

    def _deserialize(self, value, attr, data, **kwargs):
        name = super()._deserialize(value, attr, data, **kwargs)
        if not FILE_NAME.fullmatch(name):
            raise ma.ValidationError("a rule file name is lower-case letters, digits and _, ending in .yaml or .cases.yaml")
        return name


class DraftSchema(ma.Schema):
    """A draft: files to add or replace, and files to remove, on top of the revision serving now."""

    files = fields.Dict(
        keys=_FileName(),
        values=fields.String(validate=ma.validate.Length(max=MAX_FILE_CHARS)),
        load_default=dict,
        metadata={"example": {"value.yaml": "ruleset: value\n…"}},
    )
    remove = fields.List(_FileName(), load_default=list, validate=ma.validate.Length(max=200))
    replace_all = StrictBoolean(
        load_default=False, metadata={"description": "true: `files` is the complete revision; false: it changes the serving one"}
    )


class PublishSchema(DraftSchema):
    """A draft to publish, with a message for the history."""

    message = Text(500, required=True, validate=ma.validate.Length(min=1), metadata={"example": "high value from 75"})


class RollbackSchema(ma.Schema):
    """Which revision to go back to (default: the one before the current), and why."""

    revision = fields.String(validate=_REVISION)
    message = Text(500, load_default="rollback")


class ProblemSchema(ma.Schema):
    """A problem in a rule file, with its place."""

    file = fields.String()
    line = fields.Integer()
    column = fields.Integer()
    message = fields.String()
    severity = fields.String()


class PublicationSchema(ma.Schema):
    """A publish or rollback: the revision that then served."""

    id = fields.Integer(attribute="publication_id")
    revision = fields.String()
    action = fields.String()
    source = fields.String()
    author = fields.String()
    message = fields.String()
    published_at = Timestamp()


class PublishResultSchema(PublicationSchema):
    """The publication, and whether it changed what serves."""

    changed = fields.Boolean()
    warnings = fields.List(fields.Nested(ProblemSchema))


class RevisionSummarySchema(ma.Schema):
    """A stored revision without its files."""

    id = fields.Integer()
    revision = fields.String()
    author = fields.String()
    message = fields.String()
    created_at = Timestamp()
    files = fields.Function(lambda r: sorted(r.files))


class RevisionSchema(RevisionSummarySchema):
    """A stored revision with the content of every file."""

    files = fields.Dict(keys=fields.String(), values=fields.String())


RevisionPageSchema = page_of(RevisionSummarySchema, "RevisionPageSchema")
PublicationPageSchema = page_of(PublicationSchema, "PublicationPageSchema")


class DiffQuerySchema(ma.Schema):
    """The revision to compare with (default: the one serving)."""

    class Meta:
        unknown = ma.RAISE

    against = fields.String(validate=_REVISION)


class DiffSchema(ma.Schema):
    """A unified diff between two revisions."""

    old = fields.String()
    new = fields.String()
    diff = fields.String()


class CaseResultSchema(ma.Schema):
    """One case on one backend."""

    file = fields.String()
    line = fields.Integer()
    ruleset = fields.String()
    case = fields.String()
    backend = fields.String()
    passed = fields.Boolean()
    outcome = fields.Raw(allow_none=True)
    fired = fields.List(fields.String())
    message = fields.String()


class ValidationResultSchema(ma.Schema):
    """What a draft would be: valid or not, its problems, its cases and its diff."""

    valid = fields.Boolean()
    revision = fields.String()
    problems = fields.List(fields.Nested(ProblemSchema))
    cases = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={"example": {"passed": 96, "failed": 0}})
    diff = fields.String()


class TestRunSchema(ma.Schema):
    """Every case of the serving revision on every backend."""

    revision = fields.String()
    passed = fields.Integer()
    failed = fields.Integer()
    results = fields.List(fields.Nested(CaseResultSchema))


class EvaluateSchema(ma.Schema):
    """Evaluate one rule set of the serving revision for example inputs."""

    ruleset = fields.String(required=True, validate=ma.validate.Length(min=1, max=100))
    inputs = JsonDocument(load_default=dict)
    now = Timestamp(metadata={"description": "evaluate as of this time (default: now)"})
    backend = fields.String(validate=ma.validate.OneOf(BACKENDS))


class FiredSchema(ma.Schema):
    """A rule that fired and the input values it read."""

    rule = fields.String()
    reads = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True))
    then = fields.Dict(keys=fields.String(), values=fields.Raw())


class EvaluationSchema(ma.Schema):
    """The outcome with its explanation and the revision that gave it."""

    ruleset = fields.String()
    revision = fields.String()
    outcome = fields.Raw(allow_none=True)
    fired = fields.List(fields.Nested(FiredSchema))
    backend = fields.String()


class RuleSetSummarySchema(ma.Schema):
    """A rule set of the serving revision."""

    name = fields.String()
    file = fields.String()
    description = fields.String()
    hit = fields.String()
    rules = fields.Integer()
    inputs = fields.Dict(keys=fields.String(), values=fields.String())
    outputs = fields.Dict(keys=fields.String(), values=fields.String())


class StatusSchema(ma.Schema):
    """What serves here, what was published, and what the rules folder holds."""

    revision = fields.String(allow_none=True)
    backend = fields.String()
    published = fields.Dict(allow_none=True)
    folder = fields.Dict()
    warnings = fields.List(fields.Nested(ProblemSchema))
    rulesets = fields.List(fields.Nested(RuleSetSummarySchema))


class RevisionPageQuery(PageQuery):
    """Paging through revisions or publications, newest first."""
