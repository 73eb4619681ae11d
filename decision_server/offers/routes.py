"""HTTP routes for the offer catalog: list, read, create, change, delete."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from decision_server.auth.roles import Permission, requires
from decision_server.offers import service
from decision_server.offers.schemas import (
    OfferInSchema,
    OfferPageSchema,
    OfferPatchSchema,
    OfferQuery,
    OfferSchema,
)
from decision_server.schemas import page_response
from decision_server.web import Blueprint, transaction

blp = Blueprint(
    "offers",
    __name__,
    url_prefix="/offers",
    description="The offer catalog: offers, their targeting and their treatment per channel",
)


def _context() -> dict:
    return {
        "channels": current_app.extensions["config"].channels,
        "words": service.vocabulary(current_app.extensions["rulebook"].current),
    }


def _changed() -> None:
    """Serve this process's next decision from the changed catalog (others follow within seconds)."""
    current_app.extensions["catalog"].sync()


@blp.route("")
class Offers(MethodView):
    @requires(Permission.OFFERS_READ)
    @blp.arguments(OfferQuery, location="query")
    @blp.response(200, OfferPageSchema)
    def get(self, query):
        """List offers in id order, filtered by status, category, target stage or segment, or external system."""
        after = query.pop("cursor", None)
        limit = query.pop("limit")
        with transaction() as session:
            rows = service.listing(session, limit=limit, after=after[0] if after else None, **query)
        return page_response(rows, limit)

    @requires(Permission.OFFERS_WRITE)
    @blp.arguments(OfferInSchema)
    @blp.response(201, OfferSchema)
    def post(self, body):
        """Add an offer; its category, targets and treatments are checked against the rules and channels."""
        with transaction(write=True) as session:
            offer = service.create(session, body, **_context())
        _changed()
        return offer


@blp.route("/<id:offer_id>")
class Offer(MethodView):
    @requires(Permission.OFFERS_READ)
    @blp.response(200, OfferSchema)
    def get(self, offer_id):
        """Show one offer."""
        with transaction() as session:
            return service.get(session, offer_id)

    @requires(Permission.OFFERS_WRITE)
    @blp.arguments(OfferPatchSchema)
    @blp.response(200, OfferSchema)
    def patch(self, body, offer_id):
        """Change some of an offer's fields (status: retired takes it out of every decision)."""
        with transaction(write=True) as session:
            offer = service.update(session, offer_id, body, **_context())
        _changed()
        return offer

    @requires(Permission.OFFERS_WRITE)
    @blp.response(204)
    def delete(self, offer_id):
        """Delete an offer that was never made to anyone (otherwise retire it)."""
        with transaction(write=True) as session:
            service.delete(session, offer_id)
        _changed()
