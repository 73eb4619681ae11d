"""HTTP routes of lifecycle stages (CLM) under /api/v1/lifecycle: statistics, transitions, bulk evaluation.

A customer's own transitions and manual stage are in customers/profile_routes.py.
"""

from __future__ import annotations

import datetime as dt
import time

from flask import current_app
from flask.views import MethodView

from decision_server.auth.roles import Permission, requires
from decision_server.db import utcnow
from decision_server.jobs import passes
from decision_server.lifecycle import history, schemas, service
from decision_server.schemas import page_response
from decision_server.throttle import expensive
from decision_server.web import Blueprint, transaction

lifecycle_blp = Blueprint(
    "lifecycle", __name__, url_prefix="/lifecycle", description="Lifecycle stages (CLM): statistics, transitions, bulk evaluation"
)


def _revision():
    return current_app.extensions["rulebook"].current


def transition_filters(query: dict) -> dict:
    """The service's filters from a TransitionQuerySchema query (one page: limit + 1 rows to know if there is more)."""
    names = ("from_stage", "to_stage", "first", "source", "since", "until")
    cursor = query.get("cursor")
    return {**{k: query.get(k) for k in names}, "limit": query["limit"] + 1, "before_id": cursor[0] if cursor else None}


@lifecycle_blp.route("/statistics")
class LifecycleStatistics(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @lifecycle_blp.arguments(schemas.PeriodQuerySchema, location="query")
    @lifecycle_blp.response(200, schemas.LifecycleStatisticsSchema)
    def get(self, query):
        """Customers per stage now, and the transition matrix (from → to counts) over a period."""
        until = query.get("until") or utcnow()
        since = query.get("since") or until - dt.timedelta(days=30)
        with transaction() as session:
            return service.statistics(session, revision=_revision(), since=since, until=until)


@lifecycle_blp.route("/statistics/history")
class LifecycleHistory(MethodView):
    @requires(Permission.ANALYTICS_READ)
    @lifecycle_blp.arguments(schemas.HistoryQuerySchema, location="query")
    @lifecycle_blp.response(200, schemas.LifecycleHistorySchema)
    def get(self, query):
        """Customers per stage at the end of each day or week, counted back from today through the transitions."""
        until = query.get("until") or utcnow()
        since = query.get("since") or until - dt.timedelta(weeks=12)
        with transaction() as session:
            return history.stage_history(
                session, stages=service.stages(_revision()), since=since, until=until, interval=query["interval"]
            )


@lifecycle_blp.route("/transitions")
class Transitions(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @lifecycle_blp.arguments(schemas.TransitionQuerySchema, location="query")
    @lifecycle_blp.response(200, schemas.TransitionPageSchema)
    def get(self, query):
        """List stage transitions of every customer, newest first, filtered by stages, source and period."""
        with transaction() as session:
            return page_response(service.list_transitions(session, **transition_filters(query)), query["limit"])


@lifecycle_blp.route("/evaluate")
class Evaluate(MethodView):
    @requires(Permission.ANALYTICS_WRITE)
    @expensive
    @lifecycle_blp.response(200, schemas.EvaluateResultSchema)
    def post(self):
        """Re-evaluate every customer's stage and value now (what the nightly run does); returns the changes by from → to."""
        started = time.perf_counter()
        result = passes.evaluate_stages(current_app.extensions["database"], _revision(), current_app.extensions["models"].current)
        return {**result, "seconds": time.perf_counter() - started}
