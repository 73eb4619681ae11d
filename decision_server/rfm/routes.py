"""HTTP routes of RFM under /api/v1/rfm: a run over every buyer, the runs, segment statistics."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from decision_server.auth.roles import Permission, requires
from decision_server.jobs import passes
from decision_server.rfm import schemas, service
from decision_server.schemas import PageQuery, page_response
from decision_server.throttle import expensive
from decision_server.web import Blueprint, transaction

rfm_blp = Blueprint("rfm", __name__, url_prefix="/rfm", description="RFM: runs, cut points and segment statistics")


@rfm_blp.route("/calculate")
class RfmCalculate(MethodView):
    @requires(Permission.ANALYTICS_WRITE)
    @expensive
    @rfm_blp.arguments(schemas.RfmCalculateSchema)
    @rfm_blp.response(200, schemas.RfmRunSchema)
    def post(self, body):
        """Score every buyer 1-5 on recency, frequency and monetary by quintiles, name their segments, store the run."""
        revision = current_app.extensions["rulebook"].current
        run = passes.calculate_rfm(current_app.extensions["database"], revision, as_of=body.get("as_of"), source="api")
        with transaction() as session:
            return service.get_run(session, run.id)


@rfm_blp.route("/runs")
class RfmRuns(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @rfm_blp.arguments(PageQuery, location="query")
    @rfm_blp.response(200, schemas.RfmRunPageSchema)
    def get(self, query):
        """List RFM runs, newest first, with their cut points and segment counts."""
        with transaction() as session:
            rows = service.list_runs(
                session, limit=query["limit"] + 1, before_id=query["cursor"][0] if query.get("cursor") else None
            )
        return page_response(rows, query["limit"])


@rfm_blp.route("/statistics")
class RfmStatistics(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @rfm_blp.response(200, schemas.RfmStatisticsSchema)
    def get(self):
        """Per RFM segment now: customers, share, average scores, purchases and spend."""
        with transaction() as session:
            return service.statistics(session)


@rfm_blp.route("/grid")
class RfmGrid(MethodView):
    @requires(Permission.ANALYTICS_READ)
    @rfm_blp.arguments(schemas.RfmGridQuerySchema, location="query")
    @rfm_blp.response(200, schemas.RfmGridSchema)
    def get(self, query):
        """The R×F grid now: buyers (or their revenue) per recency and frequency score."""
        with transaction() as session:
            return service.grid(session, measure=query["measure"])


@rfm_blp.route("/moves")
class RfmMoves(MethodView):
    @requires(Permission.ANALYTICS_READ)
    @rfm_blp.response(200, schemas.RfmMovesSchema)
    def get(self):
        """How buyers moved between RFM segments in the newest run, from the segment each held before it."""
        with transaction() as session:
            return service.moves(session)
