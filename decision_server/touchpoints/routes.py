"""HTTP routes for touchpoints."""

from __future__ import annotations

from flask.views import MethodView

from decision_server.auth.roles import Permission, requires
from decision_server.ingest.events import batch_result, event_position
from decision_server.lifecycle.events import on_events
from decision_server.schemas import page_response
from decision_server.touchpoints import schemas, service, statistics
from decision_server.web import Blueprint, transaction

blp = Blueprint(
    "touchpoints",
    __name__,
    url_prefix="",
    description="Interactions other than purchases: app opens, calls, SMS clicks, complaints",
)


@blp.route("/touchpoints")
class Touchpoints(MethodView):
    @requires(Permission.DATA_WRITE)
    @blp.arguments(schemas.TouchpointInSchema)
    @blp.response(201, schemas.TouchpointSchema, description="stored")
    @blp.alt_response(200, schema=schemas.TouchpointSchema, description="already stored under this id")
    def post(self, body):
        """Add one interaction (idempotent on `external_id`)."""
        with transaction(write=True) as session:
            [row] = service.add_touchpoints(session, items=[body], batch=False, after=on_events())
        return row, 201 if row["status"] == "created" else 200


@blp.route("/touchpoints/batch")
class TouchpointBatch(MethodView):
    @requires(Permission.DATA_WRITE)
    @blp.arguments(schemas.TouchpointBatchInSchema)
    @blp.response(200, schemas.TouchpointBatchResultSchema)
    def post(self, body):
        """Add up to 1,000 interactions at once; if any is invalid, none is written."""
        with transaction(write=True) as session:
            return batch_result(service.add_touchpoints(session, items=body["items"], batch=True, after=on_events()))


@blp.route("/touchpoints/statistics")
class TouchpointStatistics(MethodView):
    @requires(Permission.ANALYTICS_READ)
    @blp.arguments(schemas.TouchpointStatisticsQuerySchema, location="query")
    @blp.response(200, schemas.TouchpointStatisticsSchema)
    def get(self, query):
        """Touchpoints of everyone per day or week, by channel and by channel and kind (default: the last 12 weeks)."""
        with transaction() as session:
            return statistics.statistics(session.connection(), **query)


@blp.route("/customers/<string:customer_id>/touchpoints")
class CustomerTouchpoints(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @blp.arguments(schemas.TouchpointQuerySchema, location="query")
    @blp.response(200, schemas.TouchpointPageSchema)
    def get(self, query, customer_id):
        """List a customer's interactions, newest first."""
        limit, cursor = query.pop("limit"), query.pop("cursor", None)
        with transaction() as session:
            rows = service.list_touchpoints(session, customer_external_id=customer_id, limit=limit, after=cursor, **query)
        return page_response(rows, limit, position=event_position)
