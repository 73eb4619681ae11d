"""Start the loyalty program on an existing customer base: demo rewards, members, their recent points."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from decision_server.db import Database, utcnow
from decision_server.loyalty import rewards
from decision_server.loyalty.records import MemberRecord, RewardRecord
from decision_server.loyalty.service import earn_for_purchases
from decision_server.transactions.records import TransactionRecord

DEMO_REWARDS = [
    {"code": "COFFEE", "name": "A coffee on us", "points_cost": 150, "description": "Any hot drink at a partner café."},
    {"code": "DATA_1GB", "name": "1 GB of extra data", "points_cost": 400, "description": "Added to this month's allowance."},
    {"code": "CINEMA", "name": "Cinema ticket", "points_cost": 1200, "stock": 500, "description": "One standard ticket."},
    {"code": "DEVICE_50", "name": "50 off a new device", "points_cost": 5000, "stock": 100},
    {
        "code": "LOUNGE",
        "name": "Airport lounge pass",
        "points_cost": 3000,
        "tiers": ["gold", "platinum"],
        "stock": 50,
        "description": "For gold and platinum members.",
    },
]


def load_demo_rewards(database: Database) -> int:
    """Add the demo rewards missing by code; return how many were added."""
    added = 0
    with database.connection(write=True) as conn:
        have = set(conn.execute(sa.select(RewardRecord.__table__.c.code)).scalars())
        for reward in DEMO_REWARDS:
            if reward["code"] not in have:
                rewards.create(conn, dict(reward))
                added += 1
    return added


def start_program(
    database: Database,
    revision: Any,
    *,
    days: int = 90,
    chunk: int = 500,
    now: dt.datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Enrol every customer who bought in the last `days` and earn those purchases, as the event path would have.

    Customers already members are left alone; each chunk of customers is one transaction.
    """
    now = now or utcnow()
    t, m = TransactionRecord.__table__, MemberRecord.__table__
    since = now - dt.timedelta(days=days)
    with database.connection() as conn:
        ids = (
            conn.execute(
                sa.select(t.c.customer_id)
                .where(t.c.occurred_at >= since, t.c.occurred_at <= now, t.c.amount_cents > 0)
                .where(~sa.exists().where(m.c.customer_id == t.c.customer_id))
                .group_by(t.c.customer_id)
                .order_by(t.c.customer_id)
            )
            .scalars()
            .all()
        )
    members = entries = 0
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        with database.connection(write=True) as conn:
            rows = [
                dict(r._mapping)
                for r in conn.execute(
                    sa.select(t)
                    .where(t.c.customer_id.in_(part), t.c.occurred_at >= since, t.c.occurred_at <= now)
                    .order_by(t.c.customer_id, t.c.occurred_at, t.c.id)
                )
            ]
            entries += len(earn_for_purchases(conn, rows, revision=revision, auto_enroll=True, now=now))
        members += len(part)
        if progress:
            progress(members, len(ids))
    return {"members": members, "entries": entries}
