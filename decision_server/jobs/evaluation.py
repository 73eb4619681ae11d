"""One chunk of the bulk pass evaluated, with no database: scores, RFM, CLV, stage, value, journey,
segments, and in a dry run its before and after counts and offer reach (jobs/bulk_pass.py
reads the chunks and writes the verdicts; on a Dask cluster a worker runs this where it read the
chunk, jobs/shards.py). The counts of a chunk are a Tally, added up by the pass."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import numpy as np

from decision_server.clv import service as clv
from decision_server.features.definition import FEATURE_NAMES
from decision_server.jobs import offer_reach
from decision_server.jobs.chunks import Chunk
from decision_server.lifecycle.service import journey_inputs
from decision_server.rfm import service as rfm
from decision_server.segments import service as segments
from decision_server.value import service as value

# State columns the pass writes where they changed (it reads these and more: chunks.STATE).
WRITTEN = (
    "stage",
    "stage_since",
    "rfm_r",
    "rfm_f",
    "rfm_m",
    "rfm_segment",
    "rfm_run_id",
    "value_score",
    "value_segment",
    "journey_stage",
)


# A what-if counts the moves from → to of these state columns, besides the stage's (Tally.moves).
MOVES = ("value_segment", "journey_stage")


def _numbers(values: np.ndarray) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


@dataclasses.dataclass
class Tally:
    moves: dict[tuple[Any, Any], int] = dataclasses.field(default_factory=dict)
    rfm_segments: dict[str, int] = dataclasses.field(default_factory=dict)
    rfm_moves: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)  # from -> to -> customers
    clv: dict[str, int] = dataclasses.field(default_factory=lambda: {"revenue_cents": 0, "cost_cents": 0, "profit_cents": 0})
    revalued: int = 0
    written: int = 0
    drift: int = 0
    skipped: int = 0
    reader_peak_mb: float = 0.0
    before: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)  # dry runs: field -> value -> customers
    after: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    # dry runs: field (value_segment, journey_stage) -> from -> to -> customers whose value the revision changes
    changes: dict[str, dict[str, dict[str, int]]] = dataclasses.field(default_factory=dict)
    offers: dict[str, Any] = dataclasses.field(default_factory=dict)  # dry runs: offer reach by channel

    def dump(self) -> dict[str, Any]:
        """As JSON, for a job's checkpoint."""
        out = dataclasses.asdict(self)
        out["moves"] = [[a, b, n] for (a, b), n in self.moves.items()]
        return out

    @classmethod
    def load(cls, data: dict[str, Any]) -> Tally:
        if not data:
            return cls()
        fields = {**data, "moves": {(a, b): n for a, b, n in data.get("moves", [])}}
        return cls(**{k: v for k, v in fields.items() if k in {f.name for f in dataclasses.fields(cls)}})

    def add(self, other: Tally) -> None:
        """Add another tally's counts (a chunk's) to this one."""
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if f.name == "reader_peak_mb":
                self.reader_peak_mb = max(mine, theirs)
            elif isinstance(mine, dict):
                _add_counts(mine, theirs)
            else:
                setattr(self, f.name, mine + theirs)

    def count(self, which: str, field: str, values: Any) -> None:
        """Add customers by value of `field` to the before or after distribution."""
        bucket = getattr(self, which).setdefault(field, {})
        for v in values:
            key = "none" if v is None else str(v)
            bucket[key] = bucket.get(key, 0) + 1


def _add_counts(into: dict[Any, Any], more: dict[Any, Any]) -> None:
    """Add nested counts: numbers are summed, dicts merged key by key."""
    for key, count in more.items():
        if isinstance(count, dict):
            _add_counts(into.setdefault(key, {}), count)
        else:
            into[key] = into.get(key, 0) + count


