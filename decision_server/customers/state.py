"""Recompute the customer state row from transactions and touchpoints, set-based, in one statement."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from decision_server.customers.records import CustomerRecord, CustomerStateRecord
from decision_server.db import upsert, utcnow
from decision_server.features.activity import refresh_activity
from decision_server.touchpoints.records import TouchpointRecord
from decision_server.transactions.records import TransactionRecord, first_purchase_at, last_purchase_at, purchase_count

_CHUNK = 900  # stays under SQLite's bound-parameter limit with room to spare


def refresh_state(db: Session | Connection, *, customer_ids: Sequence[int] | None = None) -> None:
    """Rebuild the state rows of `customer_ids` (all customers when None) from their events."""
    if customer_ids is None:
        db.execute(_upsert(db, None))
        refresh_activity(db)
        return
    ids = sorted(set(customer_ids))
    for start in range(0, len(ids), _CHUNK):
        db.execute(_upsert(db, ids[start : start + _CHUNK]))
    refresh_activity(db, ids)


def _upsert(db: Session | Connection, ids: list[int] | None):
    t, tp, c, st = TransactionRecord, TouchpointRecord, CustomerRecord, CustomerStateRecord
    spend = sa.select(
        t.customer_id.label("cid"),
        purchase_count().label("n"),
        sa.func.sum(t.amount_cents).label("spend"),  # net of refunds
        sa.func.sum(sa.func.coalesce(t.cost_cents, 0)).label("cost"),
        first_purchase_at().label("first_at"),
        last_purchase_at().label("last_at"),
    ).group_by(t.customer_id)
    touches = sa.select(
        tp.customer_id.label("cid"), sa.func.count().label("n"), sa.func.max(tp.occurred_at).label("last_at")
    ).group_by(tp.customer_id)
    if ids is not None:
        spend = spend.where(t.customer_id.in_(ids))
        touches = touches.where(tp.customer_id.in_(ids))
    spend_q, touch_q = spend.subquery("spend"), touches.subquery("touches")
    select = (
        sa.select(
            c.id,
            sa.func.coalesce(spend_q.c.n, 0),
            sa.func.coalesce(spend_q.c.spend, 0),
            sa.func.coalesce(spend_q.c.cost, 0),
            spend_q.c.first_at,
            spend_q.c.last_at,
            sa.func.coalesce(touch_q.c.n, 0),
            touch_q.c.last_at,
            sa.literal(utcnow(), st.updated_at.type),
        )
        .select_from(c)
        .outerjoin(spend_q, spend_q.c.cid == c.id)
        .outerjoin(touch_q, touch_q.c.cid == c.id)
        # SQLite needs a WHERE in INSERT ... SELECT ... ON CONFLICT to parse it unambiguously.
        .where(c.id.in_(ids) if ids is not None else sa.true())
    )
    columns = [
        "customer_id",
        "transaction_count",
        "total_spend_cents",
        "total_cost_cents",
        "first_purchase_at",
        "last_purchase_at",
        "touchpoint_count",
        "last_touchpoint_at",
        "updated_at",
    ]
    return (
        upsert(db, st.__table__)
        .from_select(columns, select)
        .on_conflict_do_update(
            index_elements=["customer_id"],
            set_={name: sa.literal_column(f"excluded.{name}") for name in columns[1:]},
        )
    )
