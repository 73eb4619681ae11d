"""Customer value (CVM): a 0-100 score over CLV, RFM and engagement, and its segment.

    value_score = 100 × (w_clv × CLV + w_rfm × RFM + w_eng × engagement) / (w_clv + w_rfm + w_eng)
    CLV        = 1 - exp(-predicted 12-month value / ltv_scale)
    RFM        = (r + f + m - 3) / 12, or 0 for a customer who never bought
    engagement = engagement score / 100
The weights and ltv_scale come from rules/value_weights.yaml (they may differ by kind of customer);
the segment (high / medium / low) from rules/value.yaml. The score is rounded to two decimals
before the segment is chosen, so what is shown is what was judged (69.995 shows and counts as 70).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from decision_server.customers.records import CustomerStateRecord
from decision_server.rules.analysis import intervals
from decision_server.validation import cents_to_decimal

WEIGHTS = ("clv_weight", "rfm_weight", "engagement_weight", "ltv_scale")
_ORDER = {"high": 0, "medium": 1, "low": 2}
_st = CustomerStateRecord.__table__


def score(weights: dict[str, float], ltv: float, rfm: tuple[int, int, int] | None, engagement: float) -> float:
    """Return the value score 0-100 of one customer, rounded to two decimals."""
    total = weights["clv_weight"] + weights["rfm_weight"] + weights["engagement_weight"]
    if total <= 0:
        return 0.0
    clv_part = 1.0 - np.exp(-max(ltv, 0.0) / weights["ltv_scale"]) if weights["ltv_scale"] > 0 else 0.0
    rfm_part = (sum(rfm) - 3) / 12 if rfm else 0.0
    raw = (
        weights["clv_weight"] * clv_part
        + weights["rfm_weight"] * rfm_part
        + weights["engagement_weight"] * min(max(engagement, 0.0), 100.0) / 100
    ) / total
    return round(100.0 * float(raw), 2)


def for_customer(
    revision: Any, *, transaction_count: int, ltv: float, rfm: tuple[int, int, int] | None, engagement: float
) -> tuple[float, str]:
    """Return (value score, value segment) of one customer with the serving rules."""
    weights = revision.evaluate("value_weights", {"transaction_count": transaction_count}, backend="python").outcome
    value = score(weights, ltv, rfm, engagement)
    segment = revision.evaluate("value", {"value_score": value}, backend="python").outcome["value_segment"]
    return value, segment


def for_columns(
    revision: Any,
    *,
    transaction_count: np.ndarray,
    ltv: np.ndarray,
    r: np.ndarray,
    f: np.ndarray,
    m: np.ndarray,
    engagement: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Return value scores and segments of many customers (r, f, m NaN for those who never bought)."""
    weights = revision.outcome_columns("value_weights", {"transaction_count": transaction_count}, WEIGHTS)
    total = weights["clv_weight"] + weights["rfm_weight"] + weights["engagement_weight"]
    with np.errstate(divide="ignore", invalid="ignore"):
        clv_part = np.where(weights["ltv_scale"] > 0, 1.0 - np.exp(-np.maximum(ltv, 0.0) / weights["ltv_scale"]), 0.0)
        rfm_sum = r + f + m
        rfm_part = np.where(np.isnan(rfm_sum), 0.0, (rfm_sum - 3) / 12)
        raw = (
            weights["clv_weight"] * clv_part
            + weights["rfm_weight"] * rfm_part
            + weights["engagement_weight"] * np.clip(engagement, 0.0, 100.0) / 100
        ) / total
    scores = np.round(100.0 * np.where(total > 0, raw, 0.0), 2)
    return scores, segments_of(revision, scores)


def segments_of(revision: Any, scores: np.ndarray) -> np.ndarray:
    """Return the value segment of each score (rules/value.yaml, vectorized)."""
    return revision.outcome_columns("value", {"value_score": scores}, ("value_segment",))["value_segment"]


def statistics(session: Session) -> dict[str, Any]:
    """Return customers per value segment with score ranges, and how scores spread in bands of 10."""
    band = sa.func.floor(_st.c.value_score / 10)
    rows = session.execute(
        sa.select(
            _st.c.value_segment,
            sa.func.count(),
            sa.func.avg(_st.c.value_score),
            sa.func.min(_st.c.value_score),
            sa.func.max(_st.c.value_score),
            sa.func.avg(_st.c.total_spend_cents),
        ).group_by(_st.c.value_segment)
    ).all()
    bands = dict(session.execute(sa.select(band, sa.func.count()).where(_st.c.value_score.is_not(None)).group_by(band)).all())
    scored = [r for r in rows if r[0] is not None]
    total = sum(r[1] for r in scored) or 1
    return {
        "segments": [
            {
                "segment": s,
                "customers": n,
                "share": round(n / total, 4),
                "avg_score": round(float(a), 2),
                "min_score": lo,
                "max_score": hi,
                "avg_spend": str(cents_to_decimal(round(float(c or 0)))),
            }
            for s, n, a, lo, hi, c in sorted(scored, key=lambda r: _ORDER.get(r[0], 9))
        ],
        "not_evaluated": sum(r[1] for r in rows if r[0] is None),
        "histogram": [
            {"from": k * 10, "to": min(k * 10 + 10, 100), "customers": int(bands.get(float(k), bands.get(k, 0)))}
            for k in range(10)
        ]
        if bands
        else [],
    }


def thresholds(revision: Any) -> dict[str, Any]:
    """Return the serving value rules as score ranges per segment, and the scores where one segment gives way to the next.

    Read from the checked rule set (rules/value.yaml is a partition of the score range, so every rule
    is a range of value_score); a rule set that is not one gives no ranges rather than a guess.
    """
    ruleset = revision.rulesets["value"]
    partition = ruleset.partition
    ranges = []
    for rule in ruleset.rules:
        found = intervals(rule.condition) if partition is not None else None
        if not found or set(found) != {partition.input}:
            return {"input": None, "range": None, "segments": [], "cuts": []}
        piece = found[partition.input]
        low, high = max(piece.low, partition.low), min(piece.high, partition.high)
        ranges.append({"segment": rule.then.get("value_segment"), "rule_id": rule.id, "from": low, "to": high})
    ranges.sort(key=lambda r: r["from"])
    cuts = sorted({r["from"] for r in ranges if r["from"] > partition.low})
    return {"input": partition.input, "range": [partition.low, partition.high], "segments": ranges, "cuts": cuts}


def offers_by_segment(revision: Any, offers: Any, segment: str | None = None) -> list[dict[str, Any]]:
    """Return [{segment, offers}]: the active offers made for one value segment, or for each the value rules give."""
    from decision_server.offers.catalog import value_offers

    names = [segment] if segment is not None else list(revision.rulesets["value"].outputs["value_segment"].values or ())
    return [{"segment": name, "offers": value_offers(offers, name)} for name in names]
