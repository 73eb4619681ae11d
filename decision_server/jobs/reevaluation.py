"""The re-evaluation job: every customer's RFM, CLV, scores, value, stage, journey and segments
(the bulk pass, jobs/bulk_pass.py), then loyalty tiers and points expiry (loyalty/bulk.py).

Time moves stages even when customers do nothing, so this runs on a schedule as well as on demand.

- **One runner.** A run holds the job's lease while it is `running` and its heartbeat is recent
  (a thread renews it every LEASE / 4). The database allows one running run per job (a unique
  partial index), so of two processes or machines starting at once, one gets the lease and the
  other is refused (`job_running`, 409) with the time the lease expires unless renewed. A runner
  whose process is gone from this host (jobs/runners.py) is taken over at once, without waiting.
- **Resumable.** Each chunk of the pass commits together with the run's checkpoint (the last
  customer done, the counts so far, the RFM cut points). A run whose runner died (its process gone,
  or its heartbeat older than LEASE) or failed is resumed by the next start with the same steps: it
  continues after the last committed chunk, so no change is lost or made twice. A runner that lost
  its lease (it was presumed dead and another took over) stops at its next chunk, whose transaction
  rolls back.
- **Recorded.** Every run is a row of `bulk_runs`: steps, status, start, heartbeat, end, progress
  (done, total, phase), result counts and the error of a failed run. Its rate and time left count
  running time only: the time between a dead runner's last heartbeat and the resume is left out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from decision_server import metrics
from decision_server.db import Database, utcnow
from decision_server.errors import Conflict, ValidationError
from decision_server.jobs import bulk_pass, runners
from decision_server.jobs.records import BulkRunRecord

log = logging.getLogger(__name__)

JOB = "reevaluate"
WHAT_IF = "what-if"  # dry runs hold a lease of their own: they write nothing, so a nightly run need not wait for them
STEPS = (*bulk_pass.STEPS, "tiers", "expiry")
# A what-if (dry run) also tries the offers (who could have which, before and after); it has no expiry.
WHAT_IF_STEPS = (*bulk_pass.STEPS, "tiers", "offers")
# A running run whose heartbeat is older than this has lost its runner (JOB_LEASE_SECONDS; renewed every quarter).
LEASE = dt.timedelta(seconds=float(os.environ.get("JOB_LEASE_SECONDS") or 120))
_runs = BulkRunRecord.__table__


class JobRunning(Conflict):
    """Another runner holds the job's lease."""

    code = "job_running"


class LeaseLost(Exception):
    """This runner was presumed dead and another took the run over: stop without committing."""


@dataclasses.dataclass
class Status:
    """Progress handed to the callback: the phase, customers or members done and in all."""

    run_id: int
    phase: str
    done: int
    total: int
    seconds: float  # running seconds of the run, a resumed run's earlier runners included


def check_steps(steps: Sequence[str], *, dry_run: bool = False) -> tuple[str, ...]:
    """Return the steps in running order; refuse unknown ones with the list of valid steps."""
    if "offers" in steps and not dry_run:
        message = (
            "offers is a dry-run step (POST /jobs/what-if, or reevaluate --dry-run): it counts which offers "
            "customers could have and changes nothing"
        )
        raise ValidationError(message, errors={"steps": [message]})
    valid = (*STEPS, "offers") if dry_run else STEPS
    unknown = [s for s in steps if s not in valid]
    if unknown:
        message = f"unknown step {', '.join(unknown)}; the steps are {', '.join(valid)}"
        raise ValidationError(message, errors={"steps": [message]})
    return tuple(s for s in valid if s in steps) or STEPS


def run(
    database: Database,
    revision: Any,
    models: Any,
    *,
    steps: Sequence[str] = STEPS,
    dry_run: bool = False,
    source: str = "cli",
    margin: Decimal = Decimal("0.30"),
    resume: bool = True,
    chunk: int | None = None,
    progress: Callable[[Status], None] | None = None,
    dask_address: str | None = None,
    customers: Sequence[int] | None = None,
    offers: Any = None,
) -> dict[str, Any]:
    """Run the job now in this process (or resume an unfinished run); return its row when it ends.

    `customers` (ids) re-evaluates only those (the pass's steps only; never resumed by a full run).
    `offers` (an offer_reach.Trial) is what the "offers" step of a dry run tries.

    Raises JobRunning if another runner holds the lease. A failure is recorded on the run (status
    failed, the error) and raised again.
    """
    if customers is not None:
        loyalty = [s for s in check_steps(steps, dry_run=dry_run) if s not in bulk_pass.DRY_RUN_STEPS]
        if loyalty:
            message = f"{', '.join(loyalty)} run for every member only; leave them out when naming customers"
            raise ValidationError(message, errors={"steps": [message]})
    row = claim(
        database,
        steps,
        dry_run=dry_run,
        source=source,
        revision=revision.id,
        resume=resume and customers is None,
        subset=len(customers) if customers is not None else None,
    )
    return execute(
        database,
        revision,
        models,
        row,
        margin=margin,
        chunk=chunk,
        progress=progress,
        dask_address=dask_address,
        customers=customers,
        offers=offers,
    )


