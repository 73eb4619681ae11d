"""Customer lifetime value: historical (from purchases, exact, in cents) and predicted (LTV model).

Historical, as of a moment T (only transactions at or before T count):
- revenue: the sum of amounts, net of refunds (transactions with a negative amount).
- cost: the sum of the costs the transactions carry, plus, for purchases sent without a cost,
  their amounts × (1 - margin), rounded half up to the cent once per customer (not per purchase,
  so many small purchases do not gather rounding error). margin is DEFAULT_MARGIN (default 0.30).
- profit: revenue - cost.
- orders: the number of purchases (refunds are not orders); average order value: revenue / orders,
  half up to the cent.
- tenure_days: whole days from becoming a customer to T; lifespan_days: whole days from the
  first to the last purchase.
- purchase_frequency: orders per 30 days of tenure (tenure counted as at least one day).
Predicted: the `ltv` model's spend in the next 12 months, or its fallback rule when the model
cannot serve; the result says which.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from decision_server.customers.records import CustomerRecord
from decision_server.features import online
from decision_server.transactions.records import (
    TransactionRecord,
    first_purchase_at,
    last_purchase_at,
    purchase_count,
)
from decision_server.validation import cents_to_decimal

DAY = 86_400
CENT = Decimal(1)


@dataclasses.dataclass(frozen=True)
class HistoricalClv:
    """One customer's historical value as of a moment; money in integer cents."""

    customer_id: int
    external_id: str
    as_of: dt.datetime
    revenue_cents: int
    cost_cents: int
    profit_cents: int
    cost_estimated_cents: int  # the part of cost that came from the margin, not the transactions
    orders: int
    average_order_cents: int
    first_purchase_at: dt.datetime | None
    last_purchase_at: dt.datetime | None
    tenure_days: int
    lifespan_days: int
    purchase_frequency: float  # orders per 30 days of tenure


def _query(as_of: dt.datetime, customer_ids: list[int] | None = None):
    """The CLV aggregate per customer; with `customer_ids` the grouped subquery reads only theirs.

    SQLite does not push the outer filter into the GROUP BY, so one customer's CLV would
    otherwise group every purchase of the base (120 ms on the 10k demo; now under 1 ms).
    """
    t, c = TransactionRecord, CustomerRecord
    known = sa.func.sum(sa.func.coalesce(t.cost_cents, 0))
    missing = sa.func.sum(sa.case((t.cost_cents.is_(None), t.amount_cents), else_=0))
    per = (
        sa.select(
            t.customer_id.label("cid"),
            sa.func.sum(t.amount_cents).label("revenue"),
            known.label("known_cost"),
            missing.label("uncosted"),
            purchase_count().label("orders"),
            first_purchase_at().label("first_at"),
            last_purchase_at().label("last_at"),
        )
        .where(t.occurred_at <= as_of, *([t.customer_id.in_(customer_ids)] if customer_ids is not None else []))
        .group_by(t.customer_id)
        .subquery()
    )
    return (
        sa.select(
            c.id,
            c.external_id,
            c.created_at,
            per.c.revenue,
            per.c.known_cost,
            per.c.uncosted,
            per.c.orders,
            per.c.first_at,
            per.c.last_at,
        )
        .select_from(c)
        .outerjoin(per, per.c.cid == c.id)
        .where(c.created_at <= as_of)
        .order_by(c.id)
    )


def historical(
    conn: Connection,
    *,
    as_of: dt.datetime,
    margin: Decimal,
    customer_ids: list[int] | None = None,
    after_id: int = 0,
    limit: int | None = None,
) -> list[HistoricalClv]:
    """Return historical CLV of customers (all who existed at as_of, or `customer_ids`), in id order."""
    query = _query(as_of, customer_ids).where(CustomerRecord.id > after_id)
    if customer_ids is not None:
        query = query.where(CustomerRecord.id.in_(customer_ids))
    if limit is not None:
        query = query.limit(limit)
    return [_row(row, as_of, margin) for row in conn.execute(query)]


