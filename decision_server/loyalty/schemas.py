"""Marshmallow schemas of the loyalty API: tiers, members, the ledger, rewards, redemptions."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from decision_server.db import MAX_ID
from decision_server.schemas import PageQuery, Pattern, Text, Timestamp, page_of

_NAME = Pattern(r"^[a-z][a-z0-9_]{0,31}$", error="lower-case letters, digits and _, starting with a letter; at most 32")
_CODE = Pattern(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", error="letters, digits, _ . -; at most 64, starting with a letter or digit")
_KEY = Pattern(
    r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$", error="letters, digits, _ . : -; at most 80, starting with a letter or digit"
)
MAX_POINTS = 10_000_000  # one movement; far above any real purchase, well inside every integer type


class _Strict(ma.Schema):
    class Meta:
        unknown = ma.RAISE


def _key():
    return fields.String(
        required=True,
        validate=_KEY,
        metadata={
            "description": "your id for this request: a retry with the same key does nothing twice (it returns the first result)",
            "example": "pos-4711-retry-safe",
        },
    )


# --- tiers -------------------------------------------------------------------------------------


class TierInSchema(_Strict):
    """A tier: who qualifies is rules/tiers.yaml; this is what the tier is worth."""

    name = fields.String(required=True, validate=_NAME, metadata={"example": "diamond"})
    rank = fields.Integer(
        required=True, strict=True, validate=ma.validate.Range(1, 1000), metadata={"description": "higher is better; unique"}
    )
    multiplier = fields.Float(
        required=True,
        allow_nan=False,
        validate=ma.validate.Range(0, 100, min_inclusive=False),
        metadata={"description": "points multiplier on purchases", "example": 2.5},
    )
    benefits = fields.List(Text(200), validate=ma.validate.Length(max=20), load_default=list)
    description = Text(2000, load_default="")


class TierPatchSchema(_Strict):
    """Fields to change; a field left out keeps its value (the name cannot change)."""

    name = fields.String(validate=_NAME)
    rank = fields.Integer(strict=True, validate=ma.validate.Range(1, 1000))
    multiplier = fields.Float(allow_nan=False, validate=ma.validate.Range(0, 100, min_inclusive=False))
    benefits = fields.List(Text(200), validate=ma.validate.Length(max=20))
    description = Text(2000)


class TierSchema(ma.Schema):
    id = fields.Integer()
    name = fields.String()
    rank = fields.Integer()
    multiplier = fields.Float()
    benefits = fields.List(fields.String())
    description = fields.String()
    members = fields.Integer(metadata={"description": "members holding the tier now"})
    in_rules = fields.Boolean(metadata={"description": "rules/tiers.yaml can give this tier"})
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class TierListSchema(ma.Schema):
    items = fields.List(fields.Nested(TierSchema))


# --- members and the ledger ----------------------------------------------------------------------


class EnrollInSchema(_Strict):
    """Enrol a customer (idempotent: enrolling a member again changes nothing)."""


class MemberPointsSchema(ma.Schema):
    balance = fields.Integer(metadata={"description": "the ledger's sum (pending points included)"})
    pending = fields.Integer(metadata={"description": "earned points not spendable yet (rules/loyalty_policy.yaml pending_days)"})
    available = fields.Integer(metadata={"description": "points the member can spend now"})
    expiring = fields.Integer(metadata={"description": "points that expire by expiring_by unless spent (oldest are spent first)"})
    expiring_by = fields.DateTime()
    earned_12m = fields.Integer(
        metadata={"description": "points earned by purchases in 365 days, net of refunds (what tiers count)"}
    )
    ledger_sum = fields.Integer(metadata={"description": "sum of every ledger entry; always equal to balance"})


class TierChangeSchema(ma.Schema):
    id = fields.Integer()
    customer_id = fields.String(attribute="external_id")
    from_tier = fields.String(allow_none=True)
    to_tier = fields.String()
    at = fields.DateTime()
    source = fields.String(metadata={"description": "enroll, event (a purchase qualified), review (bulk), manual"})
    rule_id = fields.String(allow_none=True)
    rule_revision = fields.String(allow_none=True)
    actor = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)


class LoyaltyMemberSchema(ma.Schema):
    customer_id = fields.String(attribute="external_id")
    tier = fields.String()
    tier_since = fields.DateTime()
    enrolled_at = fields.DateTime()
    enrolled_via = fields.String(metadata={"description": "api, first_purchase or import"})
    balance = fields.Integer()
    earned_total = fields.Integer(metadata={"description": "points ever earned by purchases, net of refunds"})
    below_since = fields.DateTime(
        allow_none=True, metadata={"description": "since when the member qualifies for a lower tier (grace policy)"}
    )


class LoyaltyMemberDetailSchema(LoyaltyMemberSchema):
    tier_definition = fields.Nested(TierSchema, allow_none=True)
    points = fields.Nested(MemberPointsSchema)
    tier_history = fields.List(fields.Nested(TierChangeSchema))


LoyaltyMemberPageSchema = page_of(LoyaltyMemberSchema, "LoyaltyMemberPage")


class LoyaltyMemberQuery(PageQuery):
    tier = fields.String(validate=_NAME)
    min_balance = fields.Integer(strict=False, validate=ma.validate.Range(0, MAX_ID))  # a BIGINT column


class LedgerEntrySchema(ma.Schema):
    id = fields.Integer()
    kind = fields.String(
        metadata={"description": "earn, redeem, expire, adjust, reverse (a refund), refund (a cancelled redemption)"}
    )
    points = fields.Integer(metadata={"description": "credits positive, debits negative"})
    balance_after = fields.Integer()
    idempotency_key = fields.String()
    transaction_id = fields.Integer(allow_none=True)
    redemption_id = fields.Integer(allow_none=True)
    occurred_at = fields.DateTime()
    available_at = fields.DateTime(allow_none=True)
    expires_at = fields.DateTime(allow_none=True)
    reason = fields.String(allow_none=True)
    actor = fields.String(allow_none=True)
    details = fields.Dict()
    created_at = fields.DateTime()


LedgerPageSchema = page_of(LedgerEntrySchema, "LedgerPage")


class LedgerQuery(PageQuery):
    kind = fields.String(validate=ma.validate.OneOf(("earn", "redeem", "expire", "adjust", "reverse", "refund")))
    since = Timestamp(metadata={"description": "entries written at or after this time"})
    until = Timestamp(metadata={"description": "entries written before this time"})


class SetTierInSchema(_Strict):
    """A tier given by hand, with the reason (audited with the key's name)."""

    tier = fields.String(required=True, validate=_NAME, metadata={"example": "gold"})
    reason = Text(
        500, required=True, validate=ma.validate.Length(min=1), metadata={"example": "status match from a partner airline"}
    )


class EarnInSchema(_Strict):
    """Points that do not come from a purchase (a partner, a survey); purchases earn on their own."""

    points = fields.Integer(required=True, strict=True, validate=ma.validate.Range(1, MAX_POINTS))
    reason = Text(500, required=True, validate=ma.validate.Length(min=1), metadata={"example": "partner: hotel stay"})
    idempotency_key = _key()


class AdjustInSchema(_Strict):
    """A correction by hand: positive credits, negative debits (never below a zero balance)."""

    points = fields.Integer(
        required=True,
        strict=True,
        validate=[ma.validate.Range(-MAX_POINTS, MAX_POINTS), ma.validate.NoneOf([0], error="must not be 0")],
    )
    reason = Text(500, required=True, validate=ma.validate.Length(min=1), metadata={"example": "goodwill after outage"})
    idempotency_key = _key()


class PointsResultSchema(ma.Schema):
    entry = fields.Nested(LedgerEntrySchema)
    status = fields.String(metadata={"description": "created, or existing for a repeated idempotency key"})


class TierChangeQuery(PageQuery):
    customer_id = fields.String(validate=ma.validate.Length(1, 64))
    source = fields.String(validate=ma.validate.OneOf(("enroll", "event", "review", "manual")))


TierChangePageSchema = page_of(TierChangeSchema, "TierChangePage")


# --- rewards and redemptions ---------------------------------------------------------------------

REWARD_STATUSES = ("active", "paused", "retired")


class _RewardCommon(_Strict):
    name = Text(200, validate=ma.validate.Length(min=1), metadata={"example": "Cinema ticket"})
    description = Text(2000)
    points_cost = fields.Integer(strict=True, validate=ma.validate.Range(1, MAX_POINTS), metadata={"example": 1500})
    stock = fields.Integer(
        strict=True,
        allow_none=True,
        validate=ma.validate.Range(0, 2**31 - 1),
        metadata={"description": "items left; null: unlimited"},
    )
    valid_from = Timestamp(allow_none=True)
    valid_to = Timestamp(allow_none=True)
    tiers = fields.List(
        fields.String(validate=_NAME),
        validate=ma.validate.Length(max=20),
        metadata={"description": "tiers that may redeem it; empty: every tier"},
    )
    status = fields.String(validate=ma.validate.OneOf(REWARD_STATUSES))

    @ma.validates_schema
    def _window(self, data, **kwargs):
        start, end = data.get("valid_from"), data.get("valid_to")
        if start is not None and end is not None and end <= start:
            raise ma.ValidationError("must be after valid_from", field_name="valid_to")


class RewardInSchema(_RewardCommon):
    code = fields.String(required=True, validate=_CODE, metadata={"example": "CINEMA_TICKET"})
    name = Text(200, required=True, validate=ma.validate.Length(min=1))
    points_cost = fields.Integer(required=True, strict=True, validate=ma.validate.Range(1, MAX_POINTS))


class RewardPatchSchema(_RewardCommon):
    code = fields.String(validate=_CODE)


class RewardSchema(ma.Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    description = fields.String()
    points_cost = fields.Integer()
    stock = fields.Integer(allow_none=True)
    valid_from = fields.DateTime(allow_none=True)
    valid_to = fields.DateTime(allow_none=True)
    tiers = fields.List(fields.String())
    status = fields.String()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


RewardPageSchema = page_of(RewardSchema, "RewardPage")


class RewardQuery(PageQuery):
    status = fields.String(validate=ma.validate.OneOf(REWARD_STATUSES))
    tier = fields.String(validate=_NAME, metadata={"description": "rewards this tier may redeem"})
    available = fields.Boolean(metadata={"description": "true: only rewards valid now and in stock"})
    max_points = fields.Integer(validate=ma.validate.Range(0, MAX_ID), metadata={"description": "costing at most this"})


class RedeemInSchema(_Strict):
    reward_id = fields.Integer(required=True, strict=True, validate=ma.validate.Range(1, 2**62))
    idempotency_key = _key()
    channel = fields.String(allow_none=True, load_default=None, validate=_NAME, metadata={"example": "app"})


class CancelInSchema(_Strict):
    reason = Text(500, required=True, validate=ma.validate.Length(min=1), metadata={"example": "customer changed their mind"})


class RedemptionSchema(ma.Schema):
    id = fields.Integer()
    customer_id = fields.String(attribute="external_id")
    reward_id = fields.Integer()
    reward_code = fields.String()
    points = fields.Integer()
    status = fields.String(metadata={"description": "completed or cancelled"})
    idempotency_key = fields.String()
    channel = fields.String(allow_none=True)
    actor = fields.String(allow_none=True)
    created_at = fields.DateTime()
    cancelled_at = fields.DateTime(allow_none=True)
    cancel_reason = fields.String(allow_none=True)
    cancelled_by = fields.String(allow_none=True)


RedemptionPageSchema = page_of(RedemptionSchema, "RedemptionPage")


class RedemptionQuery(PageQuery):
    customer_id = fields.String(validate=ma.validate.Length(1, 64))
    reward_id = fields.Integer(validate=ma.validate.Range(1, 2**62))
    status = fields.String(validate=ma.validate.OneOf(("completed", "cancelled")))


class LoyaltyStatisticsSchema(ma.Schema):
    members = fields.Integer()
    by_tier = fields.List(fields.Dict(), metadata={"description": "tier, rank, members, points balance"})
    points = fields.Dict(metadata={"description": "outstanding balance and the totals by entry kind"})
    redemptions = fields.Dict(metadata={"description": "completed, cancelled, points spent; top rewards"})
    tier_changes = fields.List(fields.Dict(), metadata={"description": "changes by from → to and source in the period"})
    since = fields.DateTime()
    until = fields.DateTime(allow_none=True)


class LoyaltyStatisticsQuery(_Strict):
    since = Timestamp(metadata={"description": "tier changes and movements since (default: 30 days ago)"})
    until = Timestamp(metadata={"description": "… and before (default: no end)"})


class PointsOverTimeQuery(_Strict):
    since = Timestamp(metadata={"description": "start of the period (default: 30 days before until)"})
    until = Timestamp(metadata={"description": "end of the period, excluded (default: tomorrow 00:00 UTC, so today is in)"})
    interval = fields.String(load_default="day", validate=ma.validate.OneOf(("day", "week")))


class PointsOverTimeSchema(ma.Schema):
    since = fields.DateTime()
    until = fields.DateTime()
    interval = fields.String()
    periods = fields.List(fields.String(), metadata={"description": "first day (UTC) of each day or week (Monday)"})
    earned = fields.List(fields.Integer(), metadata={"description": "points credited by purchases, by their purchase time"})
    redeemed = fields.List(fields.Integer(), metadata={"description": "points spent on rewards"})
    expired = fields.List(fields.Integer(), metadata={"description": "points that expired"})
    totals = fields.Dict(keys=fields.String(), values=fields.Integer())
