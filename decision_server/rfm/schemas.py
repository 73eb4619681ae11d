"""Request and response schemas of the RFM routes (runs, statistics, and one customer's RFM)."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from decision_server.schemas import JsonDocument, Timestamp, page_of


class RfmCalculateSchema(ma.Schema):
    as_of = Timestamp(metadata={"description": "score purchases up to this time (default: now)"})


class RfmRunSchema(ma.Schema):
    id = fields.Integer()
    as_of = fields.DateTime()
    buyers = fields.Integer()
    cuts = JsonDocument(
        metadata={"description": "four cut points per measure: recency (epoch s of last purchase), frequency, monetary (cents)"}
    )
    segments = JsonDocument(metadata={"description": "buyers per segment"})
    rule_revision = fields.String()
    source = fields.String()
    seconds = fields.Float()
    created_at = fields.DateTime()


RfmRunPageSchema = page_of(RfmRunSchema, "RfmRunPage")


class RfmStatisticsSchema(ma.Schema):
    run = fields.Nested(RfmRunSchema, allow_none=True)
    segments = fields.List(
        JsonDocument(), metadata={"description": "[{segment, customers, share, avg_r, avg_f, avg_m, avg_purchases, avg_spend}]"}
    )


class CustomerRfmSchema(ma.Schema):
    customer_id = fields.String()
    as_of = fields.DateTime()
    recency_days = fields.Float(allow_none=True)
    frequency = fields.Integer()
    monetary = fields.String(metadata={"description": "spend, currency units"})
    scores = JsonDocument(
        allow_none=True,
        metadata={
            "description": "{r, f, m, segment} against the newest run's cut points; null when never bought or before the first run"
        },
    )
    run = JsonDocument(allow_none=True, metadata={"description": "{id, as_of} of the run whose cut points were used"})
