"""HTTP routes for syncing the offer catalog from external catalog APIs: connectors, runs, sync now."""

from __future__ import annotations

from flask import current_app, g
from flask.views import MethodView

from decision_server.auth.roles import Permission, requires
from decision_server.offers import connectors, service, sync
from decision_server.offers.sync_schemas import (
    ConnectorInSchema,
    ConnectorPatchSchema,
    ConnectorSchema,
    SyncRunPageSchema,
    SyncRunQuery,
    SyncRunSchema,
)
from decision_server.schemas import ErrorSchema, page_response
from decision_server.web import Blueprint, transaction

blp = Blueprint(
    "catalog-sync",
    __name__,
    url_prefix="/catalog",
    description="Sync the offer catalog from external catalog APIs: connectors, sync now, sync runs",
)
_NOT_FOUND = {"schema": ErrorSchema, "description": "no connector of that name"}


@blp.route("/connectors")
class Connectors(MethodView):
    @requires(Permission.OFFERS_WRITE)
    @blp.response(200, ConnectorSchema(many=True))
    def get(self):
        """List the catalog connectors in name order (secrets are never stored: only auth_env's name shows)."""
        with transaction() as session:
            return connectors.listing(session)

    @requires(Permission.CONNECTORS_MANAGE)
    @blp.arguments(ConnectorInSchema)
    @blp.response(201, ConnectorSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="a connector of that name exists")
    def post(self, body):
        """Add a connector: the upstream URL, where its items are, how they map onto offers."""
        with transaction(write=True) as session:
            return connectors.create(session, body)


@blp.route("/connectors/<string:name>")
class Connector(MethodView):
    @requires(Permission.OFFERS_WRITE)
    @blp.response(200, ConnectorSchema)
    @blp.alt_response(404, **_NOT_FOUND)
    def get(self, name):
        """Show one connector."""
        with transaction() as session:
            return connectors.get(session, name)

    @requires(Permission.CONNECTORS_MANAGE)
    @blp.arguments(ConnectorPatchSchema)
    @blp.response(200, ConnectorSchema)
    @blp.alt_response(404, **_NOT_FOUND)
    def patch(self, body, name):
        """Change some of a connector's fields; the result is checked as a whole."""
        with transaction(write=True) as session:
            return connectors.update(session, name, body)

    @requires(Permission.CONNECTORS_MANAGE)
    @blp.response(204)
    @blp.alt_response(404, **_NOT_FOUND)
    def delete(self, name):
        """Delete a connector; its offers and its runs' records stay."""
        with transaction(write=True) as session:
            connectors.delete(session, name)


@blp.route("/connectors/<string:name>/sync")
class ConnectorSync(MethodView):
    @requires(Permission.OFFERS_WRITE)
    @blp.response(200, SyncRunSchema)
    @blp.alt_response(404, **_NOT_FOUND)
    @blp.alt_response(409, schema=ErrorSchema, description="the connector is disabled")
    def post(self, name):
        """Sync now: read the upstream, check every offer, write the good ones in one transaction; the run record says how it went."""
        words = service.vocabulary(current_app.extensions["rulebook"].current)
        report = sync.run_sync(
            current_app.extensions["database"],
            name,
            channels=current_app.extensions["config"].channels,
            words=words,
            actor=f"key:{g.principal.name}",
        )
        current_app.extensions["catalog"].sync()  # this process serves the new catalog at once; others within seconds
        return report


@blp.route("/sync-runs")
class SyncRuns(MethodView):
    @requires(Permission.OFFERS_READ)
    @blp.arguments(SyncRunQuery, location="query")
    @blp.response(200, SyncRunPageSchema)
    def get(self, query):
        """List sync runs, newest first, filtered by connector or status."""
        after, limit = query.pop("cursor", None), query.pop("limit")
        with transaction() as session:
            rows = sync.runs(session, limit=limit, after=after, **query)
        return page_response(rows, limit, position=lambda row: (row["started_at"], row["id"]))
