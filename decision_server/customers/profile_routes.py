"""HTTP routes of one customer's analytics under /api/v1/customers/{id}: the 360 view, stage
transitions and a manual stage, CLV and RFM. Each view calls one service function."""

from __future__ import annotations

from flask import current_app, g
from flask.views import MethodView

from decision_server.auth.roles import Permission, requires
from decision_server.clv import schemas as clv_schemas
from decision_server.clv import service as clv
from decision_server.customers import profile
from decision_server.customers import profile_schemas as schemas
from decision_server.customers.service import customer_id as customer_id_of
from decision_server.db import utcnow
from decision_server.lifecycle import schemas as lifecycle_schemas
from decision_server.lifecycle import service as lifecycle
from decision_server.lifecycle.routes import transition_filters
from decision_server.rfm import schemas as rfm_schemas
from decision_server.rfm import service as rfm
from decision_server.schemas import page_response
from decision_server.web import Blueprint, transaction

per_customer = Blueprint(
    "customer-analytics",
    __name__,
    url_prefix="/customers",
    description="A customer's lifecycle transitions, stage changes and CLV",
)


def _revision():
    return current_app.extensions["rulebook"].current


def _models():
    return current_app.extensions["models"].current


@per_customer.route("/<string:customer_id>/transitions")
class CustomerTransitions(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @per_customer.arguments(lifecycle_schemas.TransitionQuerySchema, location="query")
    @per_customer.response(200, lifecycle_schemas.TransitionPageSchema)
    def get(self, query, customer_id):
        """List a customer's stage transitions, newest first: from, to, when, which rule, source."""
        with transaction() as session:
            cid = customer_id_of(session, external_id=customer_id)
            return page_response(
                lifecycle.list_transitions(session, customer_id=cid, **transition_filters(query)), query["limit"]
            )


@per_customer.route("/<string:customer_id>/stage")
class CustomerStage(MethodView):
    @requires(Permission.ANALYTICS_WRITE)
    @per_customer.arguments(lifecycle_schemas.SetStageSchema)
    @per_customer.response(200, lifecycle_schemas.SetStageResultSchema)
    def post(self, body, customer_id):
        """Set a customer's stage by hand, with a reason; recorded as a manual transition with your key's name."""
        with transaction(write=True) as session:
            return lifecycle.change_stage(
                session,
                customer_id=customer_id_of(session, external_id=customer_id),
                stage=body["stage"],
                revision=_revision(),
                actor=f"key:{g.principal.name}",
                reason=body["reason"],
            )


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


@per_customer.route("/<string:customer_id>/profile")
class CustomerProfile(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @per_customer.arguments(schemas.ProfileQuerySchema, location="query")
    @per_customer.response(200, schemas.ProfileSchema)
    def get(self, query, customer_id):
        """The 360 view: state, stage, value, RFM, scores with model versions, segments, CLV, recent events and transitions."""
        with transaction() as session:
            return profile.profile(
                session,
                external_id=customer_id,
                revision=_revision(),
                models=_models(),
                offers=current_app.extensions["catalog"].offers,
                margin=current_app.extensions["config"].default_margin,
                limit=query["recent"],
                now=utcnow(),
            )


@per_customer.route("/<string:customer_id>/rfm")
class CustomerRfm(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @per_customer.response(200, rfm_schemas.CustomerRfmSchema)
    def get(self, customer_id):
        """A customer's RFM values now and their scores against the newest run's cut points."""
        with transaction() as session:
            return rfm.customer_rfm(session, external_id=customer_id, revision=_revision(), now=utcnow())
