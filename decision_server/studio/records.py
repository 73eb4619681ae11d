"""The table of rule drafts: one per console user, based on the revision it was started from."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from decision_server.db import Base, BigId, Json, UtcDateTime, utcnow


class RuleDraftRecord(Base):
    """A user's unpublished rule changes: the files it changes, on top of the revision it was based on."""

    __tablename__ = "rule_drafts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(100), unique=True)
    base_revision: Mapped[str] = mapped_column(sa.String(64))
    files: Mapped[dict] = mapped_column(Json)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
