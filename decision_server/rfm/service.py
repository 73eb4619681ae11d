"""RFM: recency, frequency and monetary scores 1-5 by quintiles of the whole base, and a segment.

Definition (as of a moment T; only purchases at or before T count):
- The base is every customer with at least one purchase by T ("buyers"). Customers who never
  bought get no scores and no segment: a quintile of "no purchase" would only say they never
  bought, and would push real buyers up a score.
- Values: recency is the time of the last purchase (later is better), frequency the number of
  purchases, monetary the total spend in cents net of refunds (a refund is a transaction with a
  negative amount; it counts in monetary, not in frequency or recency).
- Score: with N buyers and L the number of buyers whose value is strictly worse, the score is
  1 + floor(5 L / N). Equal values always get equal scores: ties are never broken by customer id
  or any other order, so a tie group sits wholly in one score (with many one-time buyers, f = 1
  can hold more than a fifth of the base, and no one may score 2).
- The same rule as cut points: c_k is the ceil(k N / 5)-th smallest value (k = 1..4), and a value
  scores 1 + the number of cut points it is strictly above. A run stores its cut points; between
  runs a single customer's new values are placed against them (the event path), which gives
  exactly the run's score for the same values.
- Segment: the `rfm` rule set in rules/ names it from (r, f, m); the business edits that file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from decision_server.customers.records import CustomerStateRecord
from decision_server.customers.service import get_customer
from decision_server.rfm.records import RfmRunRecord
from decision_server.rulebook.requirements import missing
from decision_server.transactions.records import (
    TransactionRecord,
    last_purchase_at,
    purchase_count,
)
from decision_server.validation import cents_to_decimal

SCORES = 5
MEASURES = ("recency", "frequency", "monetary")
_WRITE_BATCH = 5_000
_runs = RfmRunRecord.__table__
_st = CustomerStateRecord.__table__


def cut_points(values: np.ndarray) -> list[float]:
    """Return the four cut points of the quintile scores of `values` (at least one value)."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    n = len(ordered)
    return [float(ordered[math.ceil(k * n / SCORES) - 1]) for k in range(1, SCORES)]


def place(values: np.ndarray, cuts: list[float]) -> np.ndarray:
    """Score values 1-5 against cut points: 1 + how many cut points each is strictly above."""
    values = np.asarray(values, dtype=np.float64)
    return 1 + (values[:, None] > np.asarray(cuts)[None, :]).sum(axis=1)


def place_one(value: float, cuts: list[float]) -> int:
    """Score one value 1-5 against cut points (the event path)."""
    return 1 + sum(value > c for c in cuts)


@dataclasses.dataclass
class Buyers:
    """Every buyer's RFM values as of a moment, rows in customer id order."""

    ids: np.ndarray
    last_purchase_at: np.ndarray  # epoch seconds
    purchases: np.ndarray
    spend_cents: np.ndarray


def read_buyers(conn: Connection, as_of: dt.datetime) -> Buyers:
    """Read every buyer's last purchase time, purchase count and spend as of `as_of` (one query)."""
    t = TransactionRecord
    rows = conn.execute(
        sa.select(t.customer_id, last_purchase_at(), purchase_count(), sa.func.sum(t.amount_cents))
        .where(t.occurred_at <= as_of)
        .group_by(t.customer_id)
        .having(purchase_count() > 0)
        .order_by(t.customer_id)
    ).all()
    n = len(rows)
    out = Buyers(np.empty(n, np.int64), np.empty(n), np.empty(n), np.empty(n))
    for i, (cid, last, count, spend) in enumerate(rows):
        out.ids[i], out.last_purchase_at[i], out.purchases[i], out.spend_cents[i] = cid, last.timestamp(), int(count), int(spend)
    return out


