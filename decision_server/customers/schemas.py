"""Request and response schemas for customers."""

from __future__ import annotations

import re

import marshmallow as ma
from marshmallow import fields

from decision_server.schemas import (
    Code,
    Consent,
    EventTime,
    ExternalId,
    JsonDocument,
    Money,
    PageQuery,
    Pattern,
    Text,
    Timestamp,
    page_of,
)

PHONE_RE = re.compile(r"^\+?[0-9][0-9 ()-]{2,31}$")


class _CustomerFields(ma.Schema):
    first_name = Text(100, allow_none=True)
    last_name = Text(100, allow_none=True)
    email = fields.Email(allow_none=True, validate=ma.validate.Length(max=254))
    phone = fields.String(
        allow_none=True,
        validate=Pattern(PHONE_RE, error="digits, spaces, ( ) - and an optional leading +"),
    )
    consent = Consent(metadata={"example": {"sms": True, "app": True, "call_centre": False}})
    attributes = JsonDocument(metadata={"example": {"plan": "prepaid", "region": "north"}})


class CustomerCreateSchema(_CustomerFields):
    """A new customer; `external_id` is the id your systems use."""

    external_id = ExternalId(required=True, metadata={"example": "C-000123"})
    created_at = EventTime(metadata={"description": "when they became a customer (default: now); not in the future"})


class CustomerUpdateSchema(_CustomerFields):
    """A partial update: consent and attributes are merged by key (null removes a key)."""

    consent = Consent(allow_none_values=True)
    attributes = JsonDocument()


class CustomerStateSchema(ma.Schema):
    """Aggregates kept up to date as transactions and touchpoints arrive."""

    transaction_count = fields.Integer()
    total_spend = Money(attribute="total_spend_cents", dump_only=True)
    total_cost = Money(attribute="total_cost_cents", dump_only=True)
    first_purchase_at = fields.DateTime(allow_none=True)
    last_purchase_at = fields.DateTime(allow_none=True)
    touchpoint_count = fields.Integer()
    last_touchpoint_at = fields.DateTime(allow_none=True)
    stage = fields.String(allow_none=True, metadata={"description": "Lifecycle stage (null until first evaluated)"})
    stage_since = fields.DateTime(allow_none=True)
    value_score = fields.Float(allow_none=True, metadata={"description": "Customer value score 0-100 (CVM)"})
    value_segment = fields.String(allow_none=True, metadata={"description": "high, medium or low (rules/value.yaml)"})
    journey_stage = fields.String(
        allow_none=True, metadata={"description": "Journey stage from touchpoints (rules/journey.yaml)"}
    )
    rfm = fields.Method("_rfm", metadata={"description": "RFM scores 1-5 and segment; null for a customer who never bought"})

    def _rfm(self, state):
        if state.get("rfm_r") is None:
            return None
        return {"r": state["rfm_r"], "f": state["rfm_f"], "m": state["rfm_m"], "segment": state["rfm_segment"]}


class CustomerSchema(ma.Schema):
    """A customer as the API shows it."""

    id = fields.String(attribute="external_id")
    first_name = fields.String(allow_none=True)
    last_name = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    consent = fields.Dict()
    attributes = fields.Dict()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    state = fields.Nested(CustomerStateSchema)


class CustomerQuerySchema(PageQuery):
    """Filters for listing customers."""

    q = Text(100, metadata={"description": "case-insensitive text in id, names or email"})
    email = Text(254)
    created_from = Timestamp()
    created_to = Timestamp()
    consent = Code(metadata={"description": "only customers who consented to this channel"})


CustomerPageSchema = page_of(CustomerSchema, "CustomerPage")
