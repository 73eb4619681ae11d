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


class RfmGridQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    measure = fields.String(
        load_default="customers",
        validate=ma.validate.OneOf(("customers", "revenue")),
        metadata={"description": "customers: buyers per cell; revenue: their spend net of refunds (currency units)"},
    )


class RfmGridCellSchema(ma.Schema):
    r = fields.Integer(metadata={"description": "recency score 1-5"})
    f = fields.Integer(metadata={"description": "frequency score 1-5"})
    value = fields.Raw(metadata={"description": "customers (integer) or revenue (decimal string)"})


class RfmGridSchema(ma.Schema):
    measure = fields.String()
    run = JsonDocument(allow_none=True, metadata={"description": "{id, as_of} of the newest run; null before the first"})
    total = fields.Raw(metadata={"description": "the sum over the cells"})
    cells = fields.List(fields.Nested(RfmGridCellSchema), metadata={"description": "non-empty cells, r from 5 down, f up"})


class RfmMoveSchema(ma.Schema):
    from_ = fields.String(data_key="from", attribute="from", metadata={"description": "segment before the run; none: no segment"})
    to = fields.String(metadata={"description": "segment after the run; none: no segment"})
    customers = fields.Integer()
    moved = fields.Boolean(metadata={"description": "from and to differ"})


class RfmRunRefSchema(ma.Schema):
    id = fields.Integer()
    as_of = fields.DateTime()


class RfmMovesSchema(ma.Schema):
    run = fields.Nested(RfmRunRefSchema, allow_none=True, metadata={"description": "the newest run that recorded its moves"})
    previous = fields.Nested(RfmRunRefSchema, allow_none=True, metadata={"description": "the run before it"})
    moves = fields.List(fields.Nested(RfmMoveSchema), metadata={"description": "customers per (from, to), most first"})