def start(
    database: Database,
    revision: Any,
    models: Any,
    *,
    steps: Sequence[str] = STEPS,
    dry_run: bool = False,
    source: str = "api",
    margin: Decimal = Decimal("0.30"),
    on_end: Callable[[], None] | None = None,
    dask_address: str | None = None,
    offers: Any = None,
    started_by: str | None = None,
) -> dict[str, Any]:
    """Take the lease now and run the job in a background thread; return the run's row at once.

    `started_by` (`key:NAME`) records whose API key or console session started it.
    """
    row = claim(database, steps, dry_run=dry_run, source=source, revision=revision.id, resume=True, started_by=started_by)

    def work() -> None:
        try:
            execute(database, revision, models, row, margin=margin, dask_address=dask_address, offers=offers)
        except BaseException:  # recorded on the run by execute; a thread has no one to raise to
            log.exception("re-evaluation run %d ended with an error", row["id"])
        finally:
            if on_end is not None:
                on_end()

    threading.Thread(target=work, name=f"reevaluate-{row['id']}", daemon=True).start()
    return with_rate(row)


def execute(
    database: Database,
    revision: Any,
    models: Any,
    row: dict[str, Any],
    *,
    margin: Decimal = Decimal("0.30"),
    chunk: int | None = None,
    progress: Callable[[Status], None] | None = None,
    dask_address: str | None = None,
    customers: Sequence[int] | None = None,
    offers: Any = None,
) -> dict[str, Any]:
    """Run a claimed run to its end in this thread (heartbeat included); return its final row."""
    run_id, me = row["id"], row["runner"]
    started = time.perf_counter()
    lease = Heartbeat(database, run_id, me)
    lease.start()
    try:
        try:
            result = _phases(
                database,
                revision,
                models,
                row,
                steps=tuple(row["steps"]),
                dry_run=row["dry_run"],
                margin=margin,
                chunk=chunk,
                me=me,
                lease=lease,
                started=started,
                progress=progress,
                dask_address=dask_address,
                customers=customers,
                offers=offers,
            )
        except BaseException as exc:
            lease.stop()
            if not isinstance(exc, LeaseLost):
                _finish(database, run_id, me, status="failed", error=f"{type(exc).__name__}: {exc}")
                log.error("re-evaluation run %d failed: %s", run_id, exc)
            metrics.job_ended(row["job"], "lost" if isinstance(exc, LeaseLost) else "failed", time.perf_counter() - started)
            raise
        lease.stop()
        _finish(database, run_id, me, status="succeeded", result=result)
    finally:
        runners.release(me)  # held since claim: from now on a start here may take the run over
    log.info("re-evaluation run %d succeeded in %.1f s", run_id, time.perf_counter() - started)
    metrics.job_ended(
        row["job"], "succeeded", time.perf_counter() - started, records=(result.get("pass") or {}).get("customers", 0)
    )
    return get(database, run_id)


def _phases(
    database: Database,
    revision: Any,
    models: Any,
    row: dict[str, Any],
    *,
    steps: tuple[str, ...],
    dry_run: bool,
    margin: Decimal,
    chunk: int | None,
    me: str,
    lease: Heartbeat,
    started: float,
    progress: Callable[[Status], None] | None,
    dask_address: str | None,
    customers: Sequence[int] | None = None,
    offers: Any = None,
) -> dict[str, Any]:
    from decision_server.loyalty import bulk as loyalty_bulk

    run_id = row["id"]
    saved = row["checkpoint"] or {}
    result: dict[str, Any] = dict(saved.get("results") or {})
    subset = saved.get("subset")  # a run over some customers keeps saying so, so no full run resumes it
    as_of = row["as_of"]
    pass_steps = tuple(s for s in steps if s in bulk_pass.DRY_RUN_STEPS)

    def report(phase: str, done: int, total: int) -> None:
        lease.check()
        seconds = row["prior_seconds"] + time.perf_counter() - started  # done counts the runners before this one too
        rate = done / seconds if seconds > 0 else 0.0
        left = f"{(total - done) / rate:.0f} s left" if rate and total > done else "done"
        log.info("re-evaluation run %d: %s %d of %d (%.0f/s, %s)", run_id, phase, done, total, rate, left)
        if progress is not None:
            progress(Status(run_id, phase, done, total, seconds))

    if pass_steps and "pass" not in result:
        resume = bulk_pass.Checkpoint.load(saved["pass"]) if saved.get("pass") else None

        def on_chunk(conn: Connection, checkpoint: bulk_pass.Checkpoint) -> None:
            _save(
                conn,
                run_id,
                me,
                phase="pass",
                done=checkpoint.done,
                checkpoint={"results": result, "pass": checkpoint.dump(), "subset": subset},
            )

        outcome = bulk_pass.run(
            database,
            revision,
            models,
            steps=pass_steps,
            as_of=as_of,
            margin=margin,
            source="bulk",
            dry_run=dry_run,
            resume=resume,
            on_chunk=on_chunk,
            progress=lambda p: report("pass", p.done, p.total),
            dask_address=dask_address,
            customers=customers,
            offers=offers,
            **({"chunk": chunk} if chunk else {}),
        )
        result["pass"] = _plain(outcome)
        _checkpoint(database, run_id, me, phase="pass", results=result, subset=subset)
    if "tiers" in steps and "tiers" not in result:
        result["tiers"] = loyalty_bulk.review_tiers(
            database, revision, now=as_of, dry_run=dry_run, progress=lambda d, t: report("tiers", d, t)
        )
        _checkpoint(database, run_id, me, phase="tiers", results=result)
    if "expiry" in steps and "expiry" not in result and not dry_run:  # expiry has no dry run: it is due or not
        result["expiry"] = loyalty_bulk.expire_points(database, now=as_of, progress=lambda d, t: report("expiry", d, t))
        _checkpoint(database, run_id, me, phase="expiry", results=result)
    return result


