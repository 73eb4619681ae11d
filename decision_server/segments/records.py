"""The segments tables: definitions, current members, and each segment's size after every full recompute."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from decision_server.db import Base, BigId, UtcDateTime, utcnow


class SegmentRecord(Base):
    """A segment the business defines over the API: a name and a rule condition."""

    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    description: Mapped[str] = mapped_column(sa.String(500))
    condition: Mapped[str] = mapped_column(sa.Text)
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_by: Mapped[str] = mapped_column(sa.String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class SegmentMemberRecord(Base):
    """A customer in a segment, since when."""

    __tablename__ = "segment_members"

    segment_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        BigId, sa.ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    since: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class SegmentCountRecord(Base):
    """A segment's size at the end of a full recompute: the series behind 'counts over time'."""

    __tablename__ = "segment_counts"
    __table_args__ = (sa.Index("ix_segment_counts_segment_id_at", "segment_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    segment_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("segments.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    members: Mapped[int] = mapped_column(sa.Integer)
