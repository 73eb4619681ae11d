"""Train the models on the database's own data, point-in-time correct, and write them with cards.

For a model whose label looks H days ahead, with `end` the last purchase in the database:
- the holdout cut-off is end - H, so its labels are fully observed;
- the training cut-off is min(H, 30 days) before it: the training snapshot is a month older than
  the holdout, as a model in production is a month older than the customers it scores;
- features read only events up to each cut-off (features/bulk.py), labels only the H days after,
  so no row ever sees its own future;
- customers are split: every fifth customer (by a hash of the id) is held out and never trained
  on. For horizons longer than the gap (churn, LTV) the training and holdout label windows share
  calendar days (the card says how many), never customers. A fully separate window for a 12-month
  label needs 24 months after the first 6; on the demo's two years that forced a training
  snapshot 18 months old, and the model lost to "next year = last year" (RMSE 1,486 against the
  fallback's 1,319; with the one-month gap: 920).
The shipped model is the one evaluated: the card's metrics describe exactly the file that serves.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import metrics as skm

from decision_server.db import Database, utcnow
from decision_server.errors import DecisionServerError
from decision_server.features import bulk
from decision_server.features.definition import FEATURES
from decision_server.scoring import store
from decision_server.scoring.onnx_io import export, make_session, run_scores
from decision_server.scoring.specs import BY_NAME, MODELS, ModelSpec

Progress = Callable[[str], None]
MIN_HISTORY = dt.timedelta(days=180)
# The training cut-off is this long (or the label horizon, if shorter) before the holdout's.
HOLDOUT_GAP = dt.timedelta(days=30)
MIN_ROWS = 100
AGREEMENT_SAMPLE = 2_000


class TrainingError(DecisionServerError):
    status = 422
    code = "training_failed"


@dataclasses.dataclass
class Snapshot:
    """Features and labels of every customer who existed at a cut-off."""

    cutoff: dt.datetime
    ids: np.ndarray
    x: np.ndarray
    labels: bulk.Labels


@dataclasses.dataclass
class TrainResult:
    """What one model's training produced."""

    name: str
    version: str | None
    card: dict[str, Any] | None
    error: str | None = None
    pipeline: Any = None  # the fitted scikit-learn pipeline (in memory only; benchmarks compare with it)


