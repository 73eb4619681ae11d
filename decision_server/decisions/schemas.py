"""Marshmallow schemas of the decision API: the request, the answer, responses, the log."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from decision_server.decisions.log import RESPONSES
from decision_server.decisions.service import MAX_ACTIONS
from decision_server.decisions.statistics import MAX_REMOVAL_SAMPLE, REMOVAL_SAMPLE
from decision_server.schemas import (
    Code,
    EventTime,
    ExternalId,
    JsonDocument,
    PageQuery,
    Pattern,
    Text,
    Timestamp,
)


class _Strict(ma.Schema):
    class Meta:
        unknown = ma.RAISE


class Scalars(JsonDocument):
    """Free context attributes: names to text, numbers or booleans (rules read them as `context.<name>`)."""

    def _deserialize(self, value, attr, data, **kwargs):
        document = super()._deserialize(value, attr, data, **kwargs)
        for key, item in document.items():
            if not isinstance(key, str) or not key.isidentifier() or len(key) > 64:
                raise ma.ValidationError(f"{key!r}: names are letters, digits and _, at most 64")
            if not isinstance(item, (str, int, float, bool)) or (isinstance(item, str) and len(item) > 200):
                raise ma.ValidationError(f"{key}: a text of at most 200 characters, a number or a boolean")
        return document


class ContextSchema(_Strict):
    intent = Code(
        metadata={"description": "why the customer is here: browse, cancel, complaint, upgrade, billing, …", "example": "browse"}
    )
    page = Text(200, metadata={"example": "plans"})
    agent_id = Text(100, metadata={"description": "the call-centre agent handling the customer"})
    attributes = Scalars(metadata={"description": "free attributes; rules read them as context.<name>"})


class DecisionRequestSchema(_Strict):
    customer_id = ExternalId(required=True, metadata={"example": "C000001"})
    channel = Code(
        required=True, metadata={"description": "app, call_centre, sms (DECISION_CHANNELS adds more)", "example": "app"}
    )
    context = fields.Nested(ContextSchema, load_default=dict)
    actions = fields.Integer(
        load_default=1,
        strict=True,
        validate=ma.validate.Range(1, MAX_ACTIONS),
        metadata={"description": f"how many ranked actions to return (1–{MAX_ACTIONS})"},
    )


class ActionSchema(ma.Schema):
    rank = fields.Integer()
    offer = fields.Dict(metadata={"description": "id, code, name, category, product_category, business_value, points_cost"})
    treatment = fields.Dict(metadata={"description": "the channel's treatment rendered for this customer (kind + fields)"})
    priority = fields.Float(metadata={"description": "propensity × context weight × business value × levers"})
    factors = fields.Dict(
        metadata={
            "description": "each factor of the priority, the arbitration rules that set the weights, and the learning state"
        }
    )


class CandidateSchema(ma.Schema):
    offer_id = fields.Integer()
    code = fields.String()
    eligible = fields.Boolean()
    removed_by = fields.List(
        fields.Dict(), metadata={"description": "each rule or policy that removed the offer: ruleset, rule, check/policy, reason"}
    )
    priority = fields.Float(allow_none=True, metadata={"description": "null for an offer that was removed (it is not ranked)"})
    factors = fields.Dict(metadata={"description": "as an action's; only model_propensity for a removed offer"})


class DecisionSchema(ma.Schema):
    decision_id = fields.String(allow_none=True, metadata={"description": "null for a preview (not logged)"})
    preview = fields.Boolean(metadata={"description": "present and true on POST /decisions/preview: not logged"})
    decided_at = fields.DateTime()
    customer_id = fields.String()
    prospect = fields.Boolean(metadata={"description": "true when the customer id is unknown: decided as for a new prospect"})
    channel = fields.String()
    actions = fields.List(fields.Nested(ActionSchema))
    customer = fields.Dict(metadata={"description": "stage, value segment, tier, RFM segment and journey stage as used"})
    scores = fields.Dict()
    revision = fields.String(metadata={"description": "the rule revision that decided"})
    models = fields.Dict(metadata={"description": "per model: version, fallback, reason"})
    explanation = fields.List(
        fields.Nested(CandidateSchema), metadata={"description": "every active offer: eligible or what removed it"}
    )
    latency_us = fields.Integer(metadata={"description": "server time to decide, before the log write"})


class ResponseInSchema(_Strict):
    response = fields.String(required=True, validate=ma.validate.OneOf(RESPONSES))
    offer_id = fields.Integer(strict=True, metadata={"description": "which action (needed when the decision made several)"})
    occurred_at = EventTime(metadata={"description": "when the customer responded (default: now); late responses are welcome"})
    attributes = JsonDocument(load_default=dict)


class ResponseSchema(ma.Schema):
    decision_id = fields.String()
    rank = fields.Integer()
    offer_id = fields.Integer()
    response = fields.String()
    responded_at = fields.DateTime()
    recorded_at = fields.DateTime()
    attributes = fields.Dict()


class DecisionSummarySchema(ma.Schema):
    decision_id = fields.String()
    customer_id = fields.String()
    prospect = fields.Boolean()
    channel = fields.String()
    decided_at = fields.DateTime()
    customer = fields.Dict()
    revision = fields.String()
    latency_us = fields.Integer()
    actions = fields.List(fields.Dict())


class DecisionDetailSchema(DecisionSummarySchema):
    context = fields.Dict()
    models = fields.Dict()
    candidates = fields.List(fields.Dict())
    responses = fields.List(fields.Nested(ResponseSchema))


class DecisionPageSchema(ma.Schema):
    items = fields.List(fields.Nested(DecisionSummarySchema))
    next_cursor = fields.String(allow_none=True)


class DecisionQuery(_Strict):
    limit = PageQuery._declared_fields["limit"]
    cursor = fields.String(
        validate=Pattern(r"^[0-9a-f]{32}$", error="not a cursor returned by this API"),
        metadata={"description": "next_cursor of the previous page"},
    )
    customer_id = ExternalId()
    channel = Code()
    since = Timestamp()
    until = Timestamp()


class OfferStatisticsQuery(_Strict):
    since = Timestamp()


class OfferStatisticsSchema(ma.Schema):
    items = fields.List(
        fields.Dict(), metadata={"description": "per offer: actions, accepted, declined, ignored, clicked, acceptance_rate"}
    )


class ChannelStatisticsQuery(_Strict):
    since = Timestamp(metadata={"description": "start of the period (default: today 00:00 UTC)"})
    until = Timestamp(metadata={"description": "end of the period, excluded (default: now)"})

    @ma.validates_schema
    def _ordered(self, data, **kwargs):
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            raise ma.ValidationError("must be after since", field_name="until")


class ChannelRowSchema(ma.Schema):
    channel = fields.String()
    decisions = fields.Integer()
    with_action = fields.Integer(metadata={"description": "decisions that made at least one offer"})
    actions = fields.Integer()
    responses = fields.Dict(keys=fields.String(), values=fields.Integer())
    acceptance_rate = fields.Float(allow_none=True, metadata={"description": "accepted / actions"})
    latency_buckets = fields.List(fields.Integer(), metadata={"description": "decisions per latency bucket (edges below)"})
    latency_p50_us = fields.Integer(
        allow_none=True, metadata={"description": "upper edge of the median's bucket; -1: past the last"}
    )
    latency_p95_us = fields.Integer(allow_none=True)


class ChannelStatisticsSchema(ma.Schema):
    since = fields.DateTime()
    until = fields.DateTime()
    decisions = fields.Integer()
    actions = fields.Integer()
    accepted = fields.Integer()
    acceptance_rate = fields.Float(allow_none=True)
    latency_edges_us = fields.List(fields.Integer())
    channels = fields.List(fields.Nested(ChannelRowSchema))


class PeriodQuery(_Strict):
    since = Timestamp(metadata={"description": "start of the period (default: 14 days before until)"})
    until = Timestamp(metadata={"description": "end of the period, excluded (default: tomorrow 00:00 UTC, so today is in)"})


class RemovalQuery(PeriodQuery):
    sample = fields.Integer(
        load_default=REMOVAL_SAMPLE,
        strict=False,
        validate=ma.validate.Range(1, MAX_REMOVAL_SAMPLE),
        metadata={"description": f"how many of the period's newest decisions to read (1–{MAX_REMOVAL_SAMPLE})"},
    )


class OfferRowSchema(ma.Schema):
    offer_id = fields.Integer()
    code = fields.String(allow_none=True)
    name = fields.String(allow_none=True)
    category = fields.String(allow_none=True)
    status = fields.String(allow_none=True)
    actions = fields.Integer(metadata={"description": "how often the offer was made (decisions that chose it)"})
    accepted = fields.Integer()
    declined = fields.Integer()
    ignored = fields.Integer()
    clicked = fields.Integer()
    acceptance_rate = fields.Float(allow_none=True, metadata={"description": "accepted / actions"})


class OfferTableSchema(ma.Schema):
    since = fields.DateTime()
    until = fields.DateTime()
    items = fields.List(fields.Nested(OfferRowSchema), metadata={"description": "most made first"})


class DailyChannelSchema(ma.Schema):
    channel = fields.String()
    decisions = fields.List(fields.Integer())
    actions = fields.List(fields.Integer())
    accepted = fields.List(fields.Integer(), metadata={"description": "acceptances of the actions decided that day"})
    acceptance_rate = fields.List(fields.Float(allow_none=True), metadata={"description": "null on a day without actions"})


class DailyStatisticsSchema(ma.Schema):
    since = fields.DateTime()
    until = fields.DateTime()
    days = fields.List(fields.String(), metadata={"description": "each UTC day of the period"})
    decisions = fields.List(fields.Integer())
    latency_p50_us = fields.List(
        fields.Integer(allow_none=True), metadata={"description": "upper bucket edge; -1: past the last"}
    )
    latency_p95_us = fields.List(fields.Integer(allow_none=True))
    channels = fields.List(fields.Nested(DailyChannelSchema))


class RemovalRuleSchema(ma.Schema):
    ruleset = fields.String(metadata={"description": "offers, contact_policy or catalog"})
    rule = fields.String()
    reason = fields.String(allow_none=True, metadata={"description": "the reason the rule gave (the first one seen)"})
    removals = fields.Integer(metadata={"description": "offers it removed, summed over the sampled decisions"})
    decisions = fields.Integer(metadata={"description": "sampled decisions in which it removed at least one offer"})
    share = fields.Float(allow_none=True, metadata={"description": "removals / candidates considered"})
    offers = fields.List(fields.Dict(), metadata={"description": "the offers it removed most (code, removals), at most five"})


class RemovalStatisticsSchema(ma.Schema):
    since = fields.DateTime()
    until = fields.DateTime()
    sample_limit = fields.Integer(metadata={"description": "at most this many of the period's newest decisions were read"})
    decisions = fields.Integer(metadata={"description": "decisions read (fewer than sample_limit: the whole period)"})
    candidates = fields.Integer(metadata={"description": "offers considered in them"})
    removed = fields.Integer(metadata={"description": "candidates removed by at least one rule"})
    rules = fields.List(fields.Nested(RemovalRuleSchema), metadata={"description": "most removals first"})
