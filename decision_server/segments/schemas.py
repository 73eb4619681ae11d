"""Request and response schemas of the segments routes."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from decision_server.schemas import JsonDocument, PageQuery, Pattern, StrictBoolean, Text, page_of
from decision_server.segments.service import NAME
from decision_server.validation import ONE_LINE_RE, ONE_LINE_RULE

_NAME_RULE = Pattern(NAME, error="lower-case letters, digits and _, starting with a letter, at most 64")
# In the schema as well as in compile_condition, so that the OpenAPI spec states it.
_CONDITION_RULE = [ma.validate.Length(min=1), Pattern(ONE_LINE_RE, error=f"must be {ONE_LINE_RULE}")]


class SegmentInSchema(ma.Schema):
    name = fields.String(required=True, validate=_NAME_RULE, metadata={"example": "growth_at_risk"})
    description = Text(500, load_default="")
    condition = Text(
        2000, required=True, validate=_CONDITION_RULE, metadata={"example": 'stage == "growth" and churn_risk >= 0.6'}
    )


class SegmentPatchSchema(ma.Schema):
    description = Text(500)
    condition = Text(2000, validate=_CONDITION_RULE)
    active = StrictBoolean()


class SegmentSchema(ma.Schema):
    name = fields.String()
    description = fields.String()
    condition = fields.String()
    active = fields.Boolean()
    members = fields.Integer()
    created_by = fields.String()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class SegmentListSchema(ma.Schema):
    items = fields.List(fields.Nested(SegmentSchema))
    inputs = JsonDocument(metadata={"description": "what a condition may read: name → {type, values, description}"})


class MemberQuerySchema(PageQuery):
    """A page of a segment's members, optionally narrowed by their state now or a search."""

    stage = fields.String(
        validate=ma.validate.Length(min=1, max=32),
        metadata={"description": "lifecycle stage now (a value of rules/lifecycle.yaml)"},
    )
    value_segment = fields.String(
        validate=ma.validate.Length(min=1, max=32), metadata={"description": "value segment now (a value of rules/value.yaml)"}
    )
    q = Text(100, validate=ma.validate.Length(min=1), metadata={"description": "part of the customer id or name"})


class MemberSchema(ma.Schema):
    customer_id = fields.String()
    since = fields.DateTime()


MemberPageSchema = page_of(MemberSchema, "SegmentMemberPage")


class CountSchema(ma.Schema):
    at = fields.DateTime()
    members = fields.Integer()


class CountListSchema(ma.Schema):
    items = fields.List(fields.Nested(CountSchema))


class RecomputeSchema(ma.Schema):
    sizes = JsonDocument(metadata={"description": "segment name → members after the recompute"})
