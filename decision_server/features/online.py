"""Real-time features: one indexed read of the customer and state rows, no ORM objects."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from decision_server.customers.records import CustomerRecord, CustomerStateRecord
from decision_server.features.definition import (
    AGGREGATES,
    CATEGORIES,
    TOUCH_CHANNELS,
    TOUCH_KINDS,
    Windows,
    epoch,
    month_key,
    vector,
)

_c, _s = CustomerRecord.__table__, CustomerStateRecord.__table__
_READ = sa.select(
    _c.c.id,
    _c.c.external_id,
    _c.c.created_at,
    _s.c.transaction_count,
    _s.c.total_spend_cents,
    _s.c.total_cost_cents,
    _s.c.first_purchase_at,
    _s.c.last_purchase_at,
    _s.c.last_touchpoint_at,
    _s.c.activity,
).select_from(_c.outerjoin(_s, _s.c.customer_id == _c.c.id))
READ_BY_EXTERNAL_ID = _READ.where(_c.c.external_id == sa.bindparam("external_id"))
READ_BY_ID = _READ.where(_c.c.id == sa.bindparam("id"))


@dataclasses.dataclass(frozen=True)
class CustomerFeatures:
    """A customer's features as of a moment, with the aggregates they came from."""

    customer_id: int
    external_id: str
    as_of: dt.datetime
    aggregates: dict[str, float]
    values: np.ndarray  # float32, shape (1, n_features)


def read(
    conn: Connection, *, external_id: str | None = None, customer_id: int | None = None, as_of: dt.datetime
) -> CustomerFeatures | None:
    """Return a customer's features as of `as_of` from their state row; None if unknown."""
    if external_id is not None:
        row = conn.execute(READ_BY_EXTERNAL_ID, {"external_id": external_id}).first()
    else:
        row = conn.execute(READ_BY_ID, {"id": customer_id}).first()
    if row is None:
        return None
    return from_row(row._mapping, as_of)


def from_row(row: Any, as_of: dt.datetime) -> CustomerFeatures:
    """Compute features from a customer + state row (the columns of READ_BY_ID)."""
    agg = aggregates(row, Windows.at(as_of))
    stamp = as_of.timestamp()
    return CustomerFeatures(row["id"], row["external_id"], as_of, agg, vector(agg, stamp))


def aggregates(row: Any, windows: Windows) -> dict[str, float]:
    """Return the aggregates of FEATURES' definition from a state row and its monthly buckets."""
    activity = row["activity"] or {}
    buckets = {w: [activity.get(month_key(m)) for m in windows.months(w)] for w in ("3m", "prev_3m", "12m")}
    b3 = [b for b in buckets["3m"] if b]
    bp3 = [b for b in buckets["prev_3m"] if b]
    b12 = [b for b in buckets["12m"] if b]
    agg: dict[str, float] = {
        "customer_since": epoch(row["created_at"]),
        "purchases": float(row["transaction_count"] or 0),
        "spend": (row["total_spend_cents"] or 0) / 100.0,
        "cost": (row["total_cost_cents"] or 0) / 100.0,
        "first_purchase_at": epoch(row["first_purchase_at"]),
        "last_purchase_at": epoch(row["last_purchase_at"]),
        "purchases_3m": float(sum(b["n"] for b in b3)),
        "spend_3m": sum(b["s"] for b in b3) / 100.0,
        "purchases_prev_3m": float(sum(b["n"] for b in bp3)),
        "spend_prev_3m": sum(b["s"] for b in bp3) / 100.0,
        "purchases_12m": float(sum(b["n"] for b in b12)),
        "spend_12m": sum(b["s"] for b in b12) / 100.0,
        "touchpoints_3m": float(sum(b["tp"] for b in b3)),
        "touchpoints_12m": float(sum(b["tp"] for b in b12)),
        "last_touchpoint_at": epoch(row["last_touchpoint_at"]),
    }
    for c in CATEGORIES:
        agg[f"category_{c}_12m"] = float(sum(b["cat"].get(c, 0) for b in b12))
    for c in TOUCH_CHANNELS:
        agg[f"channel_{c}_3m"] = float(sum(b["ch"].get(c, 0) for b in b3))
    for k in TOUCH_KINDS:
        agg[f"kind_{k}_3m"] = float(sum(b["k"].get(k, 0) for b in b3))
    return agg


def prospect(as_of: dt.datetime) -> np.ndarray:
    """Features of someone we know nothing about (an unknown customer id): a new prospect."""
    agg = {name: 0.0 for name in AGGREGATES}
    agg.update(
        customer_since=as_of.timestamp(), first_purchase_at=math.nan, last_purchase_at=math.nan, last_touchpoint_at=math.nan
    )
    return vector(agg, as_of.timestamp())
