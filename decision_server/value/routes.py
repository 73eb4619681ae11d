"""HTTP routes of customer value (CVM) under /api/v1/value: segment statistics and value-based offers."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from decision_server.auth.roles import Permission, requires
from decision_server.value import schemas, service
from decision_server.web import Blueprint, transaction

value_blp = Blueprint("value", __name__, url_prefix="/value", description="Customer value (CVM): segments and score statistics")


@value_blp.route("/statistics")
class ValueStatistics(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @value_blp.response(200, schemas.ValueStatisticsSchema)
    def get(self):
        """Customers per value segment with score ranges, and how scores spread in bands of 10."""
        with transaction() as session:
            return service.statistics(session)


@value_blp.route("/thresholds")
class ValueThresholds(MethodView):
    @requires(Permission.RULES_READ)
    @value_blp.response(200, schemas.ValueThresholdsSchema)
    def get(self):
        """The serving value rules as score ranges per segment, and the cut points between segments."""
        return service.thresholds(current_app.extensions["rulebook"].current)


@value_blp.route("/offers")
class ValueOffers(MethodView):
    @requires(Permission.OFFERS_READ)
    @value_blp.arguments(schemas.ValueOffersQuery, location="query")
    @value_blp.response(200, schemas.ValueOffersSchema)
    def get(self, query):
        """Value-based offers: the active offers made for a value segment (the customer 360 view lists a customer's)."""
        revision = current_app.extensions["rulebook"].current
        return {"segments": service.offers_by_segment(revision, current_app.extensions["catalog"].offers, query.get("segment"))}
