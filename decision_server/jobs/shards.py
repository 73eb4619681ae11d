"""The bulk pass on a Dask cluster: each chunk of customers is a shard, read and evaluated by a worker.

A worker reads its shard (jobs/chunks.py) and evaluates it (evaluation.evaluate: scores,
RFM, CLV, stage, value, journey, segments, a what-if's counts): the same functions as in process,
so the same results. The pass's process then writes what changed, chunk by chunk with the run's
checkpoint, as it does in process: one writer, so a killed run still resumes exactly.

What a worker needs travels with the run (`Work`, sent to every worker once), not with each
shard, and nothing is read from the worker's disk: the rule files of the revision (and of the
serving revision a what-if compares with), the models' files (the active version of each, a few
hundred KB), the segment definitions, the RFM cut points. A worker builds the revision and the
models once per run and keeps the last run's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import tempfile
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class Segment:
    """A segment definition as a worker compiles it (the columns segments.COMPILED reads)."""

    id: int
    name: str
    description: str
    condition: str
    updated_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class Work:
    """Everything a worker needs to evaluate the run's shards."""

    key: str  # identifies the inputs below: a worker builds them once per key
    revision_id: str
    files: dict[str, str]
    steps: tuple[str, ...]
    moment: dt.datetime
    as_of: dt.datetime | None
    cuts: dict[str, list[float]]
    run_id: int | None
    segments: tuple[Segment, ...]
    margin: Decimal
    dry_run: bool
    models: dict[str, bytes]  # relative path -> content: the active version of each model
    model_versions: dict[str, str]  # the models the pass scores with (not falling back): name -> version
    max_age_days: float
    models_at: dt.datetime  # the moment the pass's models were checked for age: the workers check the same
    offers: Any = None  # an offer_reach.Trial without its revision (baseline_files instead)
    baseline_files: dict[str, str] | None = None
    limits: Any = None  # the rules.source.Limits the revision was built within


def work(
    revision: Any,
    models: Any,
    *,
    steps: tuple[str, ...],
    moment: dt.datetime,
    as_of: dt.datetime | None,
    cuts: dict[str, list[float]],
    run_id: int | None,
    segments: list[Any],
    margin: Decimal,
    dry_run: bool,
    offers: Any = None,
) -> Work:
    """Describe the run for the workers."""
    bundle = model_files(models)
    digest = hashlib.sha256(
        repr(
            (
                revision.id,
                sorted((k, hashlib.sha256(v).hexdigest()) for k, v in bundle.items()),
                steps,
                moment,
                as_of,
                cuts,
                run_id,
                [dataclasses.astuple(_segment(s)) for s in segments],
                margin,
                dry_run,
                offers.baseline.id if offers else None,
                offers.channels if offers else None,
            )
        ).encode()
    ).hexdigest()
    return Work(
        key=digest,
        revision_id=revision.id,
        files=dict(revision.files),
        steps=tuple(steps),
        moment=moment,
        as_of=as_of,
        cuts=cuts,
        run_id=run_id,
        segments=tuple(_segment(s) for s in segments),
        margin=margin,
        dry_run=dry_run,
        models=bundle,
        model_versions=served(models),
        max_age_days=float(getattr(models, "max_age_days", 180.0)),
        models_at=getattr(models, "loaded_at", moment),
        offers=dataclasses.replace(offers, baseline=None) if offers else None,
        baseline_files=dict(offers.baseline.files) if offers else None,
        limits=revision.limits,
    )


def served(models: Any) -> dict[str, str]:
    """The models a model set scores with (the others fall back to their rules): name -> version."""
    return {name: s.version for name, s in getattr(models, "statuses", {}).items() if not s.fallback}


def _segment(row: Any) -> Segment:
    return Segment(row.id, row.name, row.description, row.condition, row.updated_at)


def model_files(models: Any) -> dict[str, bytes]:
    """The files of each model's active version, and the ACTIVE pointers, by path in the models folder."""
    from decision_server.scoring import store

    folder, out = getattr(models, "models_dir", None), {}
    for name, status in getattr(models, "statuses", {}).items():
        if folder is None or status.version is None or status.fallback:
            continue
        version_dir = Path(folder) / name / status.version
        for file in (store.MODEL_FILE, store.CARD_FILE):
            out[f"{name}/{status.version}/{file}"] = (version_dir / file).read_bytes()
        out[f"{name}/{store.ACTIVE_FILE}"] = status.version.encode()
    return out


class _Built:
    """What a worker built for one run: the revisions, the models, the compiled segments."""

    def __init__(self, spec: Work):
        from decision_server.rules.engine import build_revision
        from decision_server.scoring.serving import ModelSet
        from decision_server.segments import service as segments

        self.key = spec.key
        self.revision = build_revision(spec.files, backend="python", run_cases=False, limits=spec.limits)
        if self.revision.id != spec.revision_id:
            raise RuntimeError(f"the worker built revision {self.revision.short_id}, not {spec.revision_id[:12]}")
        self.baseline = (
            build_revision(spec.baseline_files, backend="python", run_cases=False, limits=spec.limits)
            if spec.baseline_files
            else None
        )
        self._folder = tempfile.TemporaryDirectory(prefix="decision-server-models-")
        for path, content in spec.models.items():
            target = Path(self._folder.name) / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        self.models = ModelSet(Path(self._folder.name), max_age_days=spec.max_age_days, now=spec.models_at)
        if served(self.models) != spec.model_versions:
            raise RuntimeError(f"the worker scores with {served(self.models)}, the pass with {spec.model_versions}")
        self.compiled = {row.id: segments.COMPILED.get(row, self.revision) for row in spec.segments}
        self.offers = dataclasses.replace(spec.offers, baseline=self.baseline) if spec.offers else None

    def close(self) -> None:
        self.revision.close()
        if self.baseline is not None:
            self.baseline.close()
        self._folder.cleanup()


_built: _Built | None = None
_lock = threading.Lock()


def evaluate_on_worker(chunk: Any, spec: Work) -> Any:
    """Evaluate a shard read on this worker; keep the verdict on the chunk and drop the features
    (the pass's process needs only ids, state, memberships and stamps to write)."""
    global _built
    from decision_server.jobs import evaluation

    with _lock:  # a worker's threads share one build per run
        if _built is None or _built.key != spec.key:
            if _built is not None:
                _built.close()
            _built = _Built(spec)
        built = _built
    chunk.evaluated = evaluation.evaluate(
        chunk,
        built.revision,
        built.models,
        steps=spec.steps,
        moment=spec.moment,
        as_of=spec.as_of,
        cuts=spec.cuts,
        run_id=spec.run_id,
        compiled=built.compiled,
        margin=spec.margin,
        dry_run=spec.dry_run,
        offers=built.offers if "offers" in spec.steps else None,
    )
    chunk.features = None
    return chunk
