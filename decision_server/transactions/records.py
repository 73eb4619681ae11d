"""Table for transactions."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from decision_server.db import Base, BigId, UtcDateTime, utcnow


class TransactionRecord(Base):
    """One purchase, or a refund (negative amount); `external_id` makes every write idempotent."""

    __tablename__ = "transactions"
    __table_args__ = (sa.Index("ix_transactions_customer_id_occurred_at", "customer_id", "occurred_at"),)

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
    # A refund may name the purchase it refunds (its external id): the points that purchase
    # earned are then taken back in proportion.
    refund_of: Mapped[str | None] = mapped_column(sa.String(64))
    ingested_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


# A refund is a transaction with a negative amount. Purchases are the others (zero included):
# counts, first/last purchase times and category counts read purchases only; spend is net.
IS_PURCHASE = TransactionRecord.amount_cents >= 0


def purchase_count() -> sa.ColumnElement:
    """SQL: the number of purchases (refunds left out)."""
    return sa.func.coalesce(sa.func.sum(sa.case((IS_PURCHASE, 1), else_=0)), 0)


def first_purchase_at() -> sa.ColumnElement:
    """SQL: the time of the first purchase (NULL when only refunds)."""
    return sa.func.min(sa.case((IS_PURCHASE, TransactionRecord.occurred_at), else_=sa.null()), type_=UtcDateTime())


def last_purchase_at() -> sa.ColumnElement:
    """SQL: the time of the latest purchase (NULL when only refunds)."""
    return sa.func.max(sa.case((IS_PURCHASE, TransactionRecord.occurred_at), else_=sa.null()), type_=UtcDateTime())
