"""HTTP routes for a customer's value (CLV, RFM) and the 360 view, and the CLV of the whole base."""

from __future__ import annotations

import datetime as dt

import marshmallow as ma
import sqlalchemy as sa
from flask import current_app
from flask.views import MethodView
from marshmallow import fields

from decision_server.analytics import lifecycle
from decision_server.analytics.routes import (
    TransitionSchema,
    _customer_id,
    _models,
    _revision,
    _transition_rows,
    per_customer,
)
from decision_server.auth.roles import Permission, requires
from decision_server.clv import schemas as clv_schemas
from decision_server.clv import service as clv
from decision_server.customers.service import customer_id as customer_id_of
from decision_server.customers.service import get_customer
from decision_server.db import utcnow
from decision_server.features import online
from decision_server.features.definition import as_dict
from decision_server.rfm import schemas as rfm_schemas
from decision_server.rfm import service as rfm
from decision_server.schemas import (
    JsonDocument,
)
from decision_server.touchpoints.records import TouchpointRecord
from decision_server.web import transaction

_tp = TouchpointRecord.__table__


@per_customer.route("/<string:customer_id>/clv")
class CustomerClv(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @per_customer.arguments(clv_schemas.ClvQuerySchema, location="query")
    @per_customer.response(200, clv_schemas.ClvSchema)
    def get(self, query, customer_id):
        """A customer's lifetime value: historical (revenue, cost, profit, orders, AOV, tenure) and predicted (LTV model)."""
        with transaction() as session:
            return clv.customer_clv(
                session,
                customer_id=customer_id_of(session, external_id=customer_id),
                external_id=customer_id,
                as_of=query.get("as_of") or utcnow(),
                now=utcnow(),
                margin=current_app.extensions["config"].default_margin,
                models=_models(),
            )


# --- the 360 view ------------------------------------------------------------------------------


class ProfileSchema(ma.Schema):
    """Everything we know and decide about one customer, consistent as of one moment."""

    customer = fields.Nested("CustomerSchema")
    as_of = fields.DateTime()
    stage = fields.String(allow_none=True)
    stage_since = fields.DateTime(allow_none=True)
    journey_stage = fields.String(allow_none=True)
    recommended_actions = fields.List(fields.String(), metadata={"description": "for the stage, from rules/stage_actions.yaml"})
    value = JsonDocument(metadata={"description": "{score, segment}"})
    rfm = JsonDocument(allow_none=True, metadata={"description": "{r, f, m, segment}; null when never bought"})
    tier = fields.String(allow_none=True, metadata={"description": "loyalty tier (null: not a member)"})
    loyalty = JsonDocument(
        allow_none=True,
        metadata={
            "description": "tier, tier_since, points {balance, pending, available, expiring, expiring_by, earned_12m}, "
            "recent ledger entries and redemptions; null: not a member"
        },
    )
    scores = JsonDocument(metadata={"description": "every model's score now"})
    models = JsonDocument(metadata={"description": "model name → {version, fallback, reason}"})
    segments = fields.List(JsonDocument(), metadata={"description": "[{segment, rule}] from rules/segments.yaml, now"})
    clv = JsonDocument(metadata={"description": "historical CLV now, and predicted (ltv_12m)"})
    recent_transactions = fields.List(fields.Nested("TransactionSchema"))
    recent_touchpoints = fields.List(fields.Nested("TouchpointSchema"))
    transitions = fields.List(fields.Nested(TransitionSchema))
    recent_decisions = fields.List(
        JsonDocument(),
        metadata={"description": "the latest decisions: id, time, channel, actions (GET /decisions/{id} explains each)"},
    )
    value_offers = fields.List(
        JsonDocument(),
        metadata={"description": "active offers whose target value segments include the customer's (CVM value-based offers)"},
    )
    rule_revision = fields.String()


class ProfileQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    recent = fields.Integer(
        load_default=10, validate=ma.validate.Range(1, 100), metadata={"description": "items per recent list"}
    )


@per_customer.route("/<string:customer_id>/profile")
class CustomerProfile(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @per_customer.arguments(ProfileQuerySchema, location="query")
    @per_customer.response(200, ProfileSchema)
    def get(self, query, customer_id):
        """The 360 view: state, stage, value, RFM, scores with model versions, segments, CLV, recent events and transitions."""
        from decision_server.decisions import log as decision_log
        from decision_server.offers.catalog import value_offers
        from decision_server.touchpoints.service import list_touchpoints
        from decision_server.transactions.service import list_transactions

        now = utcnow()
        revision = _revision()
        limit = query["recent"]
        with transaction() as session:
            customer = get_customer(session, external_id=customer_id)
            cid = _customer_id(session, customer_id)
            conn = session.connection()
            features = online.read(conn, customer_id=cid, as_of=now)
            history = clv.historical(conn, as_of=now, margin=current_app.extensions["config"].default_margin, customer_ids=[cid])
            touches_30d = conn.execute(
                sa.select(sa.func.count()).where(_tp.c.customer_id == cid, _tp.c.occurred_at > now - dt.timedelta(days=30))
            ).scalar()
            transactions = list_transactions(session, customer_external_id=customer_id, limit=limit)[:limit]
            touchpoints = list_touchpoints(session, customer_external_id=customer_id, limit=limit)[:limit]
            transitions = _transition_rows(session, {"limit": limit}, cid)["items"]
            decisions = decision_log.listing(conn, limit=limit, customer_id=customer_id)[:limit]
            loyalty = _loyalty(conn, cid, now, limit)
        state = customer["state"]
        scored = _models().score(features.values)
        named = as_dict(features.values[0])
        facts = {
            "tier": loyalty["tier"] if loyalty else None,
            "value_segment": state["value_segment"],
            "churn_risk": scored.values["churn_risk"],
            "first_purchase_at": state["first_purchase_at"],
            "last_purchase_at": state["last_purchase_at"],
            "touchpoints_30d": touches_30d,
            "spend_12m": named["spend_12m"],
        }
        segments = revision.evaluate("segments", facts, now=now.timestamp())
        rfm_part = (
            None
            if state["rfm_r"] is None
            else {"r": state["rfm_r"], "f": state["rfm_f"], "m": state["rfm_m"], "segment": state["rfm_segment"]}
        )
        return {
            "customer": customer,
            "as_of": now,
            "stage": state["stage"],
            "stage_since": state["stage_since"],
            "journey_stage": state["journey_stage"],
            "recommended_actions": lifecycle.actions(revision, state["stage"]),
            "value": {"score": state["value_score"], "segment": state["value_segment"]},
            "rfm": rfm_part,
            "tier": loyalty["tier"] if loyalty else None,
            "loyalty": loyalty,
            "scores": scored.values,
            "models": scored.models,
            "segments": [
                {"segment": o["segment"], "rule": rule} for o, rule in zip(segments.outcome, segments.fired_ids, strict=True)
            ],
            "clv": {
                "historical": clv.money(history[0].__dict__) if history else None,
                "predicted": clv.predicted(scored),
            },
            "recent_transactions": transactions,
            "recent_touchpoints": touchpoints,
            "transitions": transitions,
            "recent_decisions": decisions,
            "rule_revision": revision.id,
            "value_offers": value_offers(current_app.extensions["catalog"].offers, state["value_segment"]),
        }


def _loyalty(conn, customer_id: int, now: dt.datetime, limit: int) -> dict | None:
    """The loyalty part of the 360 view (None: not a member)."""
    from decision_server.loyalty import ledger, rewards
    from decision_server.loyalty.service import member_summary

    member = member_summary(conn, customer_id)
    if member is None:
        return None
    points = ledger.figures(conn, customer_id, member["balance"], now=now)
    entries = [
        {k: e[k] for k in ("id", "kind", "points", "balance_after", "occurred_at", "expires_at", "reason")}
        for e in ledger.entries(conn, customer_id, limit=limit)[:limit]
    ]
    redeemed = [
        {k: r[k] for k in ("id", "reward_code", "points", "status", "created_at")}
        for r in rewards.redemptions(conn, limit=limit, customer_id=customer_id)[:limit]
    ]
    iso = lambda row: {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in row.items()}
    return {
        "tier": member["tier"],
        "tier_since": member["tier_since"].isoformat(),
        "points": iso(points),
        "recent_ledger": [iso(e) for e in entries],
        "recent_redemptions": [iso(r) for r in redeemed],
    }


# --- RFM of one customer, CLV of everyone -----------------------------------------------------


@per_customer.route("/<string:customer_id>/rfm")
class CustomerRfm(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @per_customer.response(200, rfm_schemas.CustomerRfmSchema)
    def get(self, customer_id):
        """A customer's RFM values now and their scores against the newest run's cut points."""
        with transaction() as session:
            return rfm.customer_rfm(session, external_id=customer_id, revision=_revision(), now=utcnow())