def segment_names(revision: Any, r: np.ndarray, f: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Name each buyer's segment with the `rfm` rule set (vectorized backend)."""
    return revision.outcome_columns("rfm", {"r": r, "f": f, "m": m}, ("rfm_segment",))["rfm_segment"]


@dataclasses.dataclass
class RfmRun:
    """What a run computed and stored."""

    id: int
    as_of: dt.datetime
    buyers: int
    cuts: dict[str, list[float]]
    segments: dict[str, int]
    seconds: float


def latest_run(conn: Connection) -> RfmRunRecord | None:
    """Return the newest RFM run (its cut points place single customers), or None before the first."""
    return conn.execute(sa.select(_runs).order_by(_runs.c.id.desc()).limit(1)).first()


def score_customer(
    last_purchase_at: dt.datetime | None, purchases: int, spend_cents: int, run: Any, revision: Any
) -> dict[str, Any] | None:
    """Place one customer's values against a run's cut points; None when they never bought."""
    if not purchases or last_purchase_at is None or run is None or not run.cuts["recency"] or missing(revision, "rfm"):
        return None
    r = place_one(last_purchase_at.timestamp(), run.cuts["recency"])
    f = place_one(purchases, run.cuts["frequency"])
    m = place_one(spend_cents, run.cuts["monetary"])
    outcome = revision.evaluate("rfm", {"r": r, "f": f, "m": m}, backend="python")
    return {"r": r, "f": f, "m": m, "segment": outcome.outcome["rfm_segment"], "run_id": run.id}


def get_run(session: Session, run_id: int) -> Any:
    """Return one stored RFM run's row."""
    return session.execute(sa.select(_runs).where(_runs.c.id == run_id)).one()._mapping


def list_runs(session: Session, *, limit: int, before_id: int | None = None) -> list[dict[str, Any]]:
    """Return up to `limit` RFM runs, newest first (before `before_id`), with their cut points and segment counts."""
    select = sa.select(_runs).order_by(_runs.c.id.desc()).limit(limit)
    if before_id is not None:
        select = select.where(_runs.c.id < before_id)
    return [dict(r._mapping) for r in session.execute(select)]


def statistics(session: Session) -> dict[str, Any]:
    """Return the newest run and, per RFM segment now: customers, share, average scores, purchases and spend."""
    run = latest_run(session.connection())
    rows = session.execute(
        sa.select(
            _st.c.rfm_segment,
            sa.func.count(),
            sa.func.avg(_st.c.rfm_r),
            sa.func.avg(_st.c.rfm_f),
            sa.func.avg(_st.c.rfm_m),
            sa.func.avg(_st.c.transaction_count),
            sa.func.avg(_st.c.total_spend_cents),
        )
        .where(_st.c.rfm_segment.is_not(None))
        .group_by(_st.c.rfm_segment)
    ).all()
    total = sum(r[1] for r in rows) or 1
    segments = [
        {
            "segment": s,
            "customers": n,
            "share": round(n / total, 4),
            "avg_r": round(float(r), 2),
            "avg_f": round(float(f), 2),
            "avg_m": round(float(m), 2),
            "avg_purchases": round(float(p), 2),
            "avg_spend": str(cents_to_decimal(round(float(c)))),
        }
        for s, n, r, f, m, p, c in sorted(rows, key=lambda r: -r[1])
    ]
    return {"run": run._mapping if run else None, "segments": segments}


def customer_rfm(session: Session, *, external_id: str, revision: Any, now: dt.datetime) -> dict[str, Any]:
    """Return a customer's RFM values now and their scores against the newest run's cut points."""
    state = get_customer(session, external_id=external_id)["state"]
    run = latest_run(session.connection())
    placed = score_customer(state["last_purchase_at"], state["transaction_count"], state["total_spend_cents"], run, revision)
    last = state["last_purchase_at"]
    return {
        "customer_id": external_id,
        "as_of": now,
        "recency_days": None if last is None else round((now - last).total_seconds() / 86_400, 2),
        "frequency": state["transaction_count"],
        "monetary": str(cents_to_decimal(state["total_spend_cents"])),
        "scores": None if placed is None else {k: placed[k] for k in ("r", "f", "m", "segment")},
        "run": None if run is None else {"id": run.id, "as_of": run.as_of.isoformat()},
    }


GRID_MEASURES = ("customers", "revenue")


def grid(session: Session, *, measure: str) -> dict[str, Any]:
    """Return the R×F grid now: per (r, f) cell the buyers in it or their revenue (spend net of refunds), in one GROUP BY.

    Cells come from the state rows (the scores the newest run or the event path gave); at most 25.
    """
    if measure not in GRID_MEASURES:
        raise ValueError(f"measure must be one of {GRID_MEASURES}")
    value = sa.func.count() if measure == "customers" else sa.func.coalesce(sa.func.sum(_st.c.total_spend_cents), 0)
    rows = session.execute(
        sa.select(_st.c.rfm_r, _st.c.rfm_f, value)
        .where(_st.c.rfm_r.is_not(None), _st.c.rfm_f.is_not(None))
        .group_by(_st.c.rfm_r, _st.c.rfm_f)
        .order_by(_st.c.rfm_r.desc(), _st.c.rfm_f)
    ).all()
    shown = (lambda v: int(v)) if measure == "customers" else (lambda v: str(cents_to_decimal(int(v))))
    cells = [{"r": int(r), "f": int(f), "value": shown(v)} for r, f, v in rows]
    total = sum(int(v) for _, _, v in rows)
    run = latest_run(session.connection())
    return {
        "measure": measure,
        "run": None if run is None else {"id": run.id, "as_of": run.as_of},
        "total": shown(total),
        "cells": cells,
    }


def moves(session: Session) -> dict[str, Any]:
    """Return how buyers moved between RFM segments in the newest run that recorded it, with the run before it.

    A run counts, as it scores, each customer's segment just before it ("from": the previous
    run's, as purchases since moved it) and after it ("to"); "none" is no segment. Nothing is
    recomputed here: the counts are the run's (rfm_runs.moves).
    """
    run = session.execute(sa.select(_runs).where(_runs.c.moves.is_not(None)).order_by(_runs.c.id.desc()).limit(1)).first()
    if run is None:
        return {"run": None, "previous": None, "moves": []}
    previous = session.execute(sa.select(_runs).where(_runs.c.id < run.id).order_by(_runs.c.id.desc()).limit(1)).first()
    rows = [
        {"from": a, "to": b, "customers": int(n), "moved": a != b}
        for a, targets in (run.moves or {}).items()
        for b, n in targets.items()
    ]
    rows.sort(key=lambda m: (-m["customers"], m["from"], m["to"]))
    return {
        "run": {"id": run.id, "as_of": run.as_of},
        "previous": None if previous is None else {"id": previous.id, "as_of": previous.as_of},
        "moves": rows,
    }
