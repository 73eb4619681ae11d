"""Request and response schemas for touchpoints."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from decision_server.schemas import Code, Cursor, EventTime, ExternalId, JsonDocument, PageQuery, Timestamp, page_of
from decision_server.touchpoints import statistics

MAX_BATCH = 1000


class TouchpointInSchema(ma.Schema):
    """An interaction. Send `external_id` to make retries safe: the same id is stored once."""

    external_id = ExternalId(metadata={"description": "your id for this interaction (default: generated)"})
    customer_id = ExternalId(required=True, metadata={"example": "C-000123"})
    occurred_at = EventTime(required=True)
    channel = Code(required=True, metadata={"example": "app"})
    kind = Code(required=True, metadata={"example": "app_open"})
    payload = JsonDocument(load_default=dict, metadata={"example": {"screen": "offers"}})


class TouchpointBatchInSchema(ma.Schema):
    """Up to 1,000 interactions written all together or, if any is invalid, not at all."""

    items = fields.List(fields.Nested(TouchpointInSchema), required=True, validate=ma.validate.Length(1, MAX_BATCH))


class TouchpointSchema(ma.Schema):
    """A stored interaction."""

    id = fields.String(attribute="external_id")
    customer_id = fields.String(attribute="customer_external_id")
    occurred_at = fields.DateTime()
    channel = fields.String()
    kind = fields.String()
    payload = fields.Dict()
    ingested_at = fields.DateTime()
    status = fields.String(metadata={"description": "created, or existing for a repeated id"})


class TouchpointBatchResultSchema(ma.Schema):
    """What a batch did: counts and each stored interaction."""

    created = fields.Integer()
    existing = fields.Integer()
    items = fields.List(fields.Nested(TouchpointSchema))


class TouchpointQuerySchema(PageQuery):
    """Filters for a customer's interactions, newest first."""

    cursor = Cursor(timed=True, metadata={"description": "next_cursor of the previous page"})

    occurred_from = Timestamp()
    occurred_to = Timestamp()
    channel = Code()
    kind = Code()


TouchpointPageSchema = page_of(TouchpointSchema, "TouchpointPage")


class TouchpointStatisticsQuerySchema(ma.Schema):
    """The period and interval of touchpoint counts over time."""

    class Meta:
        unknown = ma.RAISE

    since = Timestamp(metadata={"description": "start of the period (default: 12 weeks, or 30 days, before until)"})
    until = Timestamp(metadata={"description": "end of the period, excluded (default: now); after since"})
    interval = fields.String(
        load_default="week",
        validate=ma.validate.OneOf(statistics.INTERVALS),
        metadata={"description": f"day or week (weeks start on Monday, UTC); at most {statistics.MAX_PERIODS} of them"},
    )


class ChannelSeriesSchema(ma.Schema):
    channel = fields.String()
    counts = fields.List(fields.Integer(), metadata={"description": "one count per period, in the order of periods"})
    total = fields.Integer()


class KindSeriesSchema(ChannelSeriesSchema):
    channel = fields.String(allow_none=True, metadata={"description": "null for the kinds summed as other"})
    kind = fields.String()


class TouchpointStatisticsSchema(ma.Schema):
    since = fields.DateTime()
    until = fields.DateTime()
    interval = fields.String()
    periods = fields.List(
        fields.DateTime(), metadata={"description": "the start of each period (the first may begin before since)"}
    )
    total = fields.Integer(metadata={"description": "touchpoints in [since, until)"})
    by_channel = fields.List(fields.Nested(ChannelSeriesSchema), metadata={"description": "per channel, largest first"})
    by_kind = fields.List(
        fields.Nested(KindSeriesSchema),
        metadata={"description": f"per channel and kind, the {statistics.TOP_KINDS} largest, then the rest as kind other"},
    )
