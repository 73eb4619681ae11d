"""HTTP routes for decisions: decide, respond, and read the decision log."""

from __future__ import annotations

import datetime as dt
import time

import orjson
from flask import Response, current_app
from flask.views import MethodView

from decision_server import metrics, periods
from decision_server.auth.roles import Permission, requires
from decision_server.db import utcnow
from decision_server.decisions import log, statistics
from decision_server.decisions.schemas import (
    ChannelStatisticsQuery,
    ChannelStatisticsSchema,
    DailyStatisticsSchema,
    DecisionDetailSchema,
    DecisionPageSchema,
    DecisionQuery,
    DecisionRequestSchema,
    DecisionSchema,
    OfferStatisticsQuery,
    OfferStatisticsSchema,
    OfferTableSchema,
    PeriodQuery,
    RemovalQuery,
    RemovalStatisticsSchema,
    ResponseInSchema,
    ResponseSchema,
)
from decision_server.decisions.service import DecisionRequest
from decision_server.errors import ValidationError
from decision_server.schemas import ErrorSchema
from decision_server.web import Blueprint, transaction

blp = Blueprint(
    "decisions",
    __name__,
    url_prefix="/decisions",
    description="The next best action for a customer on a channel, responses, and the decision log",
)


def _decider():
    return current_app.extensions["decider"]


@blp.route("")
class Decisions(MethodView):
    @requires(Permission.DECISIONS_WRITE)
    # An instance, not the class: webargs would build a new schema for every request (~60 µs).
    @blp.arguments(DecisionRequestSchema())
    @blp.response(201, DecisionSchema)
    @blp.alt_response(
        409, schema=ErrorSchema, description="rules_missing: the serving rules lack offers, contact_policy or arbitration"
    )
    @blp.alt_response(
        503,
        schema=ErrorSchema,
        description="decision_log_unavailable: the decision could not be logged, so it is not given; retry",
    )
    def post(self, body):
        """Decide the next best actions for a customer on a channel, explained, and log the decision."""
        started = time.perf_counter()
        decider = _decider()
        if body["channel"] not in decider.channels:
            message = f"unknown channel; channels: {', '.join(decider.channels)}"
            raise ValidationError("the request has invalid fields: channel", errors={"channel": [message]})
        answer = decider.decide(DecisionRequest(body["customer_id"], body["channel"], body["context"], body["actions"]))
        # Serialized directly with orjson (ISO times, ~10x Flask's encoder): no marshmallow dump on
        # the decision path; the schema documents the shape.
        response = Response(orjson.dumps(answer), status=201, mimetype="application/json")
        # The whole view (decide, log write, JSON) for load tests and tracing; `latency_us` stops before the write.
        response.headers["Server-Timing"] = f"decision;dur={(time.perf_counter() - started) * 1000:.3f}"
        return response

    @requires(Permission.DECISIONS_READ)
    @blp.arguments(DecisionQuery, location="query")
    @blp.response(200, DecisionPageSchema)
    def get(self, query):
        """List decisions newest first, by customer, channel and time."""
        limit = query.pop("limit")
        with transaction() as session:
            rows = log.listing(session.connection(), limit=limit, before=query.pop("cursor", None), **query)
        more = len(rows) > limit
        rows = rows[:limit]
        return {"items": rows, "next_cursor": rows[-1]["decision_id"] if more and rows else None}


@blp.route("/preview")
class Preview(MethodView):
    @requires(Permission.DECISIONS_READ)
    @blp.arguments(DecisionRequestSchema())
    @blp.response(200, DecisionSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="rules_missing")
    def post(self, body):
        """Decide as POST /decisions would, without logging it: no contact is counted, nothing is learned, no id is given."""
        decider = _decider()
        if body["channel"] not in decider.channels:
            message = f"unknown channel; channels: {', '.join(decider.channels)}"
            raise ValidationError("the request has invalid fields: channel", errors={"channel": [message]})
        answer = decider.preview(DecisionRequest(body["customer_id"], body["channel"], body["context"], body["actions"]))
        return Response(orjson.dumps(answer), status=200, mimetype="application/json")


