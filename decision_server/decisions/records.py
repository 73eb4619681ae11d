"""Tables for the decision log: decisions, the actions they made, responses, learning counters."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from decision_server.db import Base, BigId, Json, UtcDateTime


class DecisionRecord(Base):
    """One answer to one channel request, with everything needed to explain it later."""

    __tablename__ = "decisions"
    __table_args__ = (sa.Index("ix_decisions_external_id_decided_at", "external_id", "decided_at"),)

    # Time-ordered random id made by the server (no round trip, unique across machines).
    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    # The customer id the channel asked about; customer_id is None for a prospect.
    external_id: Mapped[str] = mapped_column(sa.String(64))
    customer_id: Mapped[int | None] = mapped_column(BigId)
    prospect: Mapped[bool] = mapped_column(sa.Boolean)
    channel: Mapped[str] = mapped_column(sa.String(32))
    decided_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    context: Mapped[dict[str, Any]] = mapped_column(Json)
    # The customer's stage, value segment, tier and RFM segment as the decision used them.
    profile: Mapped[dict[str, Any]] = mapped_column(Json)
    revision: Mapped[str] = mapped_column(sa.String(64))
    models: Mapped[dict[str, Any]] = mapped_column(Json)
    # Every offer considered: eligible or not, what removed it, its factors and priority.
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(Json)
    latency_us: Mapped[int] = mapped_column(sa.Integer)


class DecisionActionRecord(Base):
    """One offer a decision made: what the contact policy counts and a response refers to."""

    __tablename__ = "decision_actions"
    __table_args__ = (sa.Index("ix_decision_actions_external_id_decided_at", "external_id", "decided_at"),)

    decision_id: Mapped[str] = mapped_column(
        sa.String(32), sa.ForeignKey("decisions.id", ondelete="CASCADE"), primary_key=True
    )
    rank: Mapped[int] = mapped_column(sa.SmallInteger, primary_key=True)
    external_id: Mapped[str] = mapped_column(sa.String(64))
    offer_id: Mapped[int] = mapped_column(BigId)
    channel: Mapped[str] = mapped_column(sa.String(32))
    decided_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    priority: Mapped[float] = mapped_column(sa.Float)
    # The model's propensity for this offer and the learning key it was counted under.
    propensity: Mapped[float] = mapped_column(sa.Float)
    learning_key: Mapped[str] = mapped_column(sa.String(32))


class DecisionResponseRecord(Base):
    """What the customer did with one action; the same response twice is one row."""

    __tablename__ = "decision_responses"
    __table_args__ = (
        sa.UniqueConstraint("decision_id", "rank", "response"),
        sa.Index("ix_decision_responses_external_id_responded_at", "external_id", "responded_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    decision_id: Mapped[str] = mapped_column(sa.String(32), sa.ForeignKey("decisions.id", ondelete="CASCADE"))
    rank: Mapped[int] = mapped_column(sa.SmallInteger)
    external_id: Mapped[str] = mapped_column(sa.String(64))
    offer_id: Mapped[int] = mapped_column(BigId)
    response: Mapped[str] = mapped_column(sa.String(16))  # accepted, declined, ignored, clicked
    responded_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    recorded_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    attributes: Mapped[dict[str, Any]] = mapped_column(Json)


class OfferLearningRecord(Base):
    """Counters of the adaptive propensity for one offer and one learning key (a value segment).

    `expected` sums the model's propensities of the actions made, `accepted` counts acceptances:
    accepted / expected is how much better or worse the offer does than the model says. Spread
    over a few shards (by process) so concurrent decisions do not queue on one hot row.
    """

    __tablename__ = "offer_learning"

    offer_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    learning_key: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    shard: Mapped[int] = mapped_column(sa.SmallInteger, primary_key=True)
    shown: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    expected: Mapped[float] = mapped_column(sa.Float, default=0.0)
    accepted: Mapped[int] = mapped_column(sa.BigInteger, default=0)
