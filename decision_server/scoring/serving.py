"""Serving: load and verify every model, score through one merged graph, fall back per model.

A `ModelSet` is an immutable snapshot of what serves: the verified models, one onnxruntime
session over their merged graph, and for every model that cannot serve (missing, broken, stale,
trained on other features) the reason and its rule-based fallback. `ModelRuntime` swaps in a new
snapshot when the models folder changes, so a request always scores against one consistent set.
Scoring never raises for a model problem: it falls back and says so.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from decision_server import metrics
from decision_server.db import utcnow
from decision_server.features.definition import FEATURE_NAMES
from decision_server.polling import Poller
from decision_server.scoring import store
from decision_server.scoring.onnx_io import (
    INPUT,
    make_session,
    merge,
    score_output,
    to_score,
)
from decision_server.scoring.specs import MODELS, ModelSpec

log = logging.getLogger("decision_server.models")


@dataclasses.dataclass(frozen=True)
class ModelStatus:
    """Whether one model serves, which version, and if not, why (its fallback is used)."""

    name: str
    score: str
    version: str | None
    fallback: bool
    reason: str | None = None
    card: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The status as decisions and the API report it."""
        return {"version": self.version, "fallback": self.fallback, "reason": self.reason}


class ModelInvalid(Exception):
    """A model file that must not serve; the message says why."""


