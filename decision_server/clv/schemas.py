"""Request and response schemas of the CLV routes (the whole base's, and one customer's)."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from decision_server.schemas import JsonDocument, PageQuery, Timestamp, page_of


class ClvQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    as_of = Timestamp(metadata={"description": "count purchases up to this time (default: now)"})


class ClvSchema(ma.Schema):
    customer_id = fields.String()
    as_of = fields.DateTime()
    historical = JsonDocument(allow_none=True, metadata={"description": "null: no purchase before as_of"})
    predicted = JsonDocument(metadata={"description": "{ltv_12m, model: {version, fallback, reason}}"})


class ClvListQuerySchema(PageQuery):
    as_of = Timestamp(metadata={"description": "count purchases up to this time (default: now)"})


class ClvRowSchema(ma.Schema):
    customer_id = fields.String()
    revenue = fields.String()
    cost = fields.String()
    profit = fields.String()
    orders = fields.Integer()
    average_order = fields.String()
    tenure_days = fields.Integer()
    lifespan_days = fields.Integer()
    purchase_frequency = fields.Float()


ClvPageSchema = page_of(ClvRowSchema, "ClvPage")


class ClvStatisticsSchema(ma.Schema):
    as_of = fields.DateTime()
    customers = fields.Integer()
    buyers = fields.Integer()
    revenue = fields.String()
    cost = fields.String()
    profit = fields.String()
    revenue_per_buyer = JsonDocument(metadata={"description": "{mean, p50, p90, p99}, currency units"})
