"""The models we ship: what each predicts, from which label, with which estimator and fallback.

Adding a model is one ModelSpec here (plus a test): training, export, cards, serving, the merged
graph, fallbacks, the CLI and the API all work from this list.

Why gradient-boosted trees (scikit-learn's GradientBoosting*): they are strong on tabular
aggregates, need no scaling, and skl2onnx converts them to one TreeEnsemble node that onnxruntime
runs in a few microseconds. HistGradientBoosting* would train faster but skl2onnx cannot convert
it with onnx 1.23, and we never patch installed packages.

Next best offer is one multi-class model over the product categories (the category a customer
buys most in the next 90 days), not one propensity model per offer: offers come and go with the
catalog sync, while categories are stable, so a new offer needs no retraining; one softmax gives
comparable preferences across offers in one call; and there is no per-offer response history to
learn from until offers have been shown. An offer's propensity is then
propensity_to_buy × nbo[offer.category] (see the decision pipeline).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from decision_server.features.bulk import Labels
from decision_server.features.definition import CATEGORIES, FEATURE_NAMES

F = {name: i for i, name in enumerate(FEATURE_NAMES)}


def col(x: np.ndarray, name: str) -> np.ndarray:
    """Return one feature column of a feature matrix, as float64."""
    return x[:, F[name]].astype(np.float64)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model: its task, label, population, estimator and rule-based fallback."""

    name: str
    score: str  # the name of its score in decisions and rule inputs
    task: str  # "binary", "multiclass" or "regression"
    horizon_days: int
    description: str
    label: str
    make_label: Callable[[Labels], np.ndarray]
    population: Callable[[np.ndarray, Labels], np.ndarray]  # boolean mask of rows to learn from
    estimator: Callable[[int], Any]
    fallback: Callable[[np.ndarray], np.ndarray]  # features (n, F) -> scores (n,) or (n, classes)
    fallback_rule: str
    scale: float = 1.0  # binary scores are probability × scale (engagement: 0–100)
    classes: tuple[str, ...] = ()

    def pipeline(self, seed: int):
        """Return the untrained scikit-learn pipeline of this model."""
        from sklearn.pipeline import Pipeline  # the training stack, never imported by serving or the CLI's start

        return Pipeline([("model", self.estimator(seed))])


def _classifier(trees: int, depth: int = 3) -> Callable[[int], Any]:
    def make(seed: int) -> Any:
        from sklearn.ensemble import GradientBoostingClassifier

        return GradientBoostingClassifier(
            n_estimators=trees, max_depth=depth, learning_rate=0.1, subsample=0.8, random_state=seed
        )

    return make


def _regressor(seed: int) -> Any:
    from sklearn.ensemble import GradientBoostingRegressor

    return GradientBoostingRegressor(
        n_estimators=150, max_depth=3, learning_rate=0.05, subsample=0.8, loss="huber", random_state=seed
    )


def _everyone(x: np.ndarray, labels: Labels) -> np.ndarray:
    return np.ones(len(x), dtype=bool)


def _buyers(x: np.ndarray, labels: Labels) -> np.ndarray:
    return col(x, "has_purchased") > 0


def _churn_fallback(x: np.ndarray) -> np.ndarray:
    return np.clip(col(x, "recency_days") / 180.0, 0.02, 0.98)


def _propensity_fallback(x: np.ndarray) -> np.ndarray:
    per_month = col(x, "purchases_3m") / 3.0
    return 1.0 - np.exp(-per_month)


def _ltv_fallback(x: np.ndarray) -> np.ndarray:
    return col(x, "spend_12m")


def _engagement_fallback(x: np.ndarray) -> np.ndarray:
    started = sum(col(x, f"kind_{k}_3m") for k in ("app_open", "offer_click", "sms_click", "inbound_call"))
    per_month = (started + col(x, "purchases_3m")) / 3.0
    return 100.0 * (1.0 - np.exp(-per_month))


def _nbo_fallback(x: np.ndarray) -> np.ndarray:
    counts = np.stack([col(x, f"category_{c}_12m") for c in CATEGORIES], axis=1) + 1.0
    return counts / counts.sum(axis=1, keepdims=True)


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="churn",
        score="churn_risk",
        task="binary",
        horizon_days=90,
        description="Churn risk: probability that a customer who has bought makes no purchase in the next 90 days.",
        label="1 when a customer with at least one purchase before the cut-off makes none in the 90 days after it",
        make_label=lambda lab: (lab.purchases_90d == 0).astype(np.int64),
        population=_buyers,
        estimator=_classifier(150),
        fallback=_churn_fallback,
        fallback_rule="recency_days / 180, clipped to [0.02, 0.98]: silent 90 days is a coin flip, 180 days near certain",
    ),
    ModelSpec(
        name="propensity",
        score="propensity_to_buy",
        task="binary",
        horizon_days=30,
        description="Propensity to buy: probability of at least one purchase in the next 30 days.",
        label="1 when the customer makes at least one purchase in the 30 days after the cut-off",
        make_label=lambda lab: (lab.purchases_30d > 0).astype(np.int64),
        population=_everyone,
        estimator=_classifier(150),
        fallback=_propensity_fallback,
        fallback_rule="1 - exp(-purchases_3m / 3): a Poisson buyer at the last three months' monthly rate",
    ),
    ModelSpec(
        name="ltv",
        score="ltv",
        task="regression",
        horizon_days=365,
        description="Lifetime value: spend in the next 12 months, currency units.",
        label="spend in the 365 days after the cut-off (0 when none)",
        make_label=lambda lab: lab.spend_365d,
        population=_everyone,
        estimator=_regressor,
        fallback=_ltv_fallback,
        fallback_rule="spend_12m: next year is like the last twelve months",
    ),
    ModelSpec(
        name="engagement",
        score="engagement_score",
        task="binary",
        horizon_days=30,
        description="Engagement score 0–100: 100 × probability the customer buys or starts a touchpoint in 30 days.",
        label="1 when the customer buys or starts a touchpoint (app open, offer view or click, SMS click, inbound call) in the 30 days after the cut-off",
        make_label=lambda lab: lab.engaged_30d.astype(np.int64),
        population=_everyone,
        estimator=_classifier(120),
        fallback=_engagement_fallback,
        fallback_rule="100 × (1 - exp(-(purchases_3m + touchpoints the customer started in 3m) / 3))",
        scale=100.0,
    ),
    ModelSpec(
        name="nbo",
        score="nbo",
        task="multiclass",
        horizon_days=90,
        description="Next best offer: probability of each product category being the one the customer buys most in the next 90 days.",
        label="the category bought most often in the 90 days after the cut-off (ties: the first in the category list); customers who buy nothing are left out",
        make_label=lambda lab: np.array([CATEGORIES.index(c) if c else -1 for c in lab.next_category]),
        population=lambda x, lab: np.array([c is not None for c in lab.next_category], dtype=bool),
        estimator=_classifier(60, depth=2),  # shallower: the category mix is a simple signal
        fallback=_nbo_fallback,
        fallback_rule="category shares of the last 12 months' purchases with add-one smoothing",
        classes=CATEGORIES,
    ),
)
BY_NAME = {spec.name: spec for spec in MODELS}
