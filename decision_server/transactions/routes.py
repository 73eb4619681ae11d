"""HTTP routes for transactions."""

from __future__ import annotations

from flask.views import MethodView

from decision_server.auth.roles import Permission, requires
from decision_server.ingest.events import batch_result, event_position
from decision_server.lifecycle.events import on_events
from decision_server.loyalty.events import on_purchases
from decision_server.schemas import page_response
from decision_server.transactions import schemas, service
from decision_server.web import Blueprint, transaction

blp = Blueprint("transactions", __name__, url_prefix="", description="Purchases")


@blp.route("/transactions")
class Transactions(MethodView):
    @requires(Permission.DATA_WRITE)
    @blp.arguments(schemas.TransactionInSchema)
    @blp.response(201, schemas.TransactionSchema, description="stored")
    @blp.alt_response(200, schema=schemas.TransactionSchema, description="already stored under this id")
    def post(self, body):
        """Add one purchase (idempotent on `external_id`)."""
        with transaction(write=True) as session:
            [row] = service.add_transactions(session, items=[body], batch=False, after=on_events(), on_created=on_purchases())
        return row, 201 if row["status"] == "created" else 200


@blp.route("/transactions/batch")
class TransactionBatch(MethodView):
    @requires(Permission.DATA_WRITE)
    @blp.arguments(schemas.TransactionBatchInSchema)
    @blp.response(200, schemas.TransactionBatchResultSchema)
    def post(self, body):
        """Add up to 1,000 purchases at once; if any is invalid, none is written."""
        with transaction(write=True) as session:
            return batch_result(
                service.add_transactions(session, items=body["items"], batch=True, after=on_events(), on_created=on_purchases())
            )


@blp.route("/customers/<string:customer_id>/transactions")
class CustomerTransactions(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @blp.arguments(schemas.TransactionQuerySchema, location="query")
    @blp.response(200, schemas.TransactionPageSchema)
    def get(self, query, customer_id):
        """List a customer's purchases, newest first."""
        limit, cursor = query.pop("limit"), query.pop("cursor", None)
        with transaction() as session:
            rows = service.list_transactions(session, customer_external_id=customer_id, limit=limit, after=cursor, **query)
        return page_response(rows, limit, position=event_position)
