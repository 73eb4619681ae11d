"""Monthly activity buckets on the customer's state row, so real-time features need one read.

`customer_state.activity` holds the last twelve calendar months (UTC) up to the refresh:
    {"2026-11": {"n": 2, "s": 4500, "cat": {"device": 1}, "tp": 3, "ch": {"app": 2}, "k": {"app_open": 2}}}
n and s are purchases and spend in cents, net of refunds (refunds count in s, not in n or cat); tp touchpoints. Every category, channel and kind seen is
kept, not only the ones the feature set counts today, so a new feature needs no rebuild. Twelve
months up to the refresh cover every window as of any later moment, because windows end at the
moment of scoring and reach back at most twelve months.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from decision_server.customers.records import CustomerStateRecord
from decision_server.db import dialect_of, utcnow
from decision_server.features.definition import month_index, month_start
from decision_server.touchpoints.records import TouchpointRecord
from decision_server.transactions.records import TransactionRecord, purchase_count

KEEP_MONTHS = 12
_CHUNK = 900
_WRITE_BATCH = 5_000


def month_key_sql(column: Any, dialect: str) -> Any:
    """Return an SQL expression giving the 'YYYY-MM' UTC month of a timestamp column."""
    if dialect == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM")
    return sa.func.substr(column, 1, 7)  # SQLite keeps naive UTC text 'YYYY-MM-DD HH:MM:SS'


def refresh_activity(db: Session | Connection, customer_ids: Sequence[int] | None = None) -> None:
    """Rebuild the monthly buckets of `customer_ids` (all customers when None) from their events."""
    since = month_start(month_index(utcnow()) - KEEP_MONTHS + 1)
    st = CustomerStateRecord.__table__
    if customer_ids is None:
        db.execute(sa.update(st).values(activity=None))
        _write(db, _buckets(db, since, None))
        return
    ids = sorted(set(customer_ids))
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        db.execute(sa.update(st).where(st.c.customer_id.in_(chunk)).values(activity=None))
        _write(db, _buckets(db, since, chunk))


def _buckets(db: Session | Connection, since, ids: list[int] | None) -> dict[int, dict[str, dict[str, Any]]]:
    dialect = dialect_of(db)
    t, tp = TransactionRecord, TouchpointRecord
    month_t, month_tp = month_key_sql(t.occurred_at, dialect), month_key_sql(tp.occurred_at, dialect)
    purchases = (
        sa.select(t.customer_id, month_t, t.category, purchase_count(), sa.func.sum(t.amount_cents))
        .where(t.occurred_at >= since)
        .group_by(t.customer_id, month_t, t.category)
    )
    touches = (
        sa.select(tp.customer_id, month_tp, tp.channel, tp.kind, sa.func.count())
        .where(tp.occurred_at >= since)
        .group_by(tp.customer_id, month_tp, tp.channel, tp.kind)
    )
    if ids is not None:
        purchases = purchases.where(t.customer_id.in_(ids))
        touches = touches.where(tp.customer_id.in_(ids))
    out: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)

    def bucket(cid: int, month: str) -> dict[str, Any]:
        found = out[cid].get(month)
        if found is None:
            found = out[cid][month] = {"n": 0, "s": 0, "cat": {}, "tp": 0, "ch": {}, "k": {}}
        return found

    for cid, month, category, count, spend in db.execute(purchases):
        b = bucket(cid, month)
        b["n"] += int(count)
        b["s"] += int(spend or 0)
        if category is not None and count:
            b["cat"][category] = b["cat"].get(category, 0) + int(count)
    for cid, month, channel, kind, count in db.execute(touches):
        b = bucket(cid, month)
        b["tp"] += count
        b["ch"][channel] = b["ch"].get(channel, 0) + count
        b["k"][kind] = b["k"].get(kind, 0) + count
    return out


def _write(db: Session | Connection, buckets: dict[int, dict[str, dict[str, Any]]]) -> None:
    st = CustomerStateRecord.__table__
    statement = sa.update(st).where(st.c.customer_id == sa.bindparam("cid")).values(activity=sa.bindparam("activity"))
    rows = [{"cid": cid, "activity": months} for cid, months in buckets.items()]
    for start in range(0, len(rows), _WRITE_BATCH):
        db.execute(statement, rows[start : start + _WRITE_BATCH])
