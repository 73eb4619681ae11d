"""Tables for customers and their current state row."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from decision_server.db import Base, BigId, Json, UtcDateTime, utcnow


class CustomerRecord(Base):
    """A person we know by the external id the channels use."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    external_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    first_name: Mapped[str | None] = mapped_column(sa.String(100))
    last_name: Mapped[str | None] = mapped_column(sa.String(100))
    email: Mapped[str | None] = mapped_column(sa.String(254))
    phone: Mapped[str | None] = mapped_column(sa.String(32))
    # Contact consent per channel, e.g. {"sms": true, "app": false}; a missing channel is unknown.
    consent: Mapped[dict[str, bool]] = mapped_column(Json, default=dict)
    # Free attributes the business sends along (plan, region, ...), available to rules later.
    attributes: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    # When the customer became a customer (historical imports set it), not when the row was made.
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class CustomerStateRecord(Base):
    """The one row per customer that the real-time path reads: aggregates kept up to date on ingest."""

    __tablename__ = "customer_state"

    customer_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    transaction_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    # Money in integer cents: exact on SQLite too, whose NUMERIC would store a float.
    total_spend_cents: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    total_cost_cents: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    first_purchase_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    last_purchase_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    touchpoint_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    last_touchpoint_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    # Monthly buckets of the last twelve months (see features/activity.py): windowed features
    # for the real-time path come from this row alone.
    activity: Mapped[dict[str, Any] | None] = mapped_column(Json)
    # RFM scores 1-5 and segment (None: never bought), from the run `rfm_run_id` (the last run that
    # changed them) or placed against the newest run's cut points by the event path.
    rfm_r: Mapped[int | None] = mapped_column(sa.SmallInteger)
    rfm_f: Mapped[int | None] = mapped_column(sa.SmallInteger)
    rfm_m: Mapped[int | None] = mapped_column(sa.SmallInteger)
    rfm_segment: Mapped[str | None] = mapped_column(sa.String(40), index=True)
    rfm_run_id: Mapped[int | None] = mapped_column(BigId)
    # Lifecycle stage (CLM) from the lifecycle rule set; every change is a StageTransitionRecord.
    stage: Mapped[str | None] = mapped_column(sa.String(32), index=True)
    stage_since: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    # Customer value (CVM): score 0-100 (value/service.py) and its segment from rules/value.yaml.
    value_score: Mapped[float | None] = mapped_column(sa.Float)
    value_segment: Mapped[str | None] = mapped_column(sa.String(16), index=True)
    # Journey stage from the touchpoint-driven rules/journey.yaml.
    journey_stage: Mapped[str | None] = mapped_column(sa.String(32), index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
