"""HTTP routes of journeys: a customer's journey and manual moves, the statistics and transitions of everyone."""

from __future__ import annotations

from flask import current_app, g
from flask.views import MethodView

from decision_server.auth.roles import Permission, requires
from decision_server.journeys import schemas, service, statistics
from decision_server.schemas import ErrorSchema, page_response
from decision_server.web import Blueprint, transaction

per_customer = Blueprint(
    "customer-journey", __name__, url_prefix="/customers", description="A customer's journey stage, its history and manual moves"
)
blp = Blueprint(
    "journeys", __name__, url_prefix="/journeys", description="Journey stages of everyone: funnel, time in stage, transitions"
)


def _revision():
    return current_app.extensions["rulebook"].current


def _after(query) -> tuple | None:
    return tuple(query["cursor"]) if query.get("cursor") else None


def _page(rows: list, limit: int) -> dict:
    return page_response(rows, limit, position=lambda row: (row["at"], row["id"]))


@per_customer.route("/<string:customer_id>/journey")
class CustomerJourney(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @per_customer.arguments(schemas.HistoryQuerySchema, location="query")
    @per_customer.response(200, schemas.JourneySchema)
    @per_customer.alt_response(404, schema=ErrorSchema, description="customer_not_found")
    def get(self, query, customer_id):
        """A customer's journey stage, since when, and its history newest first (a page at a time)."""
        with transaction() as session:
            found = service.journey(session.connection(), customer_id, limit=query["limit"], after=_after(query))
        page = _page(found.pop("history"), query["limit"])
        return {**found, "history": page["items"], "next_cursor": page["next_cursor"]}

    @requires(Permission.ANALYTICS_WRITE)
    @per_customer.arguments(schemas.MoveSchema)
    @per_customer.response(201, schemas.JourneyTransitionSchema)
    @per_customer.alt_response(404, schema=ErrorSchema, description="customer_not_found")
    @per_customer.alt_response(409, schema=ErrorSchema, description="journey_stage_unchanged: the customer is in that stage")
    def post(self, body, customer_id):
        """Move a customer's journey stage by hand, with a reason; recorded as a manual transition with your key's name.

        The stage holds until the next purchase, touchpoint or bulk pass re-evaluates the journey
        rules for the customer. An unknown stage is a 422 (journey_stage_invalid) listing the stages.
        """
        with transaction(write=True) as session:
            return service.move(
                session.connection(),
                customer_id,
                body["stage"],
                revision=_revision(),
                actor=f"key:{g.principal.name}",
                reason=body["reason"],
            )


@blp.route("/statistics")
class JourneyStatistics(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @blp.arguments(schemas.PeriodQuerySchema, location="query")
    @blp.response(200, schemas.JourneyStatisticsSchema)
    def get(self, query):
        """Customers per journey stage now, the funnel with conversion, median time in stage and the period's moves."""
        with transaction() as session:
            return statistics.statistics(session.connection(), revision=_revision(), **query)


@blp.route("/transitions")
class JourneyTransitions(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @blp.arguments(schemas.TransitionQuerySchema, location="query")
    @blp.response(200, schemas.JourneyTransitionPageSchema)
    def get(self, query):
        """List journey transitions of every customer, newest first, filtered by stages, source and period."""
        filters = {k: query[k] for k in ("since", "until", "from_stage", "to_stage", "source") if k in query}
        with transaction() as session:
            rows = service.transitions(session.connection(), limit=query["limit"], after=_after(query), **filters)
        return _page(rows, query["limit"])
