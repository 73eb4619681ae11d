"""The feature set: one definition, computed from a state row (real time) or set-based SQL (bulk).

Both paths first produce the same *aggregates* per customer (counts, sums and timestamps over
fixed windows); `derive` then turns aggregates into features with one set of formulas that runs on
Python floats (one customer) or numpy columns (many). So a formula lives in exactly one place,
and the parity test compares the two ways of aggregating.

Windows are calendar months (UTC): "3m" is the current month to date plus the two months
before it, "prev_3m" the three months before those, "12m" the current month plus the eleven
before it. Calendar months make the windows exact from the monthly buckets kept on the state
row, and they are what a marketing team reports in.

Every model's card lists the feature names it was trained on, and serving picks them by name:
adding or reordering features keeps every model serving; removing or renaming one a model needs
makes that model fall back until it is retrained. Append new features rather than rename.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from decision_server.db import UTC

DAY = 86_400.0
MONTH_DAYS = 30.44

# Vocabularies the feature set counts separately; anything else still counts in the totals.
CATEGORIES = ("data_bundle", "voice_bundle", "streaming", "roaming", "accessory", "device")
TOUCH_CHANNELS = ("app", "call_centre", "sms")
TOUCH_KINDS = ("app_open", "offer_click", "sms_click", "complaint", "inbound_call")
# Touchpoints the customer started: what "engaged" means for the engagement label.
ENGAGED_KINDS = ("app_open", "offer_view", "offer_click", "sms_click", "inbound_call")


@dataclasses.dataclass(frozen=True)
class Feature:
    """One model input: its name, what it means, and its dtype (always float32 for ONNX)."""

    name: str
    description: str
    dtype: str = "float32"


FEATURES: tuple[Feature, ...] = (
    Feature("recency_days", "Days since the last purchase (tenure when none)"),
    Feature("has_purchased", "1 when the customer ever bought, else 0"),
    Feature("frequency", "Purchases ever"),
    Feature("monetary", "Spend ever, currency units"),
    Feature("aov", "Average order value (0 when no purchase)"),
    Feature("tenure_days", "Days since the customer became a customer"),
    Feature("first_purchase_days", "Days since the first purchase (0 when none)"),
    Feature("purchases_per_month", "Purchases per month of tenure (tenure counted as at least a month)"),
    Feature("margin_rate", "(spend - cost) / spend over all purchases (0 when none)"),
    Feature("purchases_3m", "Purchases in the current month and the two before"),
    Feature("spend_3m", "Spend in the current month and the two before"),
    Feature("purchases_prev_3m", "Purchases in the three months before the 3m window"),
    Feature("spend_prev_3m", "Spend in the three months before the 3m window"),
    Feature("purchases_12m", "Purchases in the current month and the eleven before"),
    Feature("spend_12m", "Spend in the current month and the eleven before"),
    Feature("spend_trend", "(spend_3m - spend_prev_3m) / (spend_3m + spend_prev_3m + 1), in (-1, 1)"),
    *(Feature(f"category_{c}_12m", f"Purchases in category {c} over 12m") for c in CATEGORIES),
    Feature("touchpoints_3m", "Touchpoints of any kind in the 3m window"),
    Feature("touchpoints_12m", "Touchpoints of any kind in the 12m window"),
    *(Feature(f"channel_{c}_3m", f"Touchpoints on channel {c} in the 3m window") for c in TOUCH_CHANNELS),
    *(Feature(f"kind_{k}_3m", f"Touchpoints of kind {k} in the 3m window") for k in TOUCH_KINDS),
    Feature("contact_recency_days", "Days since the last touchpoint (tenure when none)"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)

# Aggregates per customer, produced by both paths (timestamps as epoch seconds, NaN when none).
AGGREGATES: tuple[str, ...] = (
    "customer_since",
    "purchases",
    "spend",
    "cost",
    "first_purchase_at",
    "last_purchase_at",
    "purchases_3m",
    "spend_3m",
    "purchases_prev_3m",
    "spend_prev_3m",
    "purchases_12m",
    "spend_12m",
    *(f"category_{c}_12m" for c in CATEGORIES),
    "touchpoints_3m",
    "touchpoints_12m",
    "last_touchpoint_at",
    *(f"channel_{c}_3m" for c in TOUCH_CHANNELS),
    *(f"kind_{k}_3m" for k in TOUCH_KINDS),
)


def month_index(moment: dt.datetime) -> int:
    """Return a month as one integer (year * 12 + month - 1), UTC."""
    moment = moment.astimezone(UTC)
    return moment.year * 12 + moment.month - 1


def month_key(index: int) -> str:
    """Return the bucket key of a month index, e.g. '2026-11'."""
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_start(index: int) -> dt.datetime:
    """Return the first instant of a month index, UTC."""
    return dt.datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


@dataclasses.dataclass(frozen=True)
class Windows:
    """Where each window starts for features as of `as_of`."""

    as_of: dt.datetime
    month: int  # month index of as_of

    @classmethod
    def at(cls, as_of: dt.datetime) -> Windows:
        """Return the windows for features as of `as_of` (aware)."""
        as_of = as_of.astimezone(UTC)
        return cls(as_of, month_index(as_of))

    @property
    def start_3m(self) -> dt.datetime:
        return month_start(self.month - 2)

    @property
    def start_prev_3m(self) -> dt.datetime:
        return month_start(self.month - 5)

    @property
    def start_12m(self) -> dt.datetime:
        return month_start(self.month - 11)

    def months(self, name: str) -> range:
        """Return the month indexes of a window ('3m', 'prev_3m' or '12m')."""
        first, last = {"3m": (2, 0), "prev_3m": (5, 3), "12m": (11, 0)}[name]
        return range(self.month - first, self.month - last + 1)


class _Scalars:
    """The operations `derive` needs, on Python floats (one customer: no numpy overhead)."""

    @staticmethod
    def fill(x: float, default: float) -> float:
        return default if math.isnan(x) else x

    @staticmethod
    def maximum(a: float, b: float) -> float:
        return max(a, b)

    @staticmethod
    def positive(x: float) -> float:
        return 1.0 if x > 0 else 0.0


class _Columns:
    """The same operations on numpy float64 columns (many customers)."""

    @staticmethod
    def fill(x: np.ndarray, default: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(x), default, x)

    maximum = staticmethod(np.maximum)

    @staticmethod
    def positive(x: np.ndarray) -> np.ndarray:
        return (x > 0).astype(np.float64)


def derive(agg: Mapping[str, Any], as_of: float, ops: Any) -> list[Any]:
    """Return the features in FEATURES order from aggregates as of epoch `as_of`.

    `ops` is `_Scalars` for one customer (floats) or `_Columns` for many (float64 arrays).
    """
    tenure = ops.maximum((as_of - agg["customer_since"]) / DAY, 0.0)
    n, spend = agg["purchases"], agg["spend"]
    s3, sp3 = agg["spend_3m"], agg["spend_prev_3m"]
    return [
        ops.fill((as_of - agg["last_purchase_at"]) / DAY, tenure),
        ops.positive(n),
        n,
        spend,
        spend / ops.maximum(n, 1.0),
        tenure,
        ops.fill((as_of - agg["first_purchase_at"]) / DAY, 0.0),
        n / ops.maximum(tenure / MONTH_DAYS, 1.0),
        (spend - agg["cost"]) / ops.maximum(spend, 1.0),
        agg["purchases_3m"],
        s3,
        agg["purchases_prev_3m"],
        sp3,
        agg["purchases_12m"],
        agg["spend_12m"],
        (s3 - sp3) / (s3 + sp3 + 1.0),
        *(agg[f"category_{c}_12m"] for c in CATEGORIES),
        agg["touchpoints_3m"],
        agg["touchpoints_12m"],
        *(agg[f"channel_{c}_3m"] for c in TOUCH_CHANNELS),
        *(agg[f"kind_{k}_3m"] for k in TOUCH_KINDS),
        ops.fill((as_of - agg["last_touchpoint_at"]) / DAY, tenure),
    ]


def vector(agg: Mapping[str, float], as_of: float) -> np.ndarray:
    """Return one customer's features as a float32 row of shape (1, n_features)."""
    return np.array([derive(agg, as_of, _Scalars)], dtype=np.float32)


def matrix(columns: Mapping[str, np.ndarray], as_of: float) -> np.ndarray:
    """Return many customers' features as a float32 matrix (rows, n_features)."""
    derived = derive(columns, as_of, _Columns)
    rows = len(columns["purchases"])
    out = np.empty((rows, len(FEATURES)), dtype=np.float32)
    for i, column in enumerate(derived):
        out[:, i] = column
    return out


def as_dict(row: Sequence[float]) -> dict[str, float]:
    """Name the values of one feature row (for explanations and fallbacks)."""
    return {name: float(value) for name, value in zip(FEATURE_NAMES, row, strict=True)}


def epoch(moment: dt.datetime | None) -> float:
    """Return a timestamp as epoch seconds, NaN for None."""
    return math.nan if moment is None else moment.timestamp()
