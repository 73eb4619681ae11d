"""Request and response schemas for transactions."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from decision_server.schemas import Code, Cursor, EventTime, ExternalId, Money, PageQuery, Text, Timestamp, page_of

MAX_BATCH = 1000


class TransactionInSchema(ma.Schema):
    """A purchase. Send `external_id` to make retries safe: the same id is stored once."""

    external_id = ExternalId(metadata={"description": "your id for this purchase (default: generated)"})
    customer_id = ExternalId(required=True, metadata={"example": "C-000123"})
    occurred_at = EventTime(required=True)
    amount = Money(
        required=True,
        data_key="amount",
        attribute="amount_cents",
        allow_negative=True,
        metadata={"description": "negative for a refund: it lowers spend, not the purchase count"},
    )
    cost = Money(allow_none=True, load_default=None, attribute="cost_cents", allow_negative=True)
    product = Text(100, allow_none=True, load_default=None, metadata={"example": "Data 10GB"})
    category = Code(allow_none=True, load_default=None, metadata={"example": "data_bundle"})
    channel = Code(allow_none=True, load_default=None, metadata={"example": "app"})
    refund_of = ExternalId(
        allow_none=True,
        load_default=None,
        metadata={
            "description": "for a refund: the id of the purchase it refunds (its loyalty points are taken back in proportion)"
        },
    )


class TransactionBatchInSchema(ma.Schema):
    """Up to 1,000 purchases written all together or, if any is invalid, not at all."""

    items = fields.List(fields.Nested(TransactionInSchema), required=True, validate=ma.validate.Length(1, MAX_BATCH))


class TransactionSchema(ma.Schema):
    """A stored purchase."""

    id = fields.String(attribute="external_id")
    customer_id = fields.String(attribute="customer_external_id")
    occurred_at = fields.DateTime()
    amount = Money(attribute="amount_cents", dump_only=True)
    cost = Money(attribute="cost_cents", allow_none=True, dump_only=True)
    product = fields.String(allow_none=True)
    category = fields.String(allow_none=True)
    channel = fields.String(allow_none=True)
    refund_of = fields.String(allow_none=True)
    ingested_at = fields.DateTime()
    status = fields.String(metadata={"description": "created, or existing for a repeated id"})


class TransactionBatchResultSchema(ma.Schema):
    """What a batch did: counts and each stored purchase."""

    created = fields.Integer()
    existing = fields.Integer()
    items = fields.List(fields.Nested(TransactionSchema))


class TransactionQuerySchema(PageQuery):
    """Filters for a customer's purchases, newest first."""

    cursor = Cursor(timed=True, metadata={"description": "next_cursor of the previous page"})

    occurred_from = Timestamp()
    occurred_to = Timestamp()
    category = Code()
    channel = Code()


TransactionPageSchema = page_of(TransactionSchema, "TransactionPage")