@blp.route("/<string:decision_id>")
class Decision(MethodView):
    @requires(Permission.DECISIONS_READ)
    @blp.response(200, DecisionDetailSchema)
    def get(self, decision_id):
        """Show one decision: context, profile, every candidate with its factors, actions and responses."""
        with transaction() as session:
            return log.get(session.connection(), decision_id)


@blp.route("/<string:decision_id>/responses")
class Responses(MethodView):
    @requires(Permission.DECISIONS_WRITE)
    @blp.arguments(ResponseInSchema)
    @blp.response(201, ResponseSchema)
    @blp.alt_response(200, schema=ResponseSchema, description="the same response was already recorded (a retry)")
    @blp.alt_response(404, schema=ErrorSchema, description="decision_not_found")
    @blp.alt_response(409, schema=ErrorSchema, description="decision_has_no_actions")
    def post(self, body, decision_id):
        """Record how the customer responded to an action; the same response again changes nothing."""
        learning = _decider().learning
        with transaction(write=True) as session:
            stored, created, counted = log.respond(session.connection(), learning, decision_id, **body)
        if counted:
            learning.applied([counted])
        if created:
            metrics.response_recorded(stored["response"])
        return stored, 201 if created else 200


@blp.route("/offers/statistics")
class OfferStatistics(MethodView):
    @requires(Permission.DECISIONS_READ)
    @blp.arguments(OfferStatisticsQuery, location="query")
    @blp.response(200, OfferStatisticsSchema)
    def get(self, query):
        """Per offer: how often it was made, the responses, the acceptance rate."""
        with transaction() as session:
            return {"items": log.offer_statistics(session.connection(), **query)}


@blp.route("/statistics")
class ChannelStatistics(MethodView):
    @requires(Permission.ANALYTICS_READ)
    @blp.arguments(ChannelStatisticsQuery, location="query")
    @blp.response(200, ChannelStatisticsSchema)
    def get(self, query):
        """Decisions per channel in a period (default today): volume, actions, responses, acceptance, latency."""
        until = query.get("until") or utcnow()
        # Without a start: the day so far, or the day before an explicit end (never an empty period).
        midnight = until.replace(hour=0, minute=0, second=0, microsecond=0)
        since = query.get("since") or (midnight if midnight < until else until - dt.timedelta(days=1))
        with transaction() as session:
            return statistics.by_channel(session.connection(), since=since, until=until)


# The offers-and-decisions screen's numbers, each as an endpoint (base-wide figures: analysts).


@blp.route("/statistics/offers")
class OfferTable(MethodView):
    @requires(Permission.ANALYTICS_READ)
    @blp.arguments(PeriodQuery, location="query")
    @blp.response(200, OfferTableSchema)
    def get(self, query):
        """Per offer (code, name, category): how often it was made in a period, the responses and the acceptance rate."""
        since, until = periods.default_period(query.get("since"), query.get("until"), days=statistics.DEFAULT_DAYS)
        with transaction() as session:
            return {"since": since, "until": until, "items": statistics.offers(session.connection(), since=since, until=until)}


@blp.route("/statistics/daily")
class DailyStatistics(MethodView):
    @requires(Permission.ANALYTICS_READ)
    @blp.arguments(PeriodQuery, location="query")
    @blp.response(200, DailyStatisticsSchema)
    def get(self, query):
        """Per day of a period: decisions and latency p50/p95; per channel and day: decisions, actions, acceptance."""
        since, until = periods.default_period(query.get("since"), query.get("until"), days=statistics.DEFAULT_DAYS)
        with transaction() as session:
            return statistics.daily(session.connection(), since=since, until=until)


@blp.route("/statistics/removals")
class RemovalStatistics(MethodView):
    @requires(Permission.ANALYTICS_READ)
    @blp.arguments(RemovalQuery, location="query")
    @blp.response(200, RemovalStatisticsSchema)
    def get(self, query):
        """Which rules removed offers, counted over a sample: the newest `sample` decisions of a period."""
        since, until = periods.default_period(query.get("since"), query.get("until"), days=statistics.DEFAULT_DAYS)
        with transaction() as session:
            return statistics.removals(session.connection(), since=since, until=until, sample=query["sample"])
