"""Table for transactions."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from decision_server.db import Base, BigId, UtcDateTime, utcnow


class TransactionRecord(Base):
    """One purchase; `external_id` makes every write idempotent."""

    __tablename__ = "transactions"
    __table_args__ = (
        sa.Index("ix_transactions_customer_id_occurred_at", "customer_id", "occurred_at"),
        sa.CheckConstraint("amount_cents >= 0", name="amount_not_negative"),
        sa.CheckConstraint("cost_cents IS NULL OR cost_cents >= 0", name="cost_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    external_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    customer_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("customers.id", ondelete="CASCADE"))
    occurred_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    # Integer cents: exact on both databases (SQLite's NUMERIC would keep a float).
    amount_cents: Mapped[int] = mapped_column(sa.BigInteger)
    cost_cents: Mapped[int | None] = mapped_column(sa.BigInteger)
    product: Mapped[str | None] = mapped_column(sa.String(100))
    category: Mapped[str | None] = mapped_column(sa.String(64))
    channel: Mapped[str | None] = mapped_column(sa.String(32))
    ingested_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
