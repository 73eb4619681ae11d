"""Request and response schemas of the customer 360 view (GET /customers/{id}/profile)."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from decision_server.lifecycle.schemas import TransitionSchema
from decision_server.schemas import JsonDocument


class ProfileSchema(ma.Schema):
    """Everything we know and decide about one customer, consistent as of one moment."""

    customer = fields.Nested("CustomerSchema")
    as_of = fields.DateTime()
    stage = fields.String(allow_none=True)
    stage_since = fields.DateTime(allow_none=True)
    journey_stage = fields.String(allow_none=True)
    recommended_actions = fields.List(fields.String(), metadata={"description": "for the stage, from rules/stage_actions.yaml"})
    value = JsonDocument(metadata={"description": "{score, segment}"})
    rfm = JsonDocument(allow_none=True, metadata={"description": "{r, f, m, segment}; null when never bought"})
    tier = fields.String(allow_none=True, metadata={"description": "loyalty tier (null: not a member)"})
    loyalty = JsonDocument(
        allow_none=True,
        metadata={
            "description": "tier, tier_since, points {balance, pending, available, expiring, expiring_by, earned_12m}, "
            "recent ledger entries and redemptions; null: not a member"
        },
    )
    scores = JsonDocument(metadata={"description": "every model's score now"})
    models = JsonDocument(metadata={"description": "model name → {version, fallback, reason}"})
    segments = fields.List(JsonDocument(), metadata={"description": "[{segment, rule}] from rules/segments.yaml, now"})
    clv = JsonDocument(metadata={"description": "historical CLV now, and predicted (ltv_12m)"})
    recent_transactions = fields.List(fields.Nested("TransactionSchema"))
    recent_touchpoints = fields.List(fields.Nested("TouchpointSchema"))
    transitions = fields.List(fields.Nested(TransitionSchema))
    recent_decisions = fields.List(
        JsonDocument(),
        metadata={"description": "the latest decisions: id, time, channel, actions (GET /decisions/{id} explains each)"},
    )
    value_offers = fields.List(
        JsonDocument(),
        metadata={"description": "active offers whose target value segments include the customer's (CVM value-based offers)"},
    )
    rule_revision = fields.String()


class ProfileQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    recent = fields.Integer(
        load_default=10, validate=ma.validate.Range(1, 100), metadata={"description": "items per recent list"}
    )
