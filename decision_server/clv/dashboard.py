"""The CLV dashboard's figures over the whole base: historical and predicted CLV distributions,
top customers, CLV by lifecycle stage and by value segment.

Predicted CLV is not stored per customer (it is the `ltv` model's score of the features now), so
these figures need the features of every customer (set-based SQL, chunk by chunk, as the bulk
pass reads them) and one batched model call per chunk: about a second on 10,000 customers, far too
slow per page view. They are computed once per data version and kept in process (SummaryCache):
the database, rule revision and model versions, the newest finished bulk run, the newest RFM run
and the newest customer. A new purchase alone does not renew them; the nightly bulk run does. The
answer says when it was computed and for which runs.

Historical CLV is revenue net of refunds (clv/service.py's definition, computed by `columns`, so
the figures equal GET /clv's); predicted is the next 12 months' spend (`ltv_12m`).
"""

from __future__ import annotations

import datetime as dt
import heapq
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from decision_server.clv.service import columns
from decision_server.customers.records import CustomerRecord, CustomerStateRecord
from decision_server.features import bulk
from decision_server.jobs.records import BulkRunRecord
from decision_server.rfm.records import RfmRunRecord
from decision_server.validation import cents_to_decimal

BINS = 20
TOP = 20
NONE = "none"
_st = CustomerStateRecord.__table__


def data_version(conn: Connection) -> dict[str, Any]:
    """Return what the figures depend on in the database: newest finished bulk run, RFM run, customer (index look-ups)."""
    runs = BulkRunRecord.__table__
    return {
        "bulk_run_id": conn.execute(sa.select(sa.func.max(runs.c.id)).where(runs.c.finished_at.is_not(None))).scalar(),
        "rfm_run_id": conn.execute(sa.select(sa.func.max(RfmRunRecord.__table__.c.id))).scalar(),
        "last_customer_id": conn.execute(sa.select(sa.func.max(CustomerRecord.id))).scalar(),
    }


class SummaryCache:
    """The newest few summaries by key (database, revision, models, data version); one computation at a time."""

    def __init__(self, size: int = 4):
        self.size = size
        self._items: dict[tuple, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Return the summary for `key`, computing it (once, whoever asks at the same time) when missing."""
        with self._lock:
            found = self._items.get(key)
            if found is None:
                found = compute()
                self._items[key] = found
                while len(self._items) > self.size:
                    self._items.pop(next(iter(self._items)))
            return found


def summary(
    conn: Connection,
    *,
    now: dt.datetime,
    margin: Decimal,
    models: Any,
    revision_id: str,
    cache: SummaryCache,
) -> dict[str, Any]:
    """Return the CLV dashboard's figures (cached per data version: see the module's docstring)."""
    version = data_version(conn)
    key = (
        conn.engine.url.render_as_string(hide_password=True),
        revision_id,
        repr(sorted((k, v.get("version"), v.get("fallback")) for k, v in models.models.items())),
        *version.values(),
    )
    return cache.get(key, lambda: {**compute(conn, now=now, margin=margin, models=models), "data_version": version})


def compute(conn: Connection, *, now: dt.datetime, margin: Decimal, models: Any) -> dict[str, Any]:
    """Compute the figures from every customer's features now (chunk by chunk; memory ~16 bytes a customer)."""
    revenue_parts, ltv_parts = [], []
    groups: dict[str, dict[str, dict[str, float]]] = {"stage": {}, "value_segment": {}}
    top: list[tuple[int, int, dict[str, Any]]] = []
    customers = 0
    for chunk in bulk.all_features(conn, now):
        figures = columns(chunk.aggregates, now, margin)
        ltv = np.asarray(models.score_batch(chunk.values)["ltv"], dtype=np.float64)
        revenue, orders = figures["revenue_cents"], figures["orders"]
        customers += len(chunk.ids)
        revenue_parts.append(revenue[orders > 0])
        ltv_parts.append(ltv)
        labels = _labels(conn, chunk.ids)
        for field, values in labels.items():
            for name in np.unique(values):
                inside = values == name
                group = groups[field].setdefault(str(name), {"customers": 0, "revenue_cents": 0, "predicted": 0.0})
                group["customers"] += int(inside.sum())
                group["revenue_cents"] += int(revenue[inside].sum())
                group["predicted"] += float(ltv[inside].sum())
        bought = np.flatnonzero(orders > 0)
        for i in bought[np.argsort(-revenue[bought], kind="stable")[:TOP]]:
            row = {
                "customer": int(chunk.ids[i]),
                "revenue_cents": int(revenue[i]),
                "profit_cents": int(figures["profit_cents"][i]),
                "orders": int(orders[i]),
                "ltv_12m": round(float(ltv[i]), 2),
                "stage": labels["stage"][i],
                "value_segment": labels["value_segment"][i],
            }
            heapq.heappush(top, (row["revenue_cents"], -row["customer"], row))
            if len(top) > TOP:
                heapq.heappop(top)
    historical = np.concatenate(revenue_parts) / 100.0 if revenue_parts else np.zeros(0)
    predicted = np.concatenate(ltv_parts) if ltv_parts else np.zeros(0)
    best = [row for _, _, row in sorted(top, key=lambda t: (-t[0], -t[1]))]
    return {
        "computed_at": now,
        "customers": customers,
        "buyers": len(historical),
        "historical": _distribution(historical),
        "predicted": {**_distribution(predicted), "model": models.models.get("ltv")},
        "top": _named(conn, best),
        "by_stage": _groups(groups["stage"], "stage"),
        "by_value_segment": _groups(groups["value_segment"], "value_segment"),
    }


