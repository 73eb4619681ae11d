"""Request and response schemas of the lifecycle (CLM) routes and of a customer's transitions and stage."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from decision_server.lifecycle.history import INTERVALS
from decision_server.lifecycle.service import SOURCES
from decision_server.schemas import JsonDocument, PageQuery, Text, Timestamp, page_of


class TransitionSchema(ma.Schema):
    id = fields.Integer()
    customer_id = fields.String()
    from_stage = fields.String(allow_none=True)
    to_stage = fields.String()
    at = fields.DateTime()
    rule_id = fields.String(allow_none=True, metadata={"description": "The lifecycle rule that decided it (null: manual)"})
    rule_revision = fields.String(allow_none=True)
    source = fields.String(metadata={"description": "event, bulk or manual"})
    actor = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)


TransitionPageSchema = page_of(TransitionSchema, "TransitionPage")


class TransitionQuerySchema(PageQuery):
    from_stage = fields.String(validate=ma.validate.Length(max=32))
    to_stage = fields.String(validate=ma.validate.Length(max=32))
    first = fields.Boolean(metadata={"description": "only first stages (no stage before: from_stage is null)"})
    source = fields.String(validate=ma.validate.OneOf(SOURCES))
    since = Timestamp(metadata={"description": "transitions at or after this time"})
    until = Timestamp(metadata={"description": "transitions before this time"})


class SetStageSchema(ma.Schema):
    stage = fields.String(required=True, validate=ma.validate.Length(min=1, max=32))
    reason = Text(
        500, required=True, validate=ma.validate.Length(min=3), metadata={"example": "moved by account manager after call"}
    )


class SetStageResultSchema(ma.Schema):
    changed = fields.Boolean()
    transition = fields.Nested(TransitionSchema, allow_none=True)


class PeriodQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    since = Timestamp(metadata={"description": "start of the period for the transition matrix (default: 30 days ago)"})
    until = Timestamp(metadata={"description": "end of the period (default: now)"})


class LifecycleStatisticsSchema(ma.Schema):
    stages = fields.List(
        JsonDocument(),
        metadata={"description": "[{stage, customers, actions}] in the rule set's order; actions from rules/stage_actions.yaml"},
    )
    not_evaluated = fields.Integer(metadata={"description": "customers with no stage yet"})
    since = fields.DateTime()
    until = fields.DateTime()
    matrix = fields.List(JsonDocument(), metadata={"description": "[{from, to, count}] of transitions in the period"})


class HistoryQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    since = Timestamp(metadata={"description": "start of the history (default: 12 weeks before until)"})
    until = Timestamp(metadata={"description": "end of the history, excluded (default: now); after since"})
    interval = fields.String(
        load_default="week",
        validate=ma.validate.OneOf(tuple(INTERVALS)),
        metadata={"description": "day, or week (from Monday, UTC)"},
    )


class HistoryPeriodSchema(ma.Schema):
    start = fields.DateTime()
    end = fields.DateTime(metadata={"description": "the counts are the customers in each stage at this moment"})
    moves = fields.Integer(metadata={"description": "stage transitions in the period"})


class StageHistorySchema(ma.Schema):
    stage = fields.String()
    customers = fields.List(fields.Integer(), metadata={"description": "customers in the stage at the end of each period"})


class LifecycleHistorySchema(ma.Schema):
    interval = fields.String()
    since = fields.DateTime()
    until = fields.DateTime()
    periods = fields.List(fields.Nested(HistoryPeriodSchema))
    stages = fields.List(fields.Nested(StageHistorySchema), metadata={"description": "in the rule set's order"})


class EvaluateResultSchema(ma.Schema):
    customers = fields.Integer()
    changed = fields.Integer(metadata={"description": "customers whose stage changed"})
    revalued = fields.Integer(metadata={"description": "customers whose value score or segment changed"})
    transitions = fields.List(JsonDocument())
    seconds = fields.Float()
