"""Tables for the decision log: decisions, the actions they made, responses, learning counters, rollups.

The three log tables are partitioned by day of `decided_at` on PostgreSQL (decisions/retention.py
makes and drops the partitions), so each carries `decided_at` in its primary key, and none has a
foreign key: a foreign key between partitioned tables makes every dropped day a scan of the
referencing rows under a lock on the parent. The log writer (decisions/service.py) writes a
decision with its actions in one transaction, a response is written only for a decision it has
locked (decisions/log.py), and retention removes a day of all three together.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from decision_server.db import Base, BigId, Json, UtcDateTime

# By day of decided_at on PostgreSQL (migration 0015 builds it; SQLite keeps plain tables).
PARTITIONED = {"postgresql_partition_by": "RANGE (decided_at)"}


class DecisionRecord(Base):
    """One answer to one channel request, with everything needed to explain it later."""

    __tablename__ = "decisions"
    __table_args__ = (sa.Index("ix_decisions_external_id_decided_at", "external_id", "decided_at"), PARTITIONED)

    # Time-ordered random id made by the server (no round trip, unique across machines); its first
    # 12 hex digits are decided_at in milliseconds, so a lookup by id knows its day (partition).
    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    # The customer id the channel asked about; customer_id is None for a prospect.
    external_id: Mapped[str] = mapped_column(sa.String(64))
    customer_id: Mapped[int | None] = mapped_column(BigId)
    prospect: Mapped[bool] = mapped_column(sa.Boolean)
    channel: Mapped[str] = mapped_column(sa.String(32))
    decided_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, primary_key=True, index=True)
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
    __table_args__ = (sa.Index("ix_decision_actions_external_id_decided_at", "external_id", "decided_at"), PARTITIONED)

    decision_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    rank: Mapped[int] = mapped_column(sa.SmallInteger, primary_key=True)
    external_id: Mapped[str] = mapped_column(sa.String(64))
    offer_id: Mapped[int] = mapped_column(BigId)
    channel: Mapped[str] = mapped_column(sa.String(32))
    # The decision's decided_at: the partition key, the same day as the decision's.
    decided_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, primary_key=True)
    priority: Mapped[float] = mapped_column(sa.Float)
    # The model's propensity for this offer and the learning key it was counted under.
    propensity: Mapped[float] = mapped_column(sa.Float)
    learning_key: Mapped[str] = mapped_column(sa.String(32))


class DecisionResponseRecord(Base):
    """What the customer did with one action; the same response twice is one row (its key)."""

    __tablename__ = "decision_responses"
    __table_args__ = (sa.Index("ix_decision_responses_external_id_responded_at", "external_id", "responded_at"), PARTITIONED)

    decision_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    rank: Mapped[int] = mapped_column(sa.SmallInteger, primary_key=True)
    response: Mapped[str] = mapped_column(sa.String(16), primary_key=True)  # accepted, declined, ignored, clicked
    # The decision's decided_at: the partition key, so a response goes with its decision's day.
    decided_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, primary_key=True)
    external_id: Mapped[str] = mapped_column(sa.String(64))
    offer_id: Mapped[int] = mapped_column(BigId)
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


class OfferDayRecord(Base):
    """What the decision log held for one offer on one UTC day before retention removed that day.

    `actions` counts the actions decided that day, the response columns the responses made that
    day (to decisions removed since), so the offer statistics are the log plus these rows and do
    not change when old decisions go.
    """

    __tablename__ = "decision_offer_days"

    offer_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    day: Mapped[dt.date] = mapped_column(sa.Date, primary_key=True)
    actions: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    accepted: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    declined: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    ignored: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    clicked: Mapped[int] = mapped_column(sa.BigInteger, default=0)