def _plain(outcome: dict[str, Any]) -> dict[str, Any]:
    """The pass's result as JSON (times as ISO text)."""
    out = dict(outcome)
    if out.get("rfm"):
        out["rfm"] = {**out["rfm"], "as_of": out["rfm"]["as_of"].isoformat()}
    return out


def claim(
    database: Database,
    steps: Sequence[str],
    *,
    dry_run: bool,
    source: str,
    revision: str,
    resume: bool = True,
    subset: int | None = None,
    started_by: str | None = None,
) -> dict[str, Any]:
    """Take the job's lease: resume an unfinished run with the same steps, or start a new one."""
    steps = check_steps(steps, dry_run=dry_run)
    me = runners.runner_name() + f":{threading.get_ident() % 100_000}"  # threads of one server are different runners
    now = utcnow()
    with database.connection(write=True) as conn:
        job = WHAT_IF if dry_run else JOB
        running = conn.execute(sa.select(_runs).where(_runs.c.job == job, _runs.c.status == "running").with_for_update()).first()
        if running is not None:
            interrupt(conn, running, now=now)
        latest = conn.execute(sa.select(_runs).where(_runs.c.job == job).order_by(_runs.c.id.desc()).limit(1)).first()
        if (
            resume
            and not dry_run
            and latest is not None
            and latest.status in ("interrupted", "failed")
            and tuple(latest.steps) == steps
            and not latest.dry_run
            and latest.checkpoint
            and not latest.checkpoint.get("subset")
        ):
            conn.execute(
                sa.update(_runs)
                .where(_runs.c.id == latest.id)
                .values(
                    status="running",
                    runner=me,
                    heartbeat_at=now,
                    finished_at=None,
                    error=None,
                    resumes=latest.resumes + 1,
                    resumed_at=now,
                    prior_seconds=running_seconds(latest._mapping),
                )
            )
            log.info(
                "re-evaluation run %d resumed by %s after %s",
                latest.id,
                me,
                (latest.checkpoint or {}).get("pass", {}).get("after_id"),
            )
            runners.hold(me)
            return dict(conn.execute(sa.select(_runs).where(_runs.c.id == latest.id)).one()._mapping)
        try:
            run_id = conn.execute(
                sa.insert(_runs)
                .values(
                    job=job,
                    steps=list(steps),
                    dry_run=dry_run,
                    source=source,
                    started_by=started_by,
                    status="running",
                    as_of=now,
                    started_at=now,
                    heartbeat_at=now,
                    runner=me,
                    rule_revision=revision,
                    done=0,
                    total=0,
                    resumes=0,
                    prior_seconds=0.0,
                    checkpoint={"subset": subset} if subset is not None else None,
                )
                .returning(_runs.c.id)
            ).scalar_one()
        except sa.exc.IntegrityError:  # another runner inserted its run first: the index allows one
            raise JobRunning("another runner has just started the job and is running it; try again when it ends") from None
        runners.hold(me)
        return dict(conn.execute(sa.select(_runs).where(_runs.c.id == run_id)).one()._mapping)


