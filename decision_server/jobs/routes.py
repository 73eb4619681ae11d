"""HTTP routes for bulk jobs: run the re-evaluation now, try a draft rule change on everyone, list runs."""

from __future__ import annotations

import sqlalchemy as sa
from flask import current_app
from flask.views import MethodView

from decision_server.auth.roles import Permission, requires
from decision_server.jobs import reevaluation, schemas, whatif
from decision_server.jobs.records import BulkRunRecord
from decision_server.schemas import ErrorSchema, page_response
from decision_server.throttle import expensive
from decision_server.web import Blueprint, transaction

blp = Blueprint(
    "jobs",
    __name__,
    url_prefix="/jobs",
    description="Bulk jobs: re-evaluate every customer now, try a draft rule change on the whole base, follow runs",
)
_runs = BulkRunRecord.__table__
_BUSY = {
    "schema": ErrorSchema,
    "description": "a run holds the job's lease (`job_running`): one runner at a time; "
    "the message and `errors.lease_expires_at` say when its lease expires unless renewed",
}


def _database():
    return current_app.extensions["database"]


def _margin():
    return current_app.extensions["config"].default_margin


@blp.route("/reevaluate")
class Reevaluate(MethodView):
    @requires(Permission.JOBS_RUN)
    @blp.arguments(schemas.StartSchema)
    @blp.response(202, schemas.RunSchema)
    @blp.alt_response(409, **_BUSY)
    def post(self, body):
        """Run now: every customer's RFM, CLV, scores, value, stage, journey and segments, then tiers and expiry.

        Answers at once with the run (202); follow it at /jobs/runs/{id}. A run that stopped half-way
        (its server died) with the same steps is resumed after its last committed chunk.
        """
        from flask import g

        return reevaluation.start(
            _database(),
            current_app.extensions["rulebook"].current,
            current_app.extensions["models"].current,
            steps=body["steps"],
            source="api",
            started_by=f"key:{g.principal.name}",
            margin=_margin(),
            dask_address=current_app.extensions["config"].dask_scheduler_address,
        )


@blp.route("/what-if")
class WhatIf(MethodView):
    @requires(Permission.RULES_READ)
    @expensive
    @blp.arguments(schemas.WhatIfSchema)
    @blp.response(202, schemas.RunSchema)
    @blp.alt_response(409, **_BUSY)
    @blp.alt_response(
        422,
        schema=ErrorSchema,
        description="the draft does not validate (`rule_file_invalid`, each problem with file, line and reason)",
    )
    def post(self, body):
        """Try a draft rule change on every customer without writing anything (a dry run).

        The result (at /jobs/runs/{id} when it ends) has the stage moves from → to (`transitions`),
        the value segment and journey stage moves from → to (`moves`), and how many customers have
        each stage, value segment, RFM segment, journey stage and segment membership, now (`before`)
        and under the draft (`after`), and the tier changes it would make. With the offers step,
        `result.pass.offers` says per channel how many customers each active offer is eligible for
        now and under the draft, how many gain or lose it, which rules remove it, and how many
        customers are left with no eligible offer. Analysts may run it: it changes nothing.
        """
        from flask import g

        from decision_server.rulebook import service

        rulebook = current_app.extensions["rulebook"]
        return whatif.start_what_if(
            _database(),
            rulebook,
            current_app.extensions["models"].current,
            current_app.extensions["config"],
            files=service.draft_files(rulebook.current, body),
            steps=body["steps"],
            channels=body.get("channels"),
            intent=body["intent"],
            source="api",
            started_by=f"key:{g.principal.name}",
        )


@blp.route("/runs")
class Runs(MethodView):
    @requires(Permission.JOBS_READ)
    @blp.arguments(schemas.RunQuery, location="query")
    @blp.response(200, schemas.RunPageSchema)
    def get(self, query):
        """List runs, newest first, with their progress, result or error; filter by status."""
        statement = sa.select(_runs).order_by(_runs.c.id.desc()).limit(query["limit"] + 1)
        if query.get("status"):
            statement = statement.where(_runs.c.status == query["status"])
        if query.get("cursor"):
            statement = statement.where(_runs.c.id < query["cursor"][0])
        with transaction() as session:
            rows = [reevaluation.with_rate(dict(r._mapping)) for r in session.execute(statement)]
        return page_response(rows, query["limit"])


@blp.route("/runs/<id:run_id>")
class Run(MethodView):
    @requires(Permission.JOBS_READ)
    @blp.response(200, schemas.RunSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="no run with that id")
    def get(self, run_id):
        """One run: progress (done, total, rate, time left) while it runs; result or error when it ends."""
        return reevaluation.get(_database(), run_id)


@blp.route("/schedules")
class Schedules(MethodView):
    @requires(Permission.JOBS_READ)
    @blp.response(200, schemas.SchedulesSchema)
    def get(self):
        """Every schedule with its next run time and pending retry, and which process leads the scheduler."""
        from decision_server.jobs import scheduler

        config = current_app.extensions["config"]
        scheduler.seed(_database(), config.schedules_file)
        return {"leader": scheduler.leader(_database()), "items": scheduler.listing(_database())}


@blp.route("/schedules/<string:name>")
class Schedule(MethodView):
    @requires(Permission.JOBS_RUN)
    @blp.arguments(schemas.SchedulePatchSchema)
    @blp.response(200, schemas.ScheduleSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="no schedule of that name")
    def patch(self, body, name):
        """Change a schedule; the leading scheduler follows within a third of its lease."""
        from flask import g

        from decision_server.jobs import scheduler

        scheduler.seed(_database(), current_app.extensions["config"].schedules_file)
        return scheduler.change(_database(), name, body, actor=f"key:{g.principal.name}")


@blp.route("/schedules/<string:name>/run")
class ScheduleRun(MethodView):
    @requires(Permission.JOBS_RUN)
    @blp.response(202, schemas.RunSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="no schedule of that name")
    @blp.alt_response(409, **_BUSY)
    def post(self, name):
        """Run a schedule's job now, in this server (202 with the run; follow it at /jobs/runs/{id})."""
        from decision_server.jobs import scheduler

        config = current_app.extensions["config"]
        scheduler.seed(_database(), config.schedules_file)
        return scheduler.run_now(_database(), config, name, source="api", wait=False)