def is_holdout(ids: np.ndarray) -> np.ndarray:
    """Tell which customers are held out of training: one in five, by a hash of the id."""
    mixed = (ids.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(1 << 32)
    return (mixed % np.uint64(5)) == 0


def snapshot(database: Database, cutoff: dt.datetime) -> Snapshot:
    """Read the features and labels of every customer as of `cutoff`."""
    ids, xs = [], []
    labs: list[bulk.Labels] = []
    with database.connection() as conn:
        for chunk in bulk.all_features(conn, cutoff):
            ids.append(chunk.ids)
            xs.append(chunk.values)
            labs.append(bulk.labels(conn, chunk.ids, cutoff))
    if not ids:
        empty = np.zeros(0)
        return Snapshot(
            cutoff,
            np.zeros(0, dtype=np.int64),
            np.zeros((0, len(FEATURES)), np.float32),
            bulk.Labels(empty, empty, empty, empty, empty, np.zeros(0, dtype=object)),
        )
    joined = bulk.Labels(*(np.concatenate([getattr(lab, f.name) for lab in labs]) for f in dataclasses.fields(bulk.Labels)))
    return Snapshot(cutoff, np.concatenate(ids), np.vstack(xs), joined)


def cutoffs(spec: ModelSpec, span: tuple[dt.datetime, dt.datetime]) -> tuple[dt.datetime, dt.datetime]:
    """Return (training cut-off, holdout cut-off) for a model, whole days, UTC."""
    first, end = span
    horizon = dt.timedelta(days=spec.horizon_days)
    gap = min(horizon, HOLDOUT_GAP)
    holdout = _day(end - horizon)
    train = _day(holdout - gap)
    if train < _day(first + MIN_HISTORY):
        need = (MIN_HISTORY + gap + horizon).days + 1
        raise TrainingError(
            f"{spec.name}: needs at least {need} days of purchases ({MIN_HISTORY.days} of history, "
            f"{gap.days} between the training and holdout cut-offs, {spec.horizon_days} to observe the label); "
            f"the database has {(end - first).days}"
        )
    return train, holdout


def _day(moment: dt.datetime) -> dt.datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def evaluate(
    spec: ModelSpec, predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray, prior: Any
) -> dict[str, Any]:
    """Score a predictor against the naive baseline and the rule-based fallback on (x, y)."""
    if spec.task == "regression":

        def reg(pred):
            return {"rmse": float(np.sqrt(np.mean((pred - y) ** 2))), "mae": float(np.mean(np.abs(pred - y)))}

        return {
            "model": reg(predict(x)),
            "baseline_mean": reg(np.full(len(y), float(prior))),
            "fallback": reg(spec.fallback(x)),
            "rows": len(y),
            "label_mean": float(np.mean(y)),
        }
    if spec.task == "binary":

        def binary(p):
            both = len(np.unique(y)) == 2
            return {
                "auc": float(skm.roc_auc_score(y, p)) if both else None,
                "brier": float(np.mean((p - y) ** 2)),
                "log_loss": float(skm.log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1])),
            }

        return {
            "model": binary(predict(x) / spec.scale),
            "baseline_base_rate": binary(np.full(len(y), float(prior))),
            "fallback": binary(spec.fallback(x) / spec.scale),
            "rows": len(y),
            "positive_rate": float(np.mean(y)),
        }

    def multi(p):
        p = np.clip(p, 1e-6, 1.0)
        p = p / p.sum(axis=1, keepdims=True)
        return {
            "accuracy": float(np.mean(np.argmax(p, axis=1) == y)),
            "log_loss": float(skm.log_loss(y, p, labels=list(range(len(spec.classes))))),
        }

    return {
        "model": multi(predict(x)),
        "baseline_prior": multi(np.tile(prior, (len(y), 1))),
        "fallback": multi(spec.fallback(x)),
        "rows": len(y),
    }


def _prior(spec: ModelSpec, y: np.ndarray) -> Any:
    if spec.task == "multiclass":
        counts = np.bincount(y, minlength=len(spec.classes)).astype(float) + 1.0
        return counts / counts.sum()
    return float(np.mean(y))


def _rows(spec: ModelSpec, snap: Snapshot, holdout: bool) -> tuple[np.ndarray, np.ndarray]:
    mask = spec.population(snap.x, snap.labels) & (is_holdout(snap.ids) == holdout)
    return snap.x[mask], np.asarray(spec.make_label(snap.labels))[mask]


