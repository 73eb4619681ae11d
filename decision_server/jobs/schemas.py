"""Request and response schemas for bulk job runs."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from decision_server.jobs.reevaluation import STEPS, WHAT_IF_STEPS
from decision_server.rulebook.schemas import DraftSchema
from decision_server.schemas import JsonDocument, PageQuery, StrictBoolean, Timestamp, page_of


class StartSchema(ma.Schema):
    """What to re-evaluate (default: every step)."""

    class Meta:
        unknown = ma.RAISE

    steps = fields.List(
        fields.String(
            validate=ma.validate.OneOf(STEPS, error="must be one of: {choices} (offers is a dry-run step: POST /jobs/what-if)")
        ),
        load_default=list(STEPS),
        validate=ma.validate.Length(min=1),
        metadata={"example": ["stages", "segments"]},
    )


class WhatIfSchema(DraftSchema):
    """A draft rule change to try on every customer (dry run): files changed or removed on top of the serving rules."""

    class Meta:
        unknown = ma.RAISE

    steps = fields.List(
        fields.String(validate=ma.validate.OneOf(WHAT_IF_STEPS)),
        load_default=list(WHAT_IF_STEPS),
        validate=ma.validate.Length(min=1),
    )
    channels = fields.List(
        fields.String(validate=ma.validate.Length(min=1, max=32)),
        validate=ma.validate.Length(min=1),
        metadata={"description": "channels to try the offers on (default: every channel)", "example": ["app", "call_centre"]},
    )
    intent = fields.String(
        allow_none=True,
        load_default=None,
        validate=ma.validate.Length(min=1, max=64),
        metadata={"description": "the customers' intent to try the offers with (default: none given)", "example": "browse"},
    )


class RunSchema(ma.Schema):
    """One run of a bulk job: its progress while it runs, its result or error when it ends."""

    id = fields.Integer()
    job = fields.String()
    steps = fields.List(fields.String())
    dry_run = fields.Boolean()
    source = fields.String(metadata={"description": "cli, api, schedule or console"})
    started_by = fields.String(
        allow_none=True,
        metadata={"description": "key:NAME of the API key or console session that started it (null: cli, schedule)"},
    )
    status = fields.String(metadata={"description": "running, succeeded, failed or interrupted (its runner stopped answering)"})
    as_of = Timestamp()
    started_at = Timestamp()
    heartbeat_at = Timestamp()
    finished_at = Timestamp(allow_none=True)
    runner = fields.String(
        metadata={"description": "host:pid:place:thread of the process running it (place: its kernel boot and container)"}
    )
    rule_revision = fields.String(allow_none=True)
    phase = fields.String(allow_none=True, metadata={"description": "pass, tiers or expiry"})
    done = fields.Integer(metadata={"description": "customers (or members) done in the phase"})
    total = fields.Integer()
    running_seconds = fields.Float(
        metadata={
            "description": "time it has been running: a resumed run's earlier runners up to their "
            "last heartbeat, and the current one; not the time nobody ran it"
        }
    )
    rate = fields.Float(metadata={"description": "customers done per second of running time"})
    eta_seconds = fields.Float(allow_none=True, metadata={"description": "time left in the phase at this rate"})
    resumed_at = Timestamp(allow_none=True, metadata={"description": "when its current runner resumed it (null: never resumed)"})
    resumes = fields.Integer(metadata={"description": "times a later start resumed it after its last committed chunk"})
    result = JsonDocument(
        allow_none=True,
        metadata={
            "description": "counts by phase (`pass`, `tiers`, `expiry`). A what-if's `pass` has `before` and `after` "
            "(customers by stage, value_segment, rfm_segment, journey_stage and segments, now and under the draft), "
            "`transitions` (stage moves: [{from, to, count}]), `moves` (`value_segment` and `journey_stage` moves: "
            "[{from, to, count}], `none` for no value), `written` (customers the draft would change) and, with the "
            "offers step, `offers` (per channel: each offer's reach before and after, who has no eligible offer)"
        },
    )
    error = fields.String(allow_none=True)


class RunQuery(PageQuery):
    """Filter runs by status; newest first."""

    status = fields.String(validate=ma.validate.OneOf(("running", "succeeded", "failed", "interrupted")))


RunPageSchema = page_of(RunSchema, "RunPageSchema")


class ScheduleSchema(ma.Schema):
    """When the scheduler runs a job, and when it runs next."""

    name = fields.String()
    job = fields.String(metadata={"description": "reevaluate, retrain or retention"})
    cron = fields.String(allow_none=True, metadata={"description": "minute hour day month weekday, UTC"})
    interval_seconds = fields.Float(allow_none=True)
    steps = fields.List(fields.String(), allow_none=True)
    enabled = fields.Boolean()
    description = fields.String()
    updated_at = Timestamp()
    updated_by = fields.String()
    next_run_at = Timestamp(allow_none=True)
    retry_at = Timestamp(allow_none=True, metadata={"description": "a retry pending after a failure"})


class SchedulesSchema(ma.Schema):
    leader = JsonDocument(allow_none=True, metadata={"description": "the process holding the scheduler lease, and until when"})
    items = fields.List(fields.Nested(ScheduleSchema))


class SchedulePatchSchema(ma.Schema):
    """Change a schedule: its time (cron or interval), steps, description, or switch it off."""

    class Meta:
        unknown = ma.RAISE

    cron = fields.String(allow_none=True, validate=ma.validate.Length(max=100))
    # At most a year: a longer interval is a typo, and APScheduler's timedelta overflows on huge ones.
    interval_seconds = fields.Float(allow_none=True, validate=ma.validate.Range(1, 366 * 86400))
    steps = fields.List(fields.String(validate=ma.validate.OneOf(STEPS)), allow_none=True)
    enabled = StrictBoolean()
    description = fields.String(validate=ma.validate.Length(max=500))
