"""HTTP routes for analytics: stage transitions and manual stages, lifecycle, RFM runs, value statistics.

A customer's CLV, RFM and 360 view are in customer_routes.py.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import marshmallow as ma
import sqlalchemy as sa
from flask import current_app, g
from flask.views import MethodView
from marshmallow import fields

from decision_server.analytics import lifecycle
from decision_server.analytics.records import StageTransitionRecord
from decision_server.auth.roles import Permission, requires
from decision_server.customers.records import CustomerRecord, CustomerStateRecord
from decision_server.customers.service import get_customer
from decision_server.db import utcnow
from decision_server.jobs import passes
from decision_server.schemas import (
    JsonDocument,
    PageQuery,
    Text,
    Timestamp,
    page_of,
    page_response,
)
from decision_server.throttle import expensive
from decision_server.web import Blueprint, transaction

per_customer = Blueprint(
    "customer-analytics",
    __name__,
    url_prefix="/customers",
    description="A customer's lifecycle transitions, stage changes and CLV",
)
lifecycle_blp = Blueprint(
    "lifecycle", __name__, url_prefix="/lifecycle", description="Lifecycle stages (CLM): statistics, transitions, bulk evaluation"
)

_tr = StageTransitionRecord.__table__
_st = CustomerStateRecord.__table__
_c = CustomerRecord.__table__


def _revision():
    return current_app.extensions["rulebook"].current


def _models():
    return current_app.extensions["models"].current


# --- schemas -----------------------------------------------------------------------------------


class TransitionSchema(ma.Schema):
    id = fields.Integer()
    customer_id = fields.String()
    from_stage = fields.String(allow_none=True)
    to_stage = fields.String()
    at = fields.DateTime()
    rule_id = fields.String(allow_none=True, metadata={"description": "The lifecycle rule that decided it (null: manual)"})
    rule_revision = fields.String(allow_none=True)
    source = fields.String(metadata={"description": "event, bulk or manual"})
    actor = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)


TransitionPageSchema = page_of(TransitionSchema, "TransitionPage")


class TransitionQuerySchema(PageQuery):
    from_stage = fields.String(validate=ma.validate.Length(max=32))
    to_stage = fields.String(validate=ma.validate.Length(max=32))
    source = fields.String(validate=ma.validate.OneOf(lifecycle.SOURCES))
    since = Timestamp(metadata={"description": "transitions at or after this time"})
    until = Timestamp(metadata={"description": "transitions before this time"})


class SetStageSchema(ma.Schema):
    stage = fields.String(required=True, validate=ma.validate.Length(min=1, max=32))
    reason = Text(
        500, required=True, validate=ma.validate.Length(min=3), metadata={"example": "moved by account manager after call"}
    )


class SetStageResultSchema(ma.Schema):
    changed = fields.Boolean()
    transition = fields.Nested(TransitionSchema, allow_none=True)


class PeriodQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    since = Timestamp(metadata={"description": "start of the period for the transition matrix (default: 30 days ago)"})
    until = Timestamp(metadata={"description": "end of the period (default: now)"})


class LifecycleStatisticsSchema(ma.Schema):
    stages = fields.List(
        JsonDocument(),
        metadata={"description": "[{stage, customers, actions}] in the rule set's order; actions from rules/stage_actions.yaml"},
    )
    not_evaluated = fields.Integer(metadata={"description": "customers with no stage yet"})
    since = fields.DateTime()
    until = fields.DateTime()
    matrix = fields.List(JsonDocument(), metadata={"description": "[{from, to, count}] of transitions in the period"})


class EvaluateResultSchema(ma.Schema):
    customers = fields.Integer()
    changed = fields.Integer(metadata={"description": "customers whose stage changed"})
    revalued = fields.Integer(metadata={"description": "customers whose value score or segment changed"})
    transitions = fields.List(JsonDocument())
    seconds = fields.Float()


# --- per customer ------------------------------------------------------------------------------


def _customer_id(session, external_id: str) -> int:
    found = session.execute(sa.select(_c.c.id).where(_c.c.external_id == external_id)).scalar()
    if found is None:
        get_customer(session, external_id=external_id)  # raises customer_not_found
    return found


def _transition_rows(session, query: dict[str, Any], customer_id: int | None = None) -> dict[str, Any]:
    select = sa.select(*_tr.c, _c.c.external_id).join(_c, _c.c.id == _tr.c.customer_id)
    if customer_id is not None:
        select = select.where(_tr.c.customer_id == customer_id)
    for name, column in (("from_stage", _tr.c.from_stage), ("to_stage", _tr.c.to_stage), ("source", _tr.c.source)):
        if query.get(name):
            select = select.where(column == query[name])
    if query.get("since"):
        select = select.where(_tr.c.at >= query["since"])
    if query.get("until"):
        select = select.where(_tr.c.at < query["until"])
    if query.get("cursor"):
        select = select.where(_tr.c.id < query["cursor"][0])
    rows = session.execute(select.order_by(_tr.c.id.desc()).limit(query["limit"] + 1)).all()
    items = [{**dict(r._mapping), "customer_id": r.external_id} for r in rows]
    return page_response(items, query["limit"])


@per_customer.route("/<string:customer_id>/transitions")
class CustomerTransitions(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @per_customer.arguments(TransitionQuerySchema, location="query")
    @per_customer.response(200, TransitionPageSchema)
    def get(self, query, customer_id):
        """List a customer's stage transitions, newest first: from, to, when, which rule, source."""
        with transaction() as session:
            return _transition_rows(session, query, _customer_id(session, customer_id))