def _verify(
    spec: ModelSpec, models_dir: Path, version: str, now: dt.datetime, max_age_days: float, feature_names: tuple[str, ...]
) -> tuple[dict, onnx.ModelProto, list[int] | None]:
    """Check one version's files, card and graph against the spec and today's feature set.

    Returns the card, the graph, and where the model's features sit in today's feature set (None
    when they are today's features in today's order).
    """
    problem = store.check_files(models_dir, spec.name, version)
    if problem:
        raise ModelInvalid(problem)
    card = store.read_card(models_dir, spec.name, version)
    if card.get("task") != spec.task or card.get("score") != spec.score:
        raise ModelInvalid(
            f"card says task {card.get('task')!r} and score {card.get('score')!r}, expected {spec.task!r} and {spec.score!r}"
        )
    declared = (card.get("inputs") or [{}])[0].get("features") or []
    names = [f.get("name") for f in declared]
    if not names or any(f.get("dtype") != "float32" for f in declared):
        raise ModelInvalid("card lists no float32 input features")
    gone = [n for n in names if n not in feature_names]
    if gone:
        raise ModelInvalid(f"needs features the feature set no longer has ({', '.join(map(str, gone[:5]))}); retrain it")
    columns = None if tuple(names) == tuple(feature_names) else [feature_names.index(n) for n in names]
    try:
        model = onnx.load_model_from_string((models_dir / spec.name / version / store.MODEL_FILE).read_bytes())
    except Exception as exc:  # a corrupt protobuf raises one of several decode errors
        raise ModelInvalid(f"model.onnx cannot be read: {exc}") from exc
    graph_inputs = [(i.name, i.type.tensor_type.elem_type) for i in model.graph.input]
    if graph_inputs != [(INPUT, onnx.TensorProto.FLOAT)]:
        raise ModelInvalid(f"graph inputs are {graph_inputs}, expected one float32 input named {INPUT!r}")
    width = model.graph.input[0].type.tensor_type.shape.dim[-1].dim_value
    if width != len(names):
        raise ModelInvalid(f"graph takes {width} features, its card lists {len(names)}")
    wanted = score_output(spec.task)
    if wanted not in {o.name for o in model.graph.output}:
        raise ModelInvalid(f"graph has no output {wanted!r}")
    if spec.task == "multiclass" and not set(card.get("classes") or []) <= set(spec.classes):
        raise ModelInvalid(f"classes {card.get('classes')} are not all in {list(spec.classes)}")
    try:
        created = dt.datetime.fromisoformat(card["created_at"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelInvalid("card has no valid created_at") from exc
    age = (now - created).total_seconds() / 86_400
    if max_age_days and age > max_age_days:
        raise ModelInvalid(f"stale: trained {age:.0f} days ago, the limit is {max_age_days:g} (MODEL_MAX_AGE_DAYS)")
    return card, model, columns


@dataclasses.dataclass
class Scores:
    """All model scores of one customer, and which model (version or fallback) made each."""

    values: dict[str, Any]
    models: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"scores": self.values, "models": self.models}


class ModelSet:
    """The models that serve now: immutable; build a new one to change anything."""

    def __init__(
        self,
        models_dir: Path,
        *,
        max_age_days: float = 180.0,
        now: dt.datetime | None = None,
        feature_names: tuple[str, ...] = FEATURE_NAMES,
    ):
        now = now or utcnow()
        self.feature_names = feature_names
        self.models_dir = models_dir
        self.max_age_days = max_age_days
        self.loaded_at = now
        self.statuses: dict[str, ModelStatus] = {}
        protos: dict[str, onnx.ModelProto] = {}
        sessions: dict[str, Any] = {}
        columns: dict[str, list[int] | None] = {}
        for spec in MODELS:
            version = store.active_version(models_dir, spec.name)
            if version is None:
                self.statuses[spec.name] = ModelStatus(
                    spec.name, spec.score, None, True, "missing: no trained version (run `decision-server train`)"
                )
                continue
            try:
                card, proto, columns[spec.name] = _verify(spec, models_dir, version, now, max_age_days, feature_names)
                sessions[spec.name] = _open_alone(proto)
            except (ModelInvalid, OSError, ValueError) as exc:
                self.statuses[spec.name] = ModelStatus(spec.name, spec.score, version, True, str(exc))
                log.warning("model falls back", extra={"model": spec.name, "version": version, "reason": str(exc)})
                continue
            self.statuses[spec.name] = ModelStatus(spec.name, spec.score, version, False, None, card)
            protos[spec.name] = proto
        self._fallbacks: list[ModelSpec] = [s for s in MODELS if self.statuses[s.name].fallback]
        # Each runner is one session call: (session, output names, [(spec, classes)], columns to pick or None).
        self._runners: list[tuple[Any, list[str], list[tuple[ModelSpec, list[str]]], Any]] = []
        self.merged = False
        if protos:
            self._open(protos, sessions, columns)
        self._models = {s.name: self.statuses[s.name].to_dict() for s in MODELS}

    def _open(self, protos: dict[str, onnx.ModelProto], sessions: dict[str, Any], columns: dict[str, list[int] | None]) -> None:
        """Run the verified models as one merged graph, or one session each if merging fails."""
        served = [(spec, list(self.statuses[spec.name].card.get("classes") or [])) for spec in MODELS if spec.name in protos]
        try:
            merged = make_session(merge(protos, columns, len(self.feature_names)))
        except Exception as exc:  # noqa: BLE001 - onnx and onnxruntime raise many types; none may stop serving
            log.error("cannot merge the models; each runs in its own session", extra={"error": str(exc)})
            for spec, classes in served:
                picked = None if columns[spec.name] is None else np.array(columns[spec.name])
                self._runners.append((sessions[spec.name], [score_output(spec.task)], [(spec, classes)], picked))
            return
        self._runners.append((merged, [f"{spec.name}.{score_output(spec.task)}" for spec, _ in served], served, None))
        self.merged = True

    @property
    def models(self) -> dict[str, dict[str, Any]]:
        """Model name → {version, fallback, reason}, as every decision records it."""
        return self._models

    def score(self, x: np.ndarray) -> Scores:
        """Score one customer (x: float32 of shape (1, n_features)) with every model."""
        started = time.perf_counter()
        values: dict[str, Any] = {}
        for session, outputs, served, picked in self._runners:
            raw = session.run(outputs, {INPUT: x if picked is None else np.ascontiguousarray(x[:, picked])})
            for (spec, classes), out in zip(served, raw, strict=True):
                if spec.task == "binary":
                    values[spec.score] = float(out[0, 1]) * spec.scale
                elif spec.task == "regression":
                    values[spec.score] = max(0.0, float(out[0, 0]))
                else:
                    values[spec.score] = {name: float(p) for name, p in zip(classes, out[0], strict=True)}
        for spec in self._fallbacks:
            values[spec.score] = _one(spec, spec.fallback(x))
        metrics.scored(time.perf_counter() - started)
        return Scores(values, self._models)

    def score_batch(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Score many customers (rows of x) with every model: score name → array."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        out: dict[str, np.ndarray] = {}
        for session, outputs, served, picked in self._runners:
            raw = session.run(outputs, {INPUT: x if picked is None else np.ascontiguousarray(x[:, picked])})
            for (spec, classes), values in zip(served, raw, strict=True):
                out[spec.score] = to_score(spec, values, classes)
        for spec in self._fallbacks:
            out[spec.score] = spec.fallback(x)
        return out


def _open_alone(proto: onnx.ModelProto) -> Any:
    """Open a model in its own session: proves onnxruntime can run it before it is merged."""
    try:
        return make_session(proto)
    except Exception as exc:  # onnxruntime raises its own error types
        raise ModelInvalid(f"onnxruntime cannot load it: {exc}") from exc


def _one(spec: ModelSpec, values: np.ndarray) -> Any:
    if spec.task == "multiclass":
        return {name: float(p) for name, p in zip(spec.classes, values[0], strict=True)}
    return float(values[0])


class ModelRuntime:
    """The ModelSet that serves, replaced when the models folder changes (polled)."""

    def __init__(self, models_dir: Path, *, max_age_days: float = 180.0, poll_seconds: float = 2.0):
        self.models_dir = models_dir
        self.max_age_days = max_age_days
        self.poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._poller = Poller("models-watcher", poll_seconds, self.sync, log)
        self._fingerprint: tuple | None = None
        self._current: ModelSet | None = None

    @property
    def current(self) -> ModelSet:
        """The snapshot that serves now (loaded on first use if start() was not called)."""
        current = self._current
        if current is None:
            self.sync()
            current = self._current
        return current

    @property
    def loaded(self) -> bool:
        """Whether a model set has been loaded (what /ready reports; `current` would load one)."""
        return self._current is not None

    def start(self) -> None:
        """Load the models now and follow changes in the background (unless poll_seconds is 0)."""
        self.sync()
        self._poller.start()

    def stop(self) -> None:
        """Stop following changes."""
        self._poller.stop()

    def fingerprint(self) -> tuple:
        """What, on disk, decides which models serve: active versions and their files' stats."""
        parts: list[Any] = [utcnow().date()]  # a new day can make a model stale
        for spec in MODELS:
            version = store.active_version(self.models_dir, spec.name)
            files = []
            if version:
                for name in (store.MODEL_FILE, store.CARD_FILE):
                    try:
                        st = os.stat(self.models_dir / spec.name / version / name)
                        files.append((st.st_mtime_ns, st.st_size))
                    except OSError:
                        files.append(None)
            parts.append((spec.name, version, tuple(files)))
        return tuple(parts)

    def sync(self) -> bool:
        """Reload when the folder changed; return whether a new set now serves."""
        with self._lock:
            fingerprint = self.fingerprint()
            if fingerprint == self._fingerprint and self._current is not None:
                return False
            fresh = ModelSet(self.models_dir, max_age_days=self.max_age_days)
            self._current, self._fingerprint = fresh, fingerprint
        metrics.models_loaded({name: status.fallback for name, status in fresh.statuses.items()})
        log.info(
            "models loaded",
            extra={"models": {n: (s["version"] if not s["fallback"] else "fallback") for n, s in fresh.models.items()}},
        )
        return True