def _labels(conn: Connection, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Each customer's stage and value segment from the state rows ("none" without one)."""
    stage = np.full(len(ids), NONE, dtype=object)
    segment = stage.copy()
    rows = conn.execute(
        sa.select(_st.c.customer_id, _st.c.stage, _st.c.value_segment).where(bulk.of(_st.c.customer_id, ids))
    ).all()
    if rows:
        found = np.array([r[0] for r in rows], dtype=np.int64)
        where = np.searchsorted(ids, found)
        stage[where] = [r[1] or NONE for r in rows]
        segment[where] = [r[2] or NONE for r in rows]
    return {"stage": stage, "value_segment": segment}


def _distribution(values: np.ndarray) -> dict[str, Any]:
    """Equal-width bins from 0 (or the smallest value, if negative) to the 95th percentile; the last bin also holds the values above it.

    CLV is long-tailed (a few buyers spend a hundred times the median): bins up to the maximum
    would put almost everyone in the first one.
    """
    if not len(values):
        return {"count": 0, "mean": None, "median": None, "p99": None, "max": None, "bins": []}
    lo, p95, p99, top = min(float(values.min()), 0.0), *np.percentile(values, [95, 99]).tolist(), float(values.max())
    hi = p95 if p95 > lo else top if top > lo else lo + 1.0
    edges = np.linspace(lo, hi, BINS + 1)
    counts, _ = np.histogram(np.clip(values, lo, hi), bins=edges)
    return {
        "count": int(len(values)),
        "mean": round(float(values.mean()), 2),
        "median": round(float(np.median(values)), 2),
        "p99": round(p99, 2),
        "max": round(top, 2),
        "bins": [
            {"lo": round(float(a), 2), "hi": round(float(b), 2), "count": int(c)}
            for a, b, c in zip(edges[:-1], edges[1:], counts, strict=True)
        ],
    }


def _groups(groups: dict[str, dict[str, float]], field: str) -> list[dict[str, Any]]:
    rows = []
    for name, g in sorted(groups.items(), key=lambda kv: -kv[1]["customers"]):
        n = int(g["customers"])
        rows.append(
            {
                field: name,
                "customers": n,
                "revenue": str(cents_to_decimal(int(g["revenue_cents"]))),
                "avg_revenue": round(g["revenue_cents"] / n / 100.0, 2) if n else 0.0,
                "avg_predicted": round(g["predicted"] / n, 2) if n else 0.0,
            }
        )
    return rows


def _named(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give the top customers their external ids and money as the API shows it."""
    if not rows:
        return []
    c = CustomerRecord
    names = dict(conn.execute(sa.select(c.id, c.external_id).where(c.id.in_([r["customer"] for r in rows]))).all())
    return [
        {
            "customer_id": names[r["customer"]],
            "revenue": str(cents_to_decimal(r["revenue_cents"])),
            "profit": str(cents_to_decimal(r["profit_cents"])),
            "orders": r["orders"],
            "ltv_12m": r["ltv_12m"],
            "stage": r["stage"],
            "value_segment": r["value_segment"],
        }
        for r in rows
    ]