def train_one(
    spec: ModelSpec,
    database: Database,
    models_dir: Path,
    *,
    seed: int,
    promote: bool,
    snapshots: dict[dt.datetime, Snapshot],
    progress: Progress,
) -> TrainResult:
    """Train, check, export and write one model; promote it unless told not to."""
    with database.connection() as conn:
        span = bulk.data_span(conn)
    if span is None:
        raise TrainingError(f"{spec.name}: the database has no purchases to learn from")
    train_at, holdout_at = cutoffs(spec, span)
    for moment in (train_at, holdout_at):
        if moment not in snapshots:
            progress(f"{spec.name}: reading features and labels as of {moment.date()}")
            snapshots[moment] = snapshot(database, moment)
    x_train, y_train = _rows(spec, snapshots[train_at], holdout=False)
    x_test, y_test = _rows(spec, snapshots[holdout_at], holdout=True)
    if len(y_train) < MIN_ROWS or len(y_test) < MIN_ROWS // 4:
        raise TrainingError(f"{spec.name}: too few rows to learn from ({len(y_train)} to train, {len(y_test)} to test)")
    if spec.task != "regression" and len(np.unique(y_train)) < 2:
        raise TrainingError(f"{spec.name}: every training label is the same ({y_train[0]}); nothing to learn")
    progress(
        f"{spec.name}: training on {len(y_train):,} rows (cut-off {train_at.date()}), "
        f"testing on {len(y_test):,} held-out customers (cut-off {holdout_at.date()})"
    )
    pipeline = spec.pipeline(seed).fit(x_train, y_train)
    classes = [spec.classes[int(c)] for c in pipeline.classes_] if spec.task == "multiclass" else []
    onnx_bytes, outputs = export(spec, pipeline)
    session = make_session(onnx_bytes)
    served = lambda x: run_scores(spec, session, x, classes)

    sample = x_test[:AGREEMENT_SAMPLE]
    agreement = _agreement(spec, pipeline, served, sample)
    progress(f"{spec.name}: onnxruntime and scikit-learn agree on {len(sample):,} rows (max difference {agreement:.2e})")
    result = evaluate(spec, served, x_test, y_test, _prior(spec, y_train))

    version = store.new_version(models_dir, spec.name)
    folder = models_dir / spec.name / version
    folder.mkdir(parents=True)
    (folder / store.MODEL_FILE).write_bytes(onnx_bytes)
    card = _card(
        spec,
        version,
        seed,
        outputs,
        classes,
        train_at,
        holdout_at,
        len(y_train),
        result,
        agreement,
        store.sha256_of(folder / store.MODEL_FILE),
        y_train,
    )
    store.write_atomically(folder / store.CARD_FILE, json.dumps(card, indent=2) + "\n")
    progress(f"{spec.name}: wrote {spec.name}/{version}  {_headline(card)}")
    if promote:
        store.promote(models_dir, spec.name, version, actor="train", reason="trained")
    return TrainResult(spec.name, version, card, pipeline=pipeline)


