"""Tables for rule revisions (content-addressed) and the log of which one was published when."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from decision_server.db import Base, BigId, Json, UtcDateTime, utcnow


class RuleRevisionRecord(Base):
    """The complete content of every rule file at one revision; the hash is the identity."""

    __tablename__ = "rule_revisions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    revision: Mapped[str] = mapped_column(sa.String(64), unique=True)
    files: Mapped[dict] = mapped_column(Json)
    author: Mapped[str] = mapped_column(sa.String(100))
    message: Mapped[str] = mapped_column(sa.String(500))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class RulePublicationRecord(Base):
    """One publish or rollback: the latest row names the revision every server must serve."""

    __tablename__ = "rule_publications"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    revision_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("rule_revisions.id"), index=True)
    action: Mapped[str] = mapped_column(sa.String(16))
    source: Mapped[str] = mapped_column(sa.String(16))
    author: Mapped[str] = mapped_column(sa.String(100))
    message: Mapped[str] = mapped_column(sa.String(500))
    published_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
