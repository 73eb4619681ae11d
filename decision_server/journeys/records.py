"""The journey transition table: one row per change of a customer's journey stage."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from decision_server.db import Base, BigId, UtcDateTime


class JourneyTransitionRecord(Base):
    """One change of a customer's journey stage: append-only, the journey's history.

    The same columns as the lifecycle's StageTransitionRecord, so both histories read alike.
    """

    __tablename__ = "journey_transitions"
    __table_args__ = (sa.Index("ix_journey_transitions_customer_id_at", "customer_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("customers.id", ondelete="CASCADE"))
    from_stage: Mapped[str | None] = mapped_column(sa.String(32))
    to_stage: Mapped[str] = mapped_column(sa.String(32))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    # The journey rule that decided it (None for a manual move), and the revision it was in.
    rule_id: Mapped[str | None] = mapped_column(sa.String(64))
    rule_revision: Mapped[str | None] = mapped_column(sa.String(64))
    source: Mapped[str] = mapped_column(sa.String(16))  # event, bulk or manual
    actor: Mapped[str | None] = mapped_column(sa.String(100))
    reason: Mapped[str | None] = mapped_column(sa.String(500))