def _agreement(spec: ModelSpec, pipeline: Any, served: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> float:
    """Return the largest difference between scikit-learn and onnxruntime; fail when it matters."""
    ours = served(x)
    if spec.task == "regression":
        theirs = pipeline.predict(x)
        gap = float(np.max(np.abs(ours - np.maximum(theirs, 0.0)) / np.maximum(1.0, np.abs(theirs)))) if len(x) else 0.0
    elif spec.task == "binary":
        theirs = pipeline.predict_proba(x)[:, 1] * spec.scale
        gap = float(np.max(np.abs(ours - theirs)) / spec.scale) if len(x) else 0.0
    else:
        theirs = pipeline.predict_proba(x)
        gap = float(np.max(np.abs(ours[:, : theirs.shape[1]] - theirs))) if len(x) else 0.0
    if gap > 1e-4:
        raise TrainingError(f"{spec.name}: onnxruntime and scikit-learn disagree by {gap:.2e} (limit 1e-4); not written")
    return gap


def _card(spec, version, seed, outputs, classes, train_at, holdout_at, rows, result, agreement, sha, y_train):
    import onnx
    import onnxruntime
    import skl2onnx
    import sklearn

    horizon = dt.timedelta(days=spec.horizon_days)
    return {
        "name": spec.name,
        "version": version,
        "score": spec.score,
        "task": spec.task,
        "description": spec.description,
        "created_at": utcnow().isoformat(),
        "seed": seed,
        "inputs": [
            {
                "name": "features",
                "dtype": "float32",
                "shape": [None, len(FEATURES)],
                "features": [{"name": f.name, "dtype": f.dtype, "description": f.description} for f in FEATURES],
            }
        ],
        "outputs": outputs,
        "classes": classes,
        "scale": spec.scale,
        "label": spec.label,
        "training": {
            "cutoff": train_at.isoformat(),
            "label_window": [train_at.isoformat(), (train_at + horizon).isoformat()],
            "rows": rows,
            "label_mean": float(np.mean(y_train)) if spec.task != "multiclass" else None,
        },
        "holdout": {
            "cutoff": holdout_at.isoformat(),
            "label_window": [holdout_at.isoformat(), (holdout_at + horizon).isoformat()],
            "label_overlap_days": max(0, (train_at + horizon - holdout_at).days),
            "customers": "one in five by a hash of the customer id, never trained on",
        },
        "metrics": result,
        "agreement": {"rows": min(AGREEMENT_SAMPLE, result["rows"]), "max_difference": agreement},
        "fallback": spec.fallback_rule,
        "libraries": {
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "skl2onnx": skl2onnx.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__,
        },
        "sha256": sha,
    }


def _headline(card: dict[str, Any]) -> str:
    m = card["metrics"]
    if card["task"] == "regression":
        return (
            f"RMSE {m['model']['rmse']:.1f} (mean {m['baseline_mean']['rmse']:.1f}, fallback {m['fallback']['rmse']:.1f}); "
            f"MAE {m['model']['mae']:.1f} (mean {m['baseline_mean']['mae']:.1f}, fallback {m['fallback']['mae']:.1f})"
        )
    if card["task"] == "binary":
        auc = lambda d: "n/a" if d["auc"] is None else f"{d['auc']:.3f}"
        return (
            f"AUC {auc(m['model'])} (fallback {auc(m['fallback'])}); Brier {m['model']['brier']:.4f} "
            f"(base rate {m['baseline_base_rate']['brier']:.4f}, fallback {m['fallback']['brier']:.4f})"
        )
    return (
        f"accuracy {m['model']['accuracy']:.3f} (prior {m['baseline_prior']['accuracy']:.3f}, fallback "
        f"{m['fallback']['accuracy']:.3f}); log loss {m['model']['log_loss']:.3f} (prior {m['baseline_prior']['log_loss']:.3f})"
    )


def train(
    database: Database,
    models_dir: Path,
    names: list[str] | None = None,
    *,
    seed: int = 42,
    promote: bool = True,
    progress: Progress | None = None,
) -> list[TrainResult]:
    """Train the named models (all when None); a model that cannot be trained is reported, not fatal."""
    progress = progress or (lambda message: None)
    specs = [BY_NAME[n] for n in names] if names else list(MODELS)
    models_dir.mkdir(parents=True, exist_ok=True)
    snapshots: dict[dt.datetime, Snapshot] = {}
    results = []
    for spec in specs:
        try:
            results.append(
                train_one(spec, database, models_dir, seed=seed, promote=promote, snapshots=snapshots, progress=progress)
            )
        except TrainingError as exc:
            progress(f"{spec.name}: NOT TRAINED: {exc.message}")
            results.append(TrainResult(spec.name, None, None, exc.message))
    return results


def evaluate_current(database: Database, model_set: Any, spec: ModelSpec, *, progress: Progress | None = None) -> dict[str, Any]:
    """Evaluate what serves now (model or fallback) on the latest fully observed window.

    The cut-off is H days before the last purchase, and only held-out customers (never trained
    on) are scored, so the numbers are comparable with the card's and honest about drift.
    """
    progress = progress or (lambda message: None)
    with database.connection() as conn:
        span = bulk.data_span(conn)
    if span is None:
        raise TrainingError("the database has no purchases to evaluate on")
    cutoff = _day(span[1] - dt.timedelta(days=spec.horizon_days))
    progress(f"{spec.name}: reading features and labels as of {cutoff.date()}")
    snap = snapshot(database, cutoff)
    x, y = _rows(spec, snap, holdout=True)
    if len(y) == 0:
        raise TrainingError(f"{spec.name}: no held-out customers to evaluate as of {cutoff.date()}")
    _, y_all = _rows(spec, snap, holdout=False)
    predict = lambda rows: model_set.score_batch(rows)[spec.score]
    result = evaluate(spec, predict, x, y, _prior(spec, y_all))
    result["cutoff"] = cutoff.isoformat()
    return result
