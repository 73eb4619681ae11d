"""HTTP routes of the whole base's historical CLV under /api/v1/clv (one customer's is in customers/profile_routes.py)."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from decision_server.auth.roles import Permission, requires
from decision_server.clv import dashboard, schemas, service
from decision_server.db import utcnow
from decision_server.schemas import page_response
from decision_server.web import Blueprint, transaction

clv_blp = Blueprint("clv", __name__, url_prefix="/clv", description="Historical customer lifetime value of the whole base")


def _margin():
    return current_app.extensions["config"].default_margin


@clv_blp.route("")
class ClvList(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @clv_blp.arguments(schemas.ClvListQuerySchema, location="query")
    @clv_blp.response(200, schemas.ClvPageSchema)
    def get(self, query):
        """Historical CLV of every customer, in customer id order, a page at a time."""
        after = query["cursor"][0] if query.get("cursor") else 0
        with transaction() as session:
            rows = service.page(
                session, as_of=query.get("as_of") or utcnow(), margin=_margin(), after_id=after, limit=query["limit"] + 1
            )
        return page_response(rows, query["limit"], position=lambda item: (item["cid"],))


@clv_blp.route("/statistics")
class ClvStatistics(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @clv_blp.arguments(schemas.ClvQuerySchema, location="query")
    @clv_blp.response(200, schemas.ClvStatisticsSchema)
    def get(self, query):
        """Totals over the base (revenue, cost, profit) and how revenue per buyer spreads."""
        with transaction() as session:
            return service.statistics(session, as_of=query.get("as_of") or utcnow(), margin=_margin())


@clv_blp.route("/summary")
class ClvSummary(MethodView):
    @requires(Permission.ANALYTICS_READ)
    @clv_blp.response(200, schemas.ClvSummarySchema)
    def get(self):
        """Historical and predicted CLV distributions, top buyers, CLV by stage and value segment (cached per data version)."""
        return summary()


def summary() -> dict:
    """The CLV dashboard's figures for this app (the console's CLV screen shows the same)."""
    with transaction() as session:
        return dashboard.summary(
            session.connection(),
            now=utcnow(),
            margin=_margin(),
            models=current_app.extensions["models"].current,
            revision_id=current_app.extensions["rulebook"].current.id,
            cache=current_app.extensions["clv_summaries"],
        )