@dataclasses.dataclass
class Evaluated:
    """One chunk evaluated, nothing written yet: the state as it would be, what changed, the chunk's counts."""

    new: dict[str, np.ndarray]  # WRITTEN columns, aligned to the chunk's ids
    changed: np.ndarray  # bool: a written column differs
    moved: np.ndarray  # bool: the stage differs
    rule_ids: np.ndarray | None  # the lifecycle rule that decided each stage
    wanted: dict[int, set[int]]  # segment id -> customers of the chunk inside it
    tally: Tally
    journey_rule_ids: np.ndarray | None = None  # the journey rule that decided each journey stage


def evaluate(
    chunk: Chunk,
    revision: Any,
    models: Any,
    *,
    steps: Sequence[str],
    moment: dt.datetime,
    as_of: dt.datetime | None,
    cuts: dict[str, list[float]],
    run_id: int | None,
    compiled: dict[int, Any],
    margin: Decimal,
    dry_run: bool,
    offers: offer_reach.Trial | None = None,
) -> Evaluated:
    """Evaluate one chunk as read (no database): scores, RFM, CLV, stage, value, journey, segments;
    in a dry run, its before and after counts and offer reach too. It runs where the chunk was read
    when that is a Dask worker (jobs/shards.py), else in the pass's process."""
    ids, agg, state = chunk.ids, chunk.features.aggregates, chunk.state
    tally, now = Tally(), moment
    n = len(ids)
    new = {k: state[k].copy() for k in WRITTEN}
    scores = models.score_batch(chunk.features.values) if ("stages" in steps or compiled or offers) else {}
    bought = agg["purchases"] > 0
    figures = clv.columns(agg, moment, margin)
    for k in tally.clv:
        tally.clv[k] += int(figures[k].sum())
    if as_of is None:  # the state rows gave the cut points: do they agree with the events?
        with_row = chunk.has_row
        drift = with_row & (
            (_numbers(state["transaction_count"]) != agg["purchases"])
            | (_numbers(state["total_spend_cents"]) != agg["spend_cents"])
            | (
                np.array([np.nan if v is None else v.timestamp() for v in state["last_purchase_at"]])
                != np.where(bought, agg["last_purchase_at"], np.nan)
            )
            & bought
        )
        tally.drift += int(drift.sum())
    if "rfm" in steps:
        r = np.full(n, np.nan)
        f, m = r.copy(), r.copy()
        if bought.any() and cuts["recency"]:
            r[bought] = rfm.place(agg["last_purchase_at"][bought], cuts["recency"])
            f[bought] = rfm.place(agg["purchases"][bought], cuts["frequency"])
            m[bought] = rfm.place(agg["spend_cents"][bought], cuts["monetary"])
        names = np.full(n, None, dtype=object)
        if bought.any() and cuts["recency"]:
            names[bought] = rfm.segment_names(
                revision, r[bought].astype(np.int64), f[bought].astype(np.int64), m[bought].astype(np.int64)
            )
            for name, count in zip(*np.unique(names[bought].astype(str), return_counts=True), strict=True):
                tally.rfm_segments[str(name)] = tally.rfm_segments.get(str(name), 0) + int(count)
        for key, column in (("rfm_r", r), ("rfm_f", f), ("rfm_m", m)):
            new[key] = np.array([None if np.isnan(v) else int(v) for v in column], dtype=object)
        new["rfm_segment"] = names
        _count_moves(tally.rfm_moves, state["rfm_segment"], names)
    else:
        r, f, m = (_numbers(state[k]) for k in ("rfm_r", "rfm_f", "rfm_m"))
    moved = np.zeros(n, dtype=bool)
    rule_ids = journey_rule_ids = None
    if "stages" in steps:
        decided = revision.outcome_columns(
            "lifecycle",
            {
                "stage": state["stage"],
                "transaction_count": agg["purchases"],
                "churn_risk": scores["churn_risk"],
                "first_purchase_at": agg["first_purchase_at"],
                "last_purchase_at": agg["last_purchase_at"],
            },
            ("stage",),
            now=moment.timestamp(),
        )
        new["stage"], rule_ids = decided["stage"], decided["rule_id"]
        moved = new["stage"] != state["stage"]
        new["stage_since"][moved] = now
        value_scores, value_segments = value.for_columns(
            revision, transaction_count=agg["purchases"], ltv=scores["ltv"], r=r, f=f, m=m, engagement=scores["engagement_score"]
        )
        old_scores = _numbers(state["value_score"])
        revalued = (
            np.isnan(old_scores) | (np.abs(old_scores - value_scores) >= 0.005) | (value_segments != state["value_segment"])
        )
        tally.revalued += int(revalued.sum())
        new["value_score"] = np.where(revalued, value_scores.astype(object), state["value_score"])
        new["value_segment"] = value_segments
        journey = revision.outcome_columns(
            "journey",
            {name: chunk.features.values[:, FEATURE_NAMES.index(name)].astype(np.float64) for name in journey_inputs(revision)},
            ("journey_stage",),
        )
        new["journey_stage"], journey_rule_ids = journey["journey_stage"], journey["rule_id"]
    changed = np.zeros(n, dtype=bool)
    for k in WRITTEN:
        if k not in ("stage_since", "rfm_run_id"):
            changed |= new[k] != state[k]
    if run_id is not None:
        new["rfm_run_id"] = np.where(changed, run_id, state["rfm_run_id"])
    wanted = {}
    if compiled:
        columns = segments.condition_columns(chunk.features.values, scores, new)
        wanted = segments.members_among(compiled, columns, ids, moment)
    if dry_run:
        _what_if(chunk, new, changed, moved, wanted, tally)
        if offers is not None:
            offer_reach.count(offers, revision, chunk, scores, new, agg, moment, tally.offers)
    return Evaluated(new, changed, moved, rule_ids, wanted, tally, journey_rule_ids)


