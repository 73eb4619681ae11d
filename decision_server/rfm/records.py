"""The RFM runs table: the cut points every real-time RFM score is placed against."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from decision_server.db import Base, BigId, Json, UtcDateTime, utcnow


class RfmRunRecord(Base):
    """One RFM calculation over the whole base: its as-of time, quintile cut points and counts.

    The newest run's cut points place a single customer's new values between runs (event path),
    so a purchase moves their scores at once without re-ranking everyone.
    """

    __tablename__ = "rfm_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    as_of: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    buyers: Mapped[int] = mapped_column(sa.Integer)
    # Four cut points each: a value strictly above k of them scores k + 1 (see rfm/service.py).
    # recency: epoch seconds of the last purchase; frequency: purchases; monetary: spend in cents.
    cuts: Mapped[dict[str, Any]] = mapped_column(Json)
    segments: Mapped[dict[str, int]] = mapped_column(Json)
    # How buyers moved: {segment held before the run: {segment after it: customers}}, "none" for
    # no segment (migration 0018 says why); null for runs made before it was kept.
    moves: Mapped[dict[str, dict[str, int]] | None] = mapped_column(Json)
    rule_revision: Mapped[str] = mapped_column(sa.String(64))
    source: Mapped[str] = mapped_column(sa.String(16))
    seconds: Mapped[float] = mapped_column(sa.Float)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
