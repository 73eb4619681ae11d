"""Bulk features and training labels: set-based SQL over the event tables, as of any moment.

Everything here reads events with `occurred_at <= as_of` only, so features as of a past cut-off
never see what happened after it (point-in-time correct), and labels read only the window after
the cut-off. Customers are streamed in chunks of ids, each chunk one statement per event table.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from decision_server import fastsql
from decision_server.customers.records import CustomerRecord
from decision_server.features.definition import (
    AGGREGATES,
    CATEGORIES,
    ENGAGED_KINDS,
    TOUCH_CHANNELS,
    TOUCH_KINDS,
    Windows,
    matrix,
)
from decision_server.touchpoints.records import TouchpointRecord
from decision_server.transactions.records import (
    IS_PURCHASE,
    TransactionRecord,
)

CHUNK = 50_000


@dataclasses.dataclass
class FeatureChunk:
    """Features of a chunk of customers, rows in customer id order."""

    ids: np.ndarray  # int64 customer ids
    aggregates: dict[str, np.ndarray]
    values: np.ndarray  # float32 (rows, n_features)


def _count_if(condition) -> sa.ColumnElement:
    # FILTER (WHERE ...) rather than sum(CASE ...): the aggregate skips rows instead of evaluating
    # a CASE per row and column (SQLite >= 3.30 and PostgreSQL both have it; 1.6x on the purchase query).
    return sa.func.count().filter(condition)


def _sum_if(condition, value) -> sa.ColumnElement:
    return sa.func.sum(value).filter(condition)


def _purchase_query(w: Windows, ids: np.ndarray):
    t = TransactionRecord
    occ = t.occurred_at
    in3, in12 = occ >= w.start_3m, occ >= w.start_12m
    prev3 = sa.and_(occ >= w.start_prev_3m, occ < w.start_3m)
    bought = IS_PURCHASE  # counts read purchases; spend is net of refunds
    return (
        sa.select(
            t.customer_id,
            _count_if(bought).label("purchases"),
            sa.func.sum(t.amount_cents).label("spend"),
            sa.func.sum(t.cost_cents).label("cost"),
            sa.func.sum(t.amount_cents).filter(t.cost_cents.is_(None)).label("uncosted"),
            sa.func.min(occ).filter(bought).label("first_purchase_at"),
            sa.func.max(occ).filter(bought).label("last_purchase_at"),
            _count_if(sa.and_(in3, bought)).label("purchases_3m"),
            _sum_if(in3, t.amount_cents).label("spend_3m"),
            _count_if(sa.and_(prev3, bought)).label("purchases_prev_3m"),
            _sum_if(prev3, t.amount_cents).label("spend_prev_3m"),
            _count_if(sa.and_(in12, bought)).label("purchases_12m"),
            _sum_if(in12, t.amount_cents).label("spend_12m"),
            # The equality first: it fails fast for most rows (SQLite evaluates AND left to right).
            *(_count_if(sa.and_(t.category == c, in12, bought)).label(f"category_{c}_12m") for c in CATEGORIES),
        )
        .where(of(t.customer_id, ids), occ <= w.as_of)
        .group_by(t.customer_id)
    )


def _touch_query(w: Windows, ids: np.ndarray):
    tp = TouchpointRecord
    occ = tp.occurred_at
    in3 = occ >= w.start_3m
    return (
        sa.select(
            tp.customer_id,
            _count_if(in3).label("touchpoints_3m"),
            _count_if(occ >= w.start_12m).label("touchpoints_12m"),
            sa.func.max(occ).label("last_touchpoint_at"),
            *(_count_if(sa.and_(tp.channel == c, in3)).label(f"channel_{c}_3m") for c in TOUCH_CHANNELS),
            *(_count_if(sa.and_(tp.kind == k, in3)).label(f"kind_{k}_3m") for k in TOUCH_KINDS),
        )
        .where(of(tp.customer_id, ids), occ <= w.as_of)
        .group_by(tp.customer_id)
    )


_MONEY = {"spend", "cost", "uncosted", "spend_3m", "spend_prev_3m", "spend_12m"}
_CENTS = tuple(f"{m}_cents" for m in sorted(_MONEY))
_TIMES = {"first_purchase_at", "last_purchase_at", "last_touchpoint_at"}


def of(column: Any, ids: np.ndarray) -> Any:
    """The condition "column is one of `ids`" (sorted): their range when they fill half of it or
    more (a chunk of the whole base), else the ids themselves too, so a sparse chunk (a segment's
    members) reads its customers only, not everyone between its first and last."""
    lo, hi = int(ids[0]), int(ids[-1])
    if len(ids) * 2 >= hi - lo + 1:
        return column.between(lo, hi)
    return column.in_([int(i) for i in ids])  # alone: with the range too, SQLite scans the range


def customer_ids(conn: Connection, as_of: dt.datetime, *, chunk: int = CHUNK, after: int = 0) -> Iterator[np.ndarray]:
    """Yield the ids (above `after`) of customers who existed at `as_of`, in id order, `chunk` at a time."""
    c = CustomerRecord
    while True:
        rows = (
            conn.execute(sa.select(c.id).where(c.id > after, c.created_at <= as_of).order_by(c.id).limit(chunk)).scalars().all()
        )
        if not rows:
            return
        yield np.array(rows, dtype=np.int64)
        after = rows[-1]


def features(conn: Connection, ids: np.ndarray, as_of: dt.datetime) -> FeatureChunk:
    """Compute the features of customers `ids` (sorted, existing at as_of) as of `as_of`.

    Besides AGGREGATES, `aggregates` holds `spend_cents`, `cost_cents` (known costs) and
    `uncosted_cents` (amounts sent without a cost) as exact int64 cents, for CLV.
    """
    w = Windows.at(as_of)
    n = len(ids)
    agg: dict[str, np.ndarray] = {name: np.zeros(n) for name in AGGREGATES}
    for name in _TIMES:
        agg[name] = np.full(n, np.nan)
    for name in _CENTS:
        agg[name] = np.zeros(n, dtype=np.int64)
    since = sa.select(CustomerRecord.id, CustomerRecord.created_at.label("customer_since")).where(of(CustomerRecord.id, ids))
    for query in (since, _purchase_query(w, ids), _touch_query(w, ids)):
        # Raw rows: SQLAlchemy's per-value result processing (timestamps) costs a third of a
        # chunk's time, and `_scatter` converts whole columns at once.
        _scatter(agg, ids, [c.name for c in query.selected_columns][1:], fastsql.raw_rows(conn, query))
    for name in _CENTS:
        source = name.removesuffix("_cents")
        if source in agg:
            agg[source] = agg[name] / 100.0
    return FeatureChunk(ids, agg, matrix(agg, as_of.timestamp()))


_EPOCH = np.datetime64("1970-01-01T00:00:00", "us")


def epochs(values: tuple) -> np.ndarray:
    """Epoch seconds of raw timestamps (SQLite's naive UTC text or aware datetimes), NaN for NULL.

    Whole microseconds / 1e6, as datetime.timestamp() computes it, so both paths agree to the bit.
    """
    if any(isinstance(v, str) for v in values):
        moments = np.array(values, dtype="datetime64[us]")
        with np.errstate(invalid="ignore"):
            return np.where(np.isnat(moments), np.nan, (moments - _EPOCH).astype(np.int64) / 1e6)
    return np.array([math.nan if v is None else v.timestamp() for v in values], dtype=np.float64)


def _scatter(agg: dict[str, np.ndarray], ids: np.ndarray, names: list[str], rows: list) -> None:
    """Put the rows' columns (customer id first) at their customers' positions in `agg`."""
    if not rows:
        return
    columns = list(zip(*rows, strict=True))
    found = np.fromiter(columns[0], dtype=np.int64, count=len(rows))
    where = np.searchsorted(ids, found)
    keep = (where < len(ids)) & (ids[np.minimum(where, len(ids) - 1)] == found)
    where = where[keep]
    for name, values in zip(names, columns[1:], strict=True):
        if name in _TIMES or name == "customer_since":
            agg[name][where] = epochs(values)[keep]
        elif name in _MONEY:  # exact cents (below 2**53); PostgreSQL sums bigints as NUMERIC
            agg[f"{name}_cents"][where] = np.nan_to_num(np.array(values, dtype=np.float64)).astype(np.int64)[keep]
        else:
            agg[name][where] = np.nan_to_num(np.array(values, dtype=np.float64))[keep]


def all_features(conn: Connection, as_of: dt.datetime, *, chunk: int = CHUNK) -> Iterator[FeatureChunk]:
    """Yield the features of every customer who existed at `as_of`, chunk by chunk."""
    for ids in customer_ids(conn, as_of, chunk=chunk):
        yield features(conn, ids, as_of)


@dataclasses.dataclass
class Labels:
    """What happened in the windows after a cut-off, per customer (rows aligned to `ids`)."""

    ids: np.ndarray
    purchases_30d: np.ndarray
    purchases_90d: np.ndarray
    spend_365d: np.ndarray  # currency units
    engaged_30d: np.ndarray  # 1 when the customer bought or started a touchpoint in 30 days
    next_category: np.ndarray  # object: the category bought most in 90 days (None when none)


def labels(conn: Connection, ids: np.ndarray, cutoff: dt.datetime) -> Labels:
    """Return the outcomes of customers `ids` in the windows after `cutoff` (never before it)."""
    t, tp = TransactionRecord, TouchpointRecord
    lo, hi = int(ids[0]), int(ids[-1])
    d30, d90, d365 = (cutoff + dt.timedelta(days=d) for d in (30, 90, 365))
    position = {int(cid): i for i, cid in enumerate(ids)}
    n = len(ids)
    out = Labels(ids, np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n), np.full(n, None, dtype=object))
    after = sa.and_(t.customer_id.between(lo, hi), t.occurred_at > cutoff)
    purchases = (
        sa.select(
            t.customer_id,
            _count_if(sa.and_(t.occurred_at <= d30, IS_PURCHASE)),
            _count_if(sa.and_(t.occurred_at <= d90, IS_PURCHASE)),
            _sum_if(t.occurred_at <= d365, t.amount_cents),
        )
        .where(after, t.occurred_at <= d365)
        .group_by(t.customer_id)
    )
    for cid, n30, n90, spend in conn.execute(purchases):
        i = position.get(cid)
        if i is not None:
            out.purchases_30d[i], out.purchases_90d[i] = int(n30), int(n90)
            out.spend_365d[i] = int(spend or 0) / 100.0
    by_category = (
        sa.select(t.customer_id, t.category, sa.func.count())
        .where(after, t.occurred_at <= d90, t.category.is_not(None), IS_PURCHASE)
        .group_by(t.customer_id, t.category)
    )
    best: dict[int, tuple[int, int]] = {}
    rank = {c: r for r, c in enumerate(CATEGORIES)}
    for cid, category, count in conn.execute(by_category):
        if category not in rank:
            continue
        # Most purchases wins; a tie goes to the category listed first (a fixed, documented order).
        key = (count, -rank[category])
        if cid not in best or key > best[cid]:
            best[cid] = key
    for cid, (_count, negative_rank) in best.items():
        i = position.get(cid)
        if i is not None:
            out.next_category[i] = CATEGORIES[-negative_rank]
    engaged = (
        sa.select(tp.customer_id)
        .where(tp.customer_id.between(lo, hi), tp.occurred_at > cutoff, tp.occurred_at <= d30, tp.kind.in_(ENGAGED_KINDS))
        .group_by(tp.customer_id)
    )
    for (cid,) in conn.execute(engaged):
        i = position.get(cid)
        if i is not None:
            out.engaged_30d[i] = 1.0
    out.engaged_30d = np.maximum(out.engaged_30d, (out.purchases_30d > 0).astype(float))
    return out


def data_span(conn: Connection) -> tuple[dt.datetime, dt.datetime] | None:
    """Return the first and last purchase times in the database (None when there are none)."""
    t = TransactionRecord
    first, last = conn.execute(sa.select(sa.func.min(t.occurred_at), sa.func.max(t.occurred_at))).one()
    if first is None:
        return None
    return first, last
