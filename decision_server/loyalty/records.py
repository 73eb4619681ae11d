"""Tables of the loyalty program: tiers, members, tier history, the points ledger, rewards, redemptions.

Points are money to the customer, so the database itself refuses what must never happen: a
negative balance, a negative stock, a ledger entry of zero points, the same idempotency key used
twice for one customer.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from decision_server.db import Base, BigId, Json, UtcDateTime, utcnow


class TierRecord(Base):
    """A loyalty tier: its rank (higher is better), points multiplier and benefits.

    Who qualifies is decided by `rules/tiers.yaml`; this table says what a tier is worth.
    """

    __tablename__ = "loyalty_tiers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(32), unique=True)
    rank: Mapped[int] = mapped_column(sa.Integer, unique=True)
    # Kept as the decimal the user typed (1.25); points are computed with Decimal(repr(multiplier)).
    multiplier: Mapped[float] = mapped_column(sa.Float)
    benefits: Mapped[list[str]] = mapped_column(Json, default=list)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class MemberRecord(Base):
    """A customer enrolled in the program: their tier and points balance (kept equal to the ledger's sum)."""

    __tablename__ = "loyalty_members"
    __table_args__ = (sa.CheckConstraint("balance >= 0", name="balance_not_negative"),)

    customer_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    tier: Mapped[str] = mapped_column(sa.String(32), sa.ForeignKey("loyalty_tiers.name"), index=True)
    tier_since: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    enrolled_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    enrolled_via: Mapped[str] = mapped_column(sa.String(16))  # api, first_purchase, import
    # The ledger's sum, changed in the same transaction as every entry (pending points included).
    balance: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    earned_total: Mapped[int] = mapped_column(sa.BigInteger, default=0)  # points ever credited by purchases
    # No expiry can be due before this (a conservative hint, so the bulk expiry skips everyone else).
    next_expiry_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, index=True)
    # When the tier rules first placed the member below their tier (the grace downgrade policy).
    below_since: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class TierChangeRecord(Base):
    """One change of a member's tier: from, to, when, why (rule id or a person's reason), source."""

    __tablename__ = "loyalty_tier_changes"
    __table_args__ = (sa.Index("ix_loyalty_tier_changes_customer_id_at", "customer_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("customers.id", ondelete="CASCADE"))
    from_tier: Mapped[str | None] = mapped_column(sa.String(32))
    to_tier: Mapped[str] = mapped_column(sa.String(32))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    source: Mapped[str] = mapped_column(sa.String(16))  # enroll, event, review, manual
    rule_id: Mapped[str | None] = mapped_column(sa.String(100))
    rule_revision: Mapped[str | None] = mapped_column(sa.String(64))
    actor: Mapped[str | None] = mapped_column(sa.String(100))
    reason: Mapped[str | None] = mapped_column(sa.Text)


class LedgerEntryRecord(Base):
    """One append-only movement of points; never updated, never deleted.

    Credits (earn, positive adjust, refund of a cancelled redemption) are lots that expire at
    `expires_at` and can be spent from `available_at`; debits (redeem, expire, reverse, negative
    adjust) use the oldest lots first, so the points due to expire by any date follow from sums.
    """

    __tablename__ = "loyalty_ledger"
    __table_args__ = (
        sa.UniqueConstraint("customer_id", "idempotency_key"),
        sa.Index("ix_loyalty_ledger_customer_id_id", "customer_id", "id"),
        sa.CheckConstraint("points <> 0", name="points_not_zero"),
        sa.CheckConstraint("balance_after >= 0", name="balance_after_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("customers.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(16))  # earn, redeem, expire, adjust, reverse, refund
    points: Mapped[int] = mapped_column(sa.BigInteger)  # signed: credits > 0, debits < 0
    balance_after: Mapped[int] = mapped_column(sa.BigInteger)
    idempotency_key: Mapped[str] = mapped_column(sa.String(100))
    transaction_id: Mapped[int | None] = mapped_column(BigId, sa.ForeignKey("transactions.id", ondelete="SET NULL"), index=True)
    redemption_id: Mapped[int | None] = mapped_column(BigId, sa.ForeignKey("loyalty_redemptions.id"))
    occurred_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)  # the business time (the purchase's)
    available_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)  # credits: pending until then
    expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)  # credits: None = never
    reason: Mapped[str | None] = mapped_column(sa.Text)
    actor: Mapped[str | None] = mapped_column(sa.String(100))
    details: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)  # rules fired, multipliers, amounts
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class RewardRecord(Base):
    """Something points buy: its cost, stock (None = unlimited), validity and the tiers allowed."""

    __tablename__ = "loyalty_rewards"
    __table_args__ = (
        sa.CheckConstraint("points_cost > 0", name="points_cost_positive"),
        sa.CheckConstraint("stock IS NULL OR stock >= 0", name="stock_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    points_cost: Mapped[int] = mapped_column(sa.BigInteger)
    stock: Mapped[int | None] = mapped_column(sa.Integer)
    valid_from: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    valid_to: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    tiers: Mapped[list[str]] = mapped_column(Json, default=list)  # empty: every tier
    status: Mapped[str] = mapped_column(sa.String(16), index=True)  # active, paused, retired
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class RedemptionRecord(Base):
    """Points spent on a reward; cancelling returns the points and the stock."""

    __tablename__ = "loyalty_redemptions"
    __table_args__ = (
        sa.UniqueConstraint("customer_id", "idempotency_key"),
        sa.Index("ix_loyalty_redemptions_customer_id_id", "customer_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("customers.id", ondelete="CASCADE"))
    reward_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("loyalty_rewards.id"), index=True)
    points: Mapped[int] = mapped_column(sa.BigInteger)
    status: Mapped[str] = mapped_column(sa.String(16))  # completed, cancelled
    idempotency_key: Mapped[str] = mapped_column(sa.String(100))
    channel: Mapped[str | None] = mapped_column(sa.String(32))
    actor: Mapped[str | None] = mapped_column(sa.String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    cancel_reason: Mapped[str | None] = mapped_column(sa.Text)
    cancelled_by: Mapped[str | None] = mapped_column(sa.String(100))