def interrupt(conn: Connection, running: Any, *, now: dt.datetime) -> None:
    """Mark a running run interrupted if its runner is dead (its process gone, or its lease expired); else raise JobRunning."""
    expires = running.heartbeat_at + LEASE
    if now < expires and not runners.gone(running.runner, alive_at=running.resumed_at or running.started_at):
        left = (expires - now).total_seconds()
        at = expires.isoformat(timespec="seconds").replace("+00:00", "Z")
        raise JobRunning(
            f"run {running.id} is running on {running.runner} ({running.done:,} of {running.total:,} done in "
            f"phase {running.phase or 'start'}); its lease expires at {at} ({left:.0f} s from now) unless "
            f"its runner renews it: try again when the run ends or its lease expires",
            errors={"run": [str(running.id)], "lease_expires_at": [at]},
        )
    if now < expires:
        why = f"the process of runner {running.runner} is gone (last heartbeat {running.heartbeat_at.isoformat()})"
        log.warning("run %d of %s: the process of runner %s is gone; taken over at once", running.id, running.job, running.runner)
    else:
        why = f"runner {running.runner} stopped answering after {running.heartbeat_at.isoformat()}"
        log.warning("run %d of %s: runner %s stopped answering; the run can be resumed", running.id, running.job, running.runner)
    conn.execute(
        sa.update(_runs).where(_runs.c.id == running.id, _runs.c.status == "running").values(status="interrupted", error=why)
    )


def _owned(conn: Connection, run_id: int, me: str, **values: Any) -> None:
    """Update our run; raise LeaseLost (rolling the transaction back) if another runner has it."""
    updated = conn.execute(
        sa.update(_runs)
        .where(_runs.c.id == run_id, _runs.c.runner == me, _runs.c.status == "running")
        .values(heartbeat_at=utcnow(), **values)
    )
    if updated.rowcount != 1:
        raise LeaseLost(f"run {run_id} is no longer held by {me}")


def _save(conn: Connection, run_id: int, me: str, *, phase: str, done: int, checkpoint: dict[str, Any]) -> None:
    total = checkpoint.get("pass", {}).get("total")
    _owned(conn, run_id, me, phase=phase, done=done, checkpoint=checkpoint, **({"total": total} if total else {}))


def _checkpoint(
    database: Database, run_id: int, me: str, *, phase: str, results: dict[str, Any], subset: int | None = None
) -> None:
    with database.connection(write=True) as conn:
        _owned(conn, run_id, me, phase=phase, checkpoint={"results": results, "subset": subset})


def _finish(
    database: Database, run_id: int, me: str, *, status: str, result: dict[str, Any] | None = None, error: str | None = None
) -> None:
    with database.connection(write=True) as conn:
        conn.execute(
            sa.update(_runs)
            .where(_runs.c.id == run_id, _runs.c.runner == me)
            .values(status=status, finished_at=utcnow(), heartbeat_at=utcnow(), result=result, error=error)
        )


class Heartbeat:
    """Renews the lease every LEASE / 4 from a thread; notices when it was lost."""

    def __init__(self, database: Database, run_id: int, me: str):
        self.database, self.run_id, self.me = database, run_id, me
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._beat, name=f"lease-{run_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def check(self) -> None:
        if self.lost:
            raise LeaseLost(f"run {self.run_id} is no longer held by {self.me}")

    def _beat(self) -> None:
        while not self._stop.wait(LEASE.total_seconds() / 4):
            try:
                with self.database.connection(write=True) as conn:
                    _owned(conn, self.run_id, self.me)
            except LeaseLost:
                self.lost = True
                return
            except sa.exc.SQLAlchemyError as exc:  # a database hiccup: try again at the next beat
                log.warning("re-evaluation run %d: lease not renewed (%s)", self.run_id, exc)


def get(database: Database, run_id: int) -> dict[str, Any]:
    """Return a run's row with its rate and time left."""
    with database.connection() as conn:
        row = conn.execute(sa.select(_runs).where(_runs.c.id == run_id)).first()
    if row is None:
        from decision_server.errors import NotFound

        raise NotFound(f"no run {run_id}", errors={"id": [str(run_id)]})
    return with_rate(dict(row._mapping))


def running_seconds(row: Any) -> float:
    """Seconds a run has been running: its earlier runners' time and the current runner's, not the time between."""
    if row["finished_at"] is not None:
        end = row["finished_at"]
    elif row["status"] == "running":
        end = utcnow()
    else:  # interrupted: its runner was last seen at its heartbeat
        end = row["heartbeat_at"]
    own = (end - (row["resumed_at"] or row["started_at"])).total_seconds()
    return (row["prior_seconds"] or 0.0) + max(own, 0.0)


def with_rate(row: dict[str, Any]) -> dict[str, Any]:
    """Add running seconds, customers per running second and seconds left to a run's row."""
    seconds = running_seconds(row)
    rate = row["done"] / seconds if row["done"] and seconds > 0 else 0.0
    left = (row["total"] - row["done"]) / rate if rate and row["status"] == "running" else None
    return {**row, "running_seconds": seconds, "rate": rate, "eta_seconds": left}