def _count_moves(into: dict[str, dict[str, int]], before: np.ndarray, after: np.ndarray) -> None:
    """Count customers by (RFM segment before, after), "none" for no segment; those with neither are left out."""
    for (a, b), count in collections.Counter(zip(before.tolist(), after.tolist(), strict=True)).items():
        if a is None and b is None:
            continue
        row = into.setdefault("none" if a is None else str(a), {})
        key = "none" if b is None else str(b)
        row[key] = row.get(key, 0) + count


def _what_if(
    chunk: Chunk, new: dict[str, np.ndarray], changed: np.ndarray, moved: np.ndarray, wanted: dict[int, set[int]], tally: Tally
) -> None:
    """Count what a dry run would change: distributions before and after, and the moves."""
    for field in ("stage", "value_segment", "rfm_segment", "journey_stage"):
        tally.count("before", field, chunk.state[field])
        tally.count("after", field, new[field])
    for sid, inside in wanted.items():
        for which, members in (("before", chunk.members.get(sid, set())), ("after", inside)):
            bucket = getattr(tally, which).setdefault("segments", {})
            bucket[str(sid)] = bucket.get(str(sid), 0) + len(members)
    for i in np.flatnonzero(moved):
        key = (chunk.state["stage"][i], new["stage"][i])
        tally.moves[key] = tally.moves.get(key, 0) + 1
    for field in MOVES:
        _count_changes(tally.changes.setdefault(field, {}), chunk.state[field], new[field])
    tally.written += int(changed.sum())


def _count_changes(into: dict[str, dict[str, int]], before: np.ndarray, after: np.ndarray) -> None:
    """Count customers by (value before, after) where the two differ; "none" for no value."""
    for (a, b), count in collections.Counter(zip(before.tolist(), after.tolist(), strict=True)).items():
        if a == b:
            continue
        row = into.setdefault("none" if a is None else str(a), {})
        key = "none" if b is None else str(b)
        row[key] = row.get(key, 0) + count
