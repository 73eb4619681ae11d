"""Request and response schemas of the value (CVM) routes."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from decision_server.schemas import JsonDocument, Pattern


class ValueStatisticsSchema(ma.Schema):
    segments = fields.List(
        JsonDocument(), metadata={"description": "[{segment, customers, share, avg_score, min_score, max_score, avg_spend}]"}
    )
    not_evaluated = fields.Integer()
    histogram = fields.List(
        JsonDocument(), metadata={"description": "customers per band of 10 score points: [{from, to, customers}]"}
    )


class ValueOffersQuery(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    segment = fields.String(
        validate=Pattern(r"^[a-z][a-z0-9_]{0,31}$"),
        metadata={"description": "one segment (default: every segment the value rules give)", "example": "high"},
    )


class ValueOffersSchema(ma.Schema):
    segments = fields.List(
        JsonDocument(), metadata={"description": "[{segment, offers}]: the active offers that target each value segment by name"}
    )


class ValueThresholdsSchema(ma.Schema):
    input = fields.String(allow_none=True, metadata={"description": "the score the value rules read (value_score)"})
    range = fields.List(fields.Float(), allow_none=True, metadata={"description": "[low, high] of the score"})
    segments = fields.List(
        JsonDocument(), metadata={"description": "[{segment, rule_id, from, to}] in score order, from the serving rules"}
    )
    cuts = fields.List(fields.Float(), metadata={"description": "scores where one segment gives way to the next"})
