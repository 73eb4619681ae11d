"""Bulk job runs: what ran, when, how far it got, what it changed, and why it failed."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from decision_server.db import Base, BigId, Json, UtcDateTime, utcnow


class BulkRunRecord(Base):
    """One run of a bulk job (the re-evaluation of every customer), with its checkpoint.

    A run that is `running` holds the job's lease while `heartbeat_at` is recent; each chunk
    commits together with the checkpoint, so a run whose process died resumes after its last
    committed chunk without losing or repeating a change.
    """

    __tablename__ = "bulk_runs"
    __table_args__ = (
        sa.Index("ix_bulk_runs_job_started_at", "job", "started_at"),
        # The lease: at most one running run per job, whatever the number of processes or machines.
        sa.Index(
            "uq_bulk_runs_one_running",
            "job",
            unique=True,
            sqlite_where=sa.text("status = 'running'"),
            postgresql_where=sa.text("status = 'running'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job: Mapped[str] = mapped_column(sa.String(32))
    steps: Mapped[list[str]] = mapped_column(Json)
    dry_run: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    source: Mapped[str] = mapped_column(sa.String(16))  # cli, api, schedule, console
    started_by: Mapped[str | None] = mapped_column(
        sa.String(100)
    )  # key:NAME of the API key or console session; null: cli, schedule
    status: Mapped[str] = mapped_column(sa.String(16), index=True)  # running, succeeded, failed, interrupted
    as_of: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    runner: Mapped[str] = mapped_column(sa.String(100))  # host:pid:place:thread of the runner (jobs/runners.py)
    rule_revision: Mapped[str | None] = mapped_column(sa.String(64))
    done: Mapped[int] = mapped_column(sa.Integer, default=0)
    total: Mapped[int] = mapped_column(sa.Integer, default=0)
    phase: Mapped[str | None] = mapped_column(sa.String(16))
    checkpoint: Mapped[dict[str, Any] | None] = mapped_column(Json)
    result: Mapped[dict[str, Any] | None] = mapped_column(Json)
    error: Mapped[str | None] = mapped_column(sa.Text)
    resumes: Mapped[int] = mapped_column(sa.Integer, default=0)
    # Running time only: the current runner's part runs from resumed_at (or started_at); the runners
    # before it ran prior_seconds in all, each counted up to its last heartbeat, not while nobody ran it.
    resumed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    prior_seconds: Mapped[float] = mapped_column(sa.Float, default=0.0, server_default="0")


class ScheduleRecord(Base):
    """When the scheduler runs a job: a cron expression (UTC) or an interval; seeded from the
    schedules file, then edited over the API."""

    __tablename__ = "job_schedules"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    job: Mapped[str] = mapped_column(sa.String(32))  # reevaluate, retrain
    cron: Mapped[str | None] = mapped_column(sa.String(100))
    interval_seconds: Mapped[float | None] = mapped_column(sa.Float)
    steps: Mapped[list[str] | None] = mapped_column(Json)
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(sa.String(100))


class LeaseRecord(Base):
    """A named lease (the scheduler's): held by one process until `expires_at` unless renewed."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(sa.String(100))
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