@per_customer.route("/<string:customer_id>/stage")
class CustomerStage(MethodView):
    @requires(Permission.ANALYTICS_WRITE)
    @per_customer.arguments(SetStageSchema)
    @per_customer.response(200, SetStageResultSchema)
    def post(self, body, customer_id):
        """Set a customer's stage by hand, with a reason; recorded as a manual transition with your key's name."""
        with transaction(write=True) as session:
            cid = _customer_id(session, customer_id)
            change = lifecycle.set_stage(
                session.connection(),
                cid,
                body["stage"],
                revision=_revision(),
                actor=f"key:{g.principal.name}",
                reason=body["reason"],
            )
            if change is None:
                return {"changed": False, "transition": None}
            page = _transition_rows(session, {"limit": 1}, cid)
        return {"changed": True, "transition": page["items"][0]}


# --- lifecycle ---------------------------------------------------------------------------------


@lifecycle_blp.route("/statistics")
class LifecycleStatistics(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @lifecycle_blp.arguments(PeriodQuerySchema, location="query")
    @lifecycle_blp.response(200, LifecycleStatisticsSchema)
    def get(self, query):
        """Customers per stage now, and the transition matrix (from → to counts) over a period."""
        until = query.get("until") or utcnow()
        since = query.get("since") or until - dt.timedelta(days=30)
        with transaction() as session:
            counts = dict(session.execute(sa.select(_st.c.stage, sa.func.count()).group_by(_st.c.stage)).all())
            matrix = session.execute(
                sa.select(_tr.c.from_stage, _tr.c.to_stage, sa.func.count())
                .where(_tr.c.at >= since, _tr.c.at < until)
                .group_by(_tr.c.from_stage, _tr.c.to_stage)
            ).all()
        revision = _revision()
        order = lifecycle.stages(revision)
        return {
            "stages": [{"stage": s, "customers": counts.get(s, 0), "actions": lifecycle.actions(revision, s)} for s in order],
            "not_evaluated": counts.get(None, 0),
            "since": since,
            "until": until,
            "matrix": [{"from": a, "to": b, "count": n} for a, b, n in sorted(matrix, key=lambda r: -r[2])],
        }


@lifecycle_blp.route("/transitions")
class Transitions(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @lifecycle_blp.arguments(TransitionQuerySchema, location="query")
    @lifecycle_blp.response(200, TransitionPageSchema)
    def get(self, query):
        """List stage transitions of every customer, newest first, filtered by stages, source and period."""
        with transaction() as session:
            return _transition_rows(session, query)


@lifecycle_blp.route("/evaluate")
class Evaluate(MethodView):
    @requires(Permission.ANALYTICS_WRITE)
    @expensive
    @lifecycle_blp.response(200, EvaluateResultSchema)
    def post(self):
        """Re-evaluate every customer's stage and value now (what the nightly run does); returns the changes by from → to."""
        started = time.perf_counter()
        result = passes.evaluate_stages(current_app.extensions["database"], _revision(), _models())
        return {**result, "seconds": time.perf_counter() - started}
