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


class ClvDistributionSchema(ma.Schema):
    count = fields.Integer()
    mean = fields.Float(allow_none=True)
    median = fields.Float(allow_none=True)
    p99 = fields.Float(allow_none=True)
    max = fields.Float(allow_none=True)
    bins = fields.List(
        JsonDocument(),
        metadata={
            "description": "[{lo, hi, count}], currency units; equal width from 0 up to p95, the last bin also holds the values above"
        },
    )
    model = JsonDocument(
        allow_none=True, metadata={"description": "predicted only: {version, fallback, reason} of the ltv model"}
    )


class ClvSummarySchema(ma.Schema):
    computed_at = fields.DateTime(metadata={"description": "when these figures were computed (they are cached per data version)"})
    data_version = JsonDocument(
        metadata={"description": "{bulk_run_id, rfm_run_id, last_customer_id} the figures were computed for"}
    )
    customers = fields.Integer()
    buyers = fields.Integer()
    historical = fields.Nested(ClvDistributionSchema, metadata={"description": "revenue per buyer, net of refunds"})
    predicted = fields.Nested(
        ClvDistributionSchema, metadata={"description": "predicted spend in the next 12 months, per customer"}
    )
    top = fields.List(
        JsonDocument(),
        metadata={"description": "top buyers by revenue: {customer_id, revenue, profit, orders, ltv_12m, stage, value_segment}"},
    )
    by_stage = fields.List(JsonDocument(), metadata={"description": "[{stage, customers, revenue, avg_revenue, avg_predicted}]"})
    by_value_segment = fields.List(
        JsonDocument(), metadata={"description": "[{value_segment, customers, revenue, avg_revenue, avg_predicted}]"}
    )
