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

WEIGHTS = ("clv_weight", "rfm_weight", "engagement_weight", "ltv_scale")


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