def _row(row: Any, as_of: dt.datetime, margin: Decimal) -> HistoricalClv:
    cid, external_id, created, revenue, known, uncosted, orders, first_at, last_at = row
    revenue, known, uncosted, orders = int(revenue or 0), int(known or 0), int(uncosted or 0), int(orders or 0)
    estimated = int((Decimal(uncosted) * (1 - margin)).quantize(CENT, rounding=ROUND_HALF_UP))
    cost = known + estimated
    tenure = max(int((as_of - created).total_seconds() // DAY), 0)
    lifespan = int((last_at - first_at).total_seconds() // DAY) if orders else 0
    average = int((Decimal(revenue) / orders).quantize(CENT, rounding=ROUND_HALF_UP)) if orders else 0
    return HistoricalClv(
        customer_id=cid,
        external_id=external_id,
        as_of=as_of,
        revenue_cents=revenue,
        cost_cents=cost,
        profit_cents=revenue - cost,
        cost_estimated_cents=estimated,
        orders=orders,
        average_order_cents=average,
        first_purchase_at=first_at,
        last_purchase_at=last_at,
        tenure_days=tenure,
        lifespan_days=lifespan,
        purchase_frequency=orders * 30 / max(tenure, 1),
    )


def _half_up(numerator: np.ndarray, denominator: Any) -> np.ndarray:
    """Round numerator / denominator (> 0) half away from zero, as Decimal's ROUND_HALF_UP, exactly in int64."""
    return np.sign(numerator) * ((2 * np.abs(numerator) + denominator) // (2 * denominator))


def columns(agg: dict[str, np.ndarray], as_of: dt.datetime, margin: Decimal) -> dict[str, np.ndarray]:
    """Historical CLV of many customers from bulk aggregates (features/bulk.py), exactly as `historical`.

    Money stays in int64 cents and rounds as the one-customer path does, so every figure equals
    `historical`'s for the same customer (tested).
    """
    keep_num, keep_den = (1 - margin).as_integer_ratio()
    revenue, known, uncosted = agg["spend_cents"], agg["cost_cents"], agg["uncosted_cents"]
    orders = agg["purchases"].astype(np.int64)
    estimated = _half_up(uncosted * keep_num, keep_den)
    cost = known + estimated
    tenure = np.maximum(np.floor((as_of.timestamp() - agg["customer_since"]) / DAY), 0).astype(np.int64)
    bought = orders > 0
    lifespan = np.zeros(len(orders), dtype=np.int64)
    lifespan[bought] = np.floor((agg["last_purchase_at"][bought] - agg["first_purchase_at"][bought]) / DAY)
    average = np.zeros(len(orders), dtype=np.int64)
    average[bought] = _half_up(revenue[bought], orders[bought])
    return {
        "revenue_cents": revenue,
        "cost_cents": cost,
        "profit_cents": revenue - cost,
        "cost_estimated_cents": estimated,
        "orders": orders,
        "average_order_cents": average,
        "tenure_days": tenure,
        "lifespan_days": lifespan,
        "purchase_frequency": orders * 30 / np.maximum(tenure, 1),
    }


def money(values: dict[str, Any]) -> dict[str, Any]:
    """Return CLV figures as the API shows them: cents as decimal strings without the suffix, times in ISO 8601."""
    out = {}
    for key, value in values.items():
        if key in ("customer_id", "external_id", "as_of"):
            continue
        if key.endswith("_cents"):
            out[key[: -len("_cents")]] = str(cents_to_decimal(value))
        elif hasattr(value, "isoformat"):
            out[key] = value.isoformat()
        else:
            out[key] = value
    return out


def predicted(scores: Any) -> dict[str, Any]:
    """Return the predicted part of CLV from a customer's model scores: ltv_12m and which model gave it."""
    return {"ltv_12m": round(scores.values["ltv"], 2), "model": scores.models["ltv"]}


def customer_clv(
    session: Session, *, customer_id: int, external_id: str, as_of: dt.datetime, now: dt.datetime, margin: Decimal, models: Any
) -> dict[str, Any]:
    """Return one customer's CLV: historical as of `as_of`, predicted from their features `now`."""
    conn = session.connection()
    found = historical(conn, as_of=as_of, margin=margin, customer_ids=[customer_id])
    features = online.read(conn, customer_id=customer_id, as_of=now)
    scores = models.score(features.values)
    return {
        "customer_id": external_id,
        "as_of": as_of,
        "historical": money(found[0].__dict__) if found else None,
        "predicted": predicted(scores),
    }


def page(session: Session, *, as_of: dt.datetime, margin: Decimal, after_id: int, limit: int) -> list[dict[str, Any]]:
    """Return historical CLV of up to `limit` customers after `after_id`, in id order (`cid` carries the position)."""
    rows = historical(session.connection(), as_of=as_of, margin=margin, after_id=after_id, limit=limit)
    return [{"customer_id": h.external_id, **money(h.__dict__), "cid": h.customer_id} for h in rows]


def statistics(session: Session, *, as_of: dt.datetime, margin: Decimal) -> dict[str, Any]:
    """Return totals over the base (revenue, cost, profit) and how revenue per buyer spreads."""
    rows = historical(session.connection(), as_of=as_of, margin=margin)
    revenue = np.array([h.revenue_cents for h in rows if h.orders], dtype=np.int64)
    spread = {}
    if len(revenue):
        spread = {"mean": str(cents_to_decimal(round(float(revenue.mean()))))}
        spread.update({f"p{p}": str(cents_to_decimal(int(np.percentile(revenue, p, method="lower")))) for p in (50, 90, 99)})
    return {
        "as_of": as_of,
        "customers": len(rows),
        "buyers": len(revenue),
        "revenue": str(cents_to_decimal(sum(h.revenue_cents for h in rows))),
        "cost": str(cents_to_decimal(sum(h.cost_cents for h in rows))),
        "profit": str(cents_to_decimal(sum(h.profit_cents for h in rows))),
        "revenue_per_buyer": spread,
    }
