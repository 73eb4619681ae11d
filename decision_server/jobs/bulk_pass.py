"""One bulk pass over every customer: features once, then RFM, CLV, value, stage, journey, segments.

Each step used to read the event tables on its own (RFM, CLV, the feature pass of stages and
again of segments). Here the customers are read chunk by chunk once, and each chunk gives
everything:

1. Before the pass, the RFM cut points of the whole base. As of now they come from the state
   rows, which every event keeps current (transaction_count, total_spend_cents,
   last_purchase_at: exactly RFM's values); as of a past moment, from the transactions.
2. Two reader processes compute the next chunks' aggregates with set-based SQL
   (features/bulk.py: one statement per event table) and read their state rows, while the main
   process evaluates and writes the current one (jobs/chunks.py). At most three chunks are
   held at once. On a Dask cluster, each chunk is a shard that a worker reads and evaluates
   (step 3, jobs/shards.py); the main process only writes.
3. The main process scores the chunk with every model (one batched onnxruntime call), places
   RFM against the cut points (scored from the recomputed aggregates; a state row that
   disagrees with its events is counted as `state_drift` and logged), names RFM segments,
   computes value, stage and journey with the vectorized rules, historical CLV in exact cents,
   and segment memberships (jobs/evaluation.py: a chunk in, its verdicts out, no database).
4. One transaction per chunk (jobs/writes.py) writes only what changed: the state columns of
   changed customers, their stage transitions (source = bulk) and membership changes. It first locks the chunk's
   state rows; a customer whose row an event rewrote after the chunk was read is left as the
   event made it (it is newer) and counted in `skipped_newer`. An event for a customer of the
   chunk being written waits for that transaction to end.

Steps: "rfm" (scores and run), "stages" (stage, value and journey), "segments", and in a dry run
"offers" (offer reach before and after: jobs/offer_reach.py). Without "rfm", value reads the
RFM scores the state rows hold.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from decision_server import fastsql
from decision_server.customers.records import CustomerStateRecord
from decision_server.db import Database, utcnow
from decision_server.errors import ValidationError
from decision_server.features import bulk
from decision_server.jobs import offer_reach, shards
from decision_server.jobs.chunks import readers
from decision_server.jobs.evaluation import MOVES, Tally, evaluate
from decision_server.jobs.writes import Statements, write_chunk
from decision_server.rfm import service as rfm
from decision_server.rfm.records import RfmRunRecord
from decision_server.rulebook.requirements import NEEDED, require
from decision_server.segments import service as segments
from decision_server.segments.records import SegmentCountRecord, SegmentMemberRecord

log = logging.getLogger(__name__)

STEPS = ("rfm", "stages", "segments")
DRY_RUN_STEPS = (*STEPS, "offers")  # offer reach changes nothing: it is only counted
# Some customers (a segment, a list) are read by their ids when sparse (bulk.of): this many at a
# time keeps each statement's bound parameters under SQLite's limit (32,766).
SUBSET_CHUNK = 10_000
_st = CustomerStateRecord.__table__
_runs = RfmRunRecord.__table__
_m = SegmentMemberRecord.__table__


@dataclasses.dataclass
class Progress:
    """Where a pass is: handed to the progress callback after every chunk."""

    done: int
    total: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        return (self.total - self.done) / self.rate if self.rate > 0 else None


def _cut_points(conn: Connection, as_of: dt.datetime | None) -> tuple[dict[str, list[float]], int]:
    """Return the RFM cut points of every buyer (from state rows as of now, else from transactions)."""
    if as_of is None:  # 24 bytes a buyer: quintiles need every value; read in slices of 100,000 rows
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        query = sa.select(_st.c.last_purchase_at, _st.c.transaction_count, _st.c.total_spend_cents).where(
            _st.c.transaction_count > 0, _st.c.last_purchase_at.is_not(None)
        )
        for rows in fastsql.raw_slices(conn, query, 100_000):
            last_at, count, spend = zip(*rows, strict=True)
            parts.append((bulk.epochs(last_at), np.array(count, dtype=np.float64), np.array(spend, dtype=np.float64)))
        last, count, spend = (np.concatenate([p[k] for p in parts]) if parts else np.zeros(0) for k in range(3))
    else:
        buyers = rfm.read_buyers(conn, as_of)
        last, count, spend = buyers.last_purchase_at, buyers.purchases, buyers.spend_cents
    if not len(last):
        return {k: [] for k in rfm.MEASURES}, 0
    return {"recency": rfm.cut_points(last), "frequency": rfm.cut_points(count), "monetary": rfm.cut_points(spend)}, len(last)


def run(
    database: Database,
    revision: Any,
    models: Any,
    *,
    steps: Sequence[str] = STEPS,
    as_of: dt.datetime | None = None,
    margin: Decimal = Decimal("0.30"),
    chunk: int = bulk.CHUNK,
    source: str = "bulk",
    segment_ids: Sequence[int] | None = None,
    progress: Callable[[Progress], None] | None = None,
    dry_run: bool = False,
    resume: Checkpoint | None = None,
    on_chunk: Callable[[Connection, Checkpoint], None] | None = None,
    dask_address: str | None = None,
    customers: Sequence[int] | None = None,
    offers: offer_reach.Trial | None = None,
) -> dict[str, Any]:
    """Re-evaluate every customer (as of now, or `as_of`) in one pass; return what changed.

    The result has: customers, buyers, seconds, rfm (the run: id, cuts, segments), stage changes
    (`changed`, `transitions` by from → to), `revalued` (value score or segment changed),
    `written` (state rows written), segment sizes, CLV totals (revenue, cost, profit in cents),
    `state_drift`, `skipped_newer` and `reader_peak_mb` (the reader processes' peak memory). Transitions and stage changes are stamped `as_of` (or now);
    `segment_ids` limits the segments step to those segments.

    `dry_run` writes nothing (no RFM run either) and adds `before` and `after`: how many customers
    have each stage, value segment, RFM segment, journey stage and segment membership, now and as
    the revision would make them; and `moves`: for value_segment and journey_stage, the customers
    it would move from → to ([{from, to, count}], "none" for no value). `on_chunk(conn, checkpoint)` runs inside each chunk's write
    transaction (a job records its checkpoint there, so a chunk and its checkpoint commit
    together); `resume` continues such a run after the checkpoint's last customer, with the same
    RFM cut points and counts. With `dask_address` the chunks are read and evaluated by the tasks
    of a Dask cluster instead of two local processes (the same functions, so the same results).
    `customers` (ids) re-evaluates only those: RFM places them against the newest run's cut points
    (quintiles are the whole base's), as the event path does; the chunks still read by id range.
    The "offers" step (dry runs only) tries the `offers` trial's offers and adds `offers` to the
    result (offer_reach.result).
    """
    unknown = sorted(set(steps) - set(DRY_RUN_STEPS if dry_run else STEPS))
    if unknown:
        raise ValueError(f"unknown steps {unknown}; the steps are {', '.join(DRY_RUN_STEPS if dry_run else STEPS)}")
    if "offers" in steps and offers is None:
        raise ValueError("the offers step needs the offers to try (offer_reach.trial)")
    require(revision, *(name for step in steps for name in NEEDED[step]))
    if offers is not None and "offers" in steps:
        require(offers.baseline, *NEEDED["offers"])
    started = time.perf_counter()
    now = utcnow()
    moment = as_of or now
    run_id = None
    with database.connection() as conn:
        if customers is not None:  # some customers: in id order, after the checkpoint
            wanted = np.unique(np.asarray(customers, dtype=np.int64))
            wanted = wanted[wanted > (resume.after_id if resume else 0)]
            size = min(chunk, SUBSET_CHUNK)
            chunks = [wanted[i : i + size] for i in range(0, len(wanted), size)]
        else:
            chunks = list(bulk.customer_ids(conn, moment, chunk=chunk, after=resume.after_id if resume else 0))
        if resume is not None and resume.rfm is not None:
            run_id, cuts, buyers = resume.rfm["id"], resume.rfm["cuts"], resume.rfm["buyers"]
        elif "rfm" in steps and customers is not None:  # quintiles are the whole base's: the newest run's
            latest = rfm.latest_run(conn)
            if latest is None:
                raise ValidationError(
                    "no RFM run yet to place some customers against: run the rfm step for everyone first",
                    errors={"steps": ["rfm needs a run over every customer first"]},
                )
            run_id, cuts, buyers = latest.id, latest.cuts, latest.buyers
        elif "rfm" in steps:
            cuts, buyers = _cut_points(conn, as_of)
        else:
            cuts, buyers = {}, 0
        active = (
            [row for row in segments.active_segments(conn) if segment_ids is None or row.id in segment_ids]
            if "segments" in steps
            else []
        )
    compiled = {row.id: segments.COMPILED.get(row, revision) for row in active}
    done = resume.done if resume else 0
    total = done + int(sum(len(c) for c in chunks))
    if "rfm" in steps and run_id is None and not dry_run:
        with database.connection(write=True) as conn:
            run_id = conn.execute(
                sa.insert(_runs)
                .values(
                    as_of=moment,
                    buyers=buyers,
                    cuts=cuts,
                    segments={},
                    rule_revision=revision.id,
                    source=source,
                    seconds=0.0,
                    created_at=now,
                )
                .returning(_runs.c.id)
            ).scalar_one()
    tally = Tally.load(resume.tally) if resume else Tally()
    checkpoint = Checkpoint(
        after_id=resume.after_id if resume else 0,
        done=done,
        tally=tally.dump(),
        total=total,
        rfm={"id": run_id, "cuts": cuts, "buyers": buyers} if "rfm" in steps else None,
    )
    update = Statements(database)
    with_loyalty = "offers" in steps
    work = (
        shards.work(
            revision,
            models,
            steps=tuple(steps),
            moment=moment,
            as_of=as_of,
            cuts=cuts,
            run_id=run_id,
            segments=active,
            margin=margin,
            dry_run=dry_run,
            offers=offers if with_loyalty else None,
        )
        if dask_address
        else None
    )
    with readers(database, len(chunks), dask_address, work) as (read, depth):
        ahead = [read(ids, moment, list(compiled), with_loyalty) for ids in chunks[:depth]]
        for index in range(len(chunks)):
            current = ahead.pop(0).result()
            if index + depth < len(chunks):
                ahead.append(read(chunks[index + depth], moment, list(compiled), with_loyalty))
            done += len(current.ids)
            checkpoint = dataclasses.replace(checkpoint, after_id=int(current.ids[-1]), done=done)

            def commit(conn: Connection, checkpoint: Checkpoint = checkpoint) -> None:
                if on_chunk is not None:
                    on_chunk(conn, dataclasses.replace(checkpoint, tally=tally.dump()))

            evaluated = current.evaluated or evaluate(
                current,
                revision,
                models,
                steps=steps,
                moment=moment,
                as_of=as_of,
                cuts=cuts,
                run_id=run_id,
                compiled=compiled,
                margin=margin,
                dry_run=dry_run,
                offers=offers if with_loyalty else None,
            )
            tally.add(evaluated.tally)
            if dry_run:
                with database.connection(write=True) as conn:
                    commit(conn)
            else:
                write_chunk(
                    database,
                    current,
                    evaluated,
                    revision=revision,
                    now=moment,
                    source=source,
                    tally=tally,
                    update=update,
                    commit=commit,
                )
            if current.reader_peak_mb is not None:
                tally.reader_peak_mb = max(tally.reader_peak_mb, current.reader_peak_mb)
            if progress is not None:
                progress(Progress(done, total, time.perf_counter() - started))
    sizes = {}
    with database.connection(write=not dry_run) as conn:
        for row in active if not dry_run else ():
            members = conn.execute(sa.select(sa.func.count()).where(_m.c.segment_id == row.id)).scalar()
            conn.execute(sa.insert(SegmentCountRecord.__table__).values(segment_id=row.id, at=moment, members=members))
            sizes[row.name] = members
        rfm_out = None
        if run_id is not None and not dry_run:
            named = {str(k): int(v) for k, v in sorted(tally.rfm_segments.items(), key=lambda kv: -kv[1])}
            if customers is None:  # the run is this pass's own (not the newest run some customers were placed on)
                conn.execute(
                    sa.update(_runs)
                    .where(_runs.c.id == run_id)
                    .values(segments=named, moves=tally.rfm_moves, seconds=time.perf_counter() - started)
                )
            rfm_out = {"id": run_id, "as_of": moment, "buyers": buyers, "cuts": cuts, "segments": named}
    if dry_run:
        names = {row.id: row.name for row in active}
        sizes = {names[int(k)]: v for k, v in tally.after.pop("segments", {}).items()}
    if tally.drift:
        log.warning("%d state rows disagreed with their events (RFM values); their scores come from the events", tally.drift)
    return {
        "customers": done,
        "buyers": buyers,
        "seconds": time.perf_counter() - started,
        "rfm": rfm_out,
        "changed": sum(tally.moves.values()),
        "revalued": tally.revalued,
        "written": tally.written,
        "transitions": [{"from": k[0], "to": k[1], "count": v} for k, v in sorted(tally.moves.items(), key=lambda kv: -kv[1])],
        "segments": sizes,
        "clv": {k: int(v) for k, v in tally.clv.items()},
        "state_drift": tally.drift,
        "skipped_newer": tally.skipped,
        "reader_peak_mb": tally.reader_peak_mb or None,
        **(
            {
                "dry_run": True,
                "before": _named(tally.before, active),
                "after": {**tally.after, "segments": sizes},
                "moves": {field: _listed(tally.changes.get(field, {})) for field in MOVES},
            }
            if dry_run
            else {}
        ),
        **({"offers": offer_reach.result(offers, tally.offers)} if "offers" in steps and offers is not None else {}),
    }


def _listed(moves: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """Moves {from: {to: customers}} as [{from, to, count}], the most customers first."""
    flat = [{"from": a, "to": b, "count": n} for a, row in moves.items() for b, n in row.items()]
    return sorted(flat, key=lambda m: (-m["count"], m["from"], m["to"]))


def _named(counts: dict[str, dict[str, int]], active: list[Any]) -> dict[str, dict[str, int]]:
    names = {str(row.id): row.name for row in active}
    return {**counts, "segments": {names[k]: v for k, v in counts.get("segments", {}).items() if k in names}}


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """Where a pass is, as a job stores it: the last customer done, counts so far, the RFM run."""

    after_id: int
    done: int
    rfm: dict[str, Any] | None  # {"id", "cuts", "buyers"} of the run the pass scores against
    tally: dict[str, Any]
    total: int = 0  # customers in the pass

    def dump(self) -> dict[str, Any]:
        return {"after_id": self.after_id, "done": self.done, "rfm": self.rfm, "tally": self.tally, "total": self.total}

    @classmethod
    def load(cls, data: dict[str, Any]) -> Checkpoint:
        return cls(int(data["after_id"]), int(data["done"]), data.get("rfm"), data.get("tally") or {}, int(data.get("total", 0)))
