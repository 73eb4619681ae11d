"""The job scheduler: APScheduler with its job store in the database, run by exactly one process.

- **Schedules** are rows of `job_schedules`: seeded from the schedules file (SCHEDULES_FILE, or
  decision_server/jobs/schedules.yaml) when a scheduler starts, then edited over the API. Catalog
  connectors with a `schedule` are synced on it (schedule "catalog:<connector>").
- **One runner.** Every process may run a Scheduler (its own `decision-server scheduler start`, or
  each server process with SCHEDULER=on); they compete for the `scheduler` lease (a row of
  `job_leases`). The holder renews it every third of SCHEDULER_LEASE_SECONDS and runs
  APScheduler; the others stand by and take over when it expires (its holder died), or at once
  when its holder's process is gone from their host (jobs/runners.py). A bulk run
  has its own lease too (jobs/reevaluation.py), so even a leader that was presumed dead while
  still running cannot run the same job twice at once.
- **Persistent.** APScheduler's jobs, with their next run times and pending retries, are in the
  `apscheduler_jobs` table, so a new leader carries on where the old one stopped.
- **Failures** are recorded on the run (status failed, the error), logged as errors, and retried
  after JOB_RETRY_SECONDS, then 4x and 16x as long; a job skipped because its previous run is
  still going is not a failure.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.dialects import postgresql, sqlite

from decision_server import metrics
from decision_server.config import Config
from decision_server.db import Database, upsert, utcnow
from decision_server.errors import NotFound, ValidationError
from decision_server.jobs import reevaluation, runners
from decision_server.jobs.records import BulkRunRecord, LeaseRecord, ScheduleRecord

log = logging.getLogger(__name__)

JOBS = ("reevaluate", "retrain", "retention")
LEASE_NAME = "scheduler"
RETRIES = 3
SHIPPED_FILE = Path(__file__).with_name("schedules.yaml")
_s = ScheduleRecord.__table__
_leases = LeaseRecord.__table__
_runs = BulkRunRecord.__table__
_context: dict[str, Scheduler] = {}  # the scheduler of this process, for the functions APScheduler calls


def read_file(path: Path | None) -> dict[str, dict[str, Any]]:
    """Read and check a schedules file; raise ValidationError naming the schedule and field."""
    path = path or SHIPPED_FILE
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValidationError(f"{path}: cannot read the schedules ({exc})", errors={"file": [str(path)]}) from None
    out = {}
    for name, spec in (data.get("schedules") or {}).items():
        out[name] = check(
            name, {"steps": None, "description": "", "enabled": True, "cron": None, "interval_seconds": None, **(spec or {})}
        )
    return out


def check(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Check one schedule (job, cron or interval, steps); return it as a row's values."""

    def bad(field: str, reason: str) -> None:
        raise ValidationError(f"schedule {name}: {field} {reason}", errors={field: [reason]})

    if spec.get("job") not in JOBS:
        bad("job", f"must be one of {', '.join(JOBS)}")
    if (spec.get("cron") is None) == (spec.get("interval_seconds") is None):
        bad("cron", "give a cron expression (minute hour day month weekday) or interval_seconds, not both")
    if spec.get("cron") is not None:
        try:
            _trigger(spec["cron"], None)
        except ValueError as exc:
            bad("cron", f"is not a cron expression of five fields ({exc})")
    if spec.get("interval_seconds") is not None and not float(spec["interval_seconds"]) >= 1:
        bad("interval_seconds", "must be at least 1")
    if spec.get("steps") is not None:
        try:
            spec["steps"] = list(reevaluation.check_steps(spec["steps"]))
        except ValidationError as exc:
            bad("steps", exc.message)
    return {k: spec.get(k) for k in ("job", "cron", "interval_seconds", "steps", "enabled", "description")}


def _trigger(cron: str | None, interval: float | None) -> Any:
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if cron is not None:
        return CronTrigger.from_crontab(cron, timezone=dt.UTC)
    return IntervalTrigger(seconds=float(interval), timezone=dt.UTC)


def seed(database: Database, path: Path | None) -> list[str]:
    """Add the file's schedules that the database does not have yet; return their names."""
    wanted = read_file(path)
    with database.connection(write=True) as conn:
        known = set(conn.execute(sa.select(_s.c.name)).scalars())
        # Two schedulers starting together on PostgreSQL both see the table empty: the second
        # insert of a name must do nothing rather than fail and stop that scheduler.
        insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(_s)
        added = []
        for name in (n for n in wanted if n not in known):
            statement = insert.values(name=name, updated_at=utcnow(), updated_by="file", **wanted[name])
            if conn.execute(statement.on_conflict_do_nothing(index_elements=["name"]).returning(_s.c.name)).first():
                added.append(name)
    return added


def listing(database: Database) -> list[dict[str, Any]]:
    """Every schedule with its next run time (from APScheduler's job store) and pending retry."""
    with database.connection() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(_s).order_by(_s.c.name))]
        inspector = sa.inspect(conn)
        store = {}
        if inspector.has_table("apscheduler_jobs"):
            store = dict(conn.exec_driver_sql("SELECT id, next_run_time FROM apscheduler_jobs").all())
    for row in rows:
        at = store.get(row["name"])
        row["next_run_at"] = dt.datetime.fromtimestamp(at, dt.UTC) if at else None
        retry = store.get(f"retry:{row['name']}")
        row["retry_at"] = dt.datetime.fromtimestamp(retry, dt.UTC) if retry else None
    return rows


def change(database: Database, name: str, values: dict[str, Any], *, actor: str) -> dict[str, Any]:
    """Change a schedule (the scheduler follows within a lease period); return it."""
    with database.connection(write=True) as conn:
        row = conn.execute(sa.select(_s).where(_s.c.name == name).with_for_update()).first()
        if row is None:
            raise NotFound(f"no schedule {name}", errors={"name": [name]})
        current = dict(row._mapping)
        # A schedule has a cron or an interval: giving one replaces the other.
        if values.get("cron") is not None and "interval_seconds" not in values:
            current["interval_seconds"] = None
        if values.get("interval_seconds") is not None and "cron" not in values:
            current["cron"] = None
        merged = check(name, {**current, **values})
        conn.execute(sa.update(_s).where(_s.c.name == name).values(**merged, updated_at=utcnow(), updated_by=actor))
    return next(r for r in listing(database) if r["name"] == name)


def leader(database: Database) -> dict[str, Any] | None:
    """Who holds the scheduler lease now (None when nobody does)."""
    with database.connection() as conn:
        row = conn.execute(sa.select(_leases).where(_leases.c.name == LEASE_NAME)).first()
    if row is None or row.holder is None or row.expires_at < utcnow():
        return None
    return {"holder": row.holder, "expires_at": row.expires_at.isoformat()}  # ISO 8601, as every other time


def run_schedule(name: str, attempt: int = 0, signature: str | None = None) -> None:
    """What APScheduler calls (by reference from its job store): run schedule `name` in this process.

    `signature` is the schedule's time as it was when the job was added (to notice changes)."""
    scheduler = _context.get("scheduler")
    if scheduler is None:
        log.warning("schedule %s fired in a process with no scheduler; skipped", name)
        return
    scheduler.execute(name, attempt)


class Scheduler:
    """Competes for the scheduler lease; while it holds it, runs APScheduler on the schedules."""

    def __init__(self, database: Database, config: Config):
        self.database, self.config = database, config
        self.me = runners.runner_name()
        self.lease = dt.timedelta(seconds=config.scheduler_lease_seconds)
        self._aps: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def leading(self) -> bool:
        return self._aps is not None

    def start_thread(self) -> None:
        """Run in a daemon thread of this process (the in-server mode)."""
        self._thread = threading.Thread(target=self.run_forever, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def run_forever(self, on_change: Callable[[bool], None] | None = None) -> None:
        """Seed the schedules, then hold or wait for the lease until stopped."""
        _context["scheduler"] = self
        try:
            added = seed(self.database, self.config.schedules_file)
            if added:
                log.info("schedules added from the file: %s", ", ".join(added))
        except ValidationError as exc:
            log.error("schedules file refused: %s", exc.message)
        try:
            while not self._stop.is_set():
                was = self.leading
                try:
                    self.step()
                except sa.exc.SQLAlchemyError as exc:  # the database is away: stand down, try again
                    log.warning("scheduler: %s", exc)
                    self._stand_down()
                except Exception:  # a scheduler must outlive any one bad step; log.exception says it loudly
                    log.exception("scheduler: step failed; trying again")
                if on_change is not None and self.leading != was:
                    on_change(self.leading)
                self._stop.wait(self.lease.total_seconds() / 3)
        finally:
            self._stand_down()
            self._release()

    def step(self) -> None:
        """Renew or take the lease; start or stop APScheduler to match; follow schedule changes."""
        if self._acquire():
            if self._aps is None:
                self._start_aps()
            self._sync()
        elif self._aps is not None:
            log.warning("scheduler: lease lost to another process; standing by")
            self._stand_down()

    def _acquire(self) -> bool:
        now = utcnow()
        with self.database.connection(write=True) as conn:
            conn.execute(
                upsert(conn, _leases)
                .values(name=LEASE_NAME, holder=None, expires_at=now)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            free = sa.or_(_leases.c.holder == self.me, _leases.c.expires_at < now)
            held = conn.execute(sa.select(_leases).where(_leases.c.name == LEASE_NAME)).one()
            if (
                held.holder not in (None, self.me)
                and held.expires_at >= now
                and runners.gone(held.holder, alive_at=held.expires_at - self.lease)
            ):  # it renewed then, so was alive
                log.warning("scheduler: the process of %s, which held the lease, is gone; taking over at once", held.holder)
                free = sa.or_(free, _leases.c.holder == held.holder)  # unless it changed hands meanwhile
            taken = conn.execute(
                sa.update(_leases).where(_leases.c.name == LEASE_NAME, free).values(holder=self.me, expires_at=now + self.lease)
            )
            return taken.rowcount == 1

    def _release(self) -> None:
        try:
            with self.database.connection(write=True) as conn:
                conn.execute(
                    sa.update(_leases)
                    .where(_leases.c.name == LEASE_NAME, _leases.c.holder == self.me)
                    .values(holder=None, expires_at=utcnow())
                )
        except sa.exc.SQLAlchemyError as exc:
            log.warning("scheduler: lease not released (%s); it expires by itself", exc)

    def _start_aps(self) -> None:
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        self._aps = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.database.engine, tablename="apscheduler_jobs")},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
            timezone=dt.UTC,
        )
        self._aps.start()
        log.info("scheduler: %s holds the lease and runs the jobs", self.me)

    def _stand_down(self) -> None:
        if self._aps is not None:
            aps, self._aps = self._aps, None
            aps.shutdown(wait=False)

    def _sync(self) -> None:
        """Make APScheduler's jobs match the schedules: add, change and remove by a signature."""
        wanted = {}
        with self.database.connection() as conn:
            for row in conn.execute(sa.select(_s).where(_s.c.enabled.is_(True))):
                wanted[row.name] = (row.cron, row.interval_seconds)
            from decision_server.offers.records import CatalogConnectorRecord as C

            for name, schedule in conn.execute(sa.select(C.name, C.schedule).where(C.schedule.is_not(None), C.enabled.is_(True))):
                wanted[f"catalog:{name}"] = (schedule, None)
        jobs = {job.id: job for job in self._aps.get_jobs()}
        for name, (cron, interval) in wanted.items():
            signature = f"{cron}|{interval}"
            job = jobs.get(name)
            if job is None or job.kwargs.get("signature") != signature:
                self._aps.add_job(
                    run_schedule,
                    _trigger(cron, interval),
                    args=[name],
                    kwargs={"signature": signature},
                    id=name,
                    name=name,
                    replace_existing=True,
                )
        for job_id in jobs:
            if job_id.removeprefix("retry:") not in wanted:  # a schedule removed or switched off
                self._aps.remove_job(job_id)

    def execute(self, name: str, attempt: int = 0, *, source: str = "schedule") -> None:
        """Run schedule `name` now in this thread; on failure, schedule a retry with backoff."""
        try:
            outcome = run_now(self.database, self.config, name, source=source, wait=True)
            log.info("schedule %s ran: %s", name, outcome)
        except reevaluation.JobRunning as exc:
            log.info("schedule %s skipped: %s", name, exc.message)
        except NotFound:
            log.warning("schedule %s is gone; nothing run", name)
        except Exception as exc:  # noqa: BLE001 - any failure of a job: recorded on its run, logged, retried
            log.error("schedule %s failed (attempt %d): %s", name, attempt + 1, exc)
            if attempt < RETRIES and self._aps is not None:
                delay = self.config.job_retry_seconds * 4**attempt
                self._aps.add_job(
                    run_schedule,
                    "date",
                    run_date=utcnow() + dt.timedelta(seconds=delay),
                    args=[name, attempt + 1],
                    id=f"retry:{name}",
                    name=f"retry:{name}",
                    replace_existing=True,
                )
                log.warning("schedule %s: retry %d of %d in %.0f s", name, attempt + 1, RETRIES, delay)


def run_now(database: Database, config: Config, name: str, *, source: str, wait: bool) -> dict[str, Any]:
    """Run schedule `name` now: in this thread (`wait`) or in a background thread; return its run."""
    from decision_server.rulebook.service import published_revision
    from decision_server.scoring.serving import ModelSet

    if name.startswith("catalog:"):
        return _catalog(database, config, name.removeprefix("catalog:"), source=source, wait=wait)
    with database.connection() as conn:
        row = conn.execute(sa.select(_s).where(_s.c.name == name)).first()
    if row is None:
        raise NotFound(f"no schedule {name}", errors={"name": [name]})
    if row.job == "retrain":
        return _recorded(database, "retrain", source, lambda: _retrain(database, config), wait=wait)
    if row.job == "retention":
        from decision_server.decisions import retention

        return _recorded(
            database,
            "retention",
            source,
            lambda: retention.purge(database, days=config.decision_log_retention_days).as_dict(),
            wait=wait,
        )
    revision = published_revision(database, config.rules_dir, limits=config.rule_limits)
    models = ModelSet(config.models_dir, max_age_days=config.model_max_age_days)
    steps = row.steps or list(reevaluation.STEPS)
    if not wait:
        try:
            return reevaluation.start(
                database,
                revision,
                models,
                steps=steps,
                source=source,
                margin=config.default_margin,
                on_end=revision.close,
                dask_address=config.dask_scheduler_address,
            )
        except BaseException:  # refused (another run holds the lease): the thread that would close it never starts
            revision.close()
            raise
    try:
        return reevaluation.run(
            database,
            revision,
            models,
            steps=steps,
            source=source,
            margin=config.default_margin,
            dask_address=config.dask_scheduler_address,
        )
    finally:
        revision.close()


def _retrain(database: Database, config: Config) -> dict[str, Any]:
    from decision_server.scoring import training

    results = training.train(database, config.models_dir)
    failed = [f"{r.name}: {r.error}" for r in results if r.error]
    if failed:
        raise RuntimeError("; ".join(failed))
    return {"models": [r.name for r in results]}


def _catalog(database: Database, config: Config, connector: str, *, source: str, wait: bool) -> dict[str, Any]:
    from decision_server.offers import service, sync
    from decision_server.rulebook.service import published_revision

    def work() -> dict[str, Any]:
        revision = published_revision(database, config.rules_dir, limits=config.rule_limits)
        try:
            words = service.vocabulary(revision)
        finally:
            revision.close()
        report = sync.run_sync(database, connector, channels=config.channels, words=words, actor=f"{source}:scheduler")
        if report.get("status") == "failed":
            raise RuntimeError(f"catalog sync of {connector} failed: {report.get('error')}")
        return {"status": report.get("status"), "run": report.get("id")}

    return _recorded(database, f"catalog:{connector}"[:32], source, work, wait=wait)


def _recorded(database: Database, job: str, source: str, work: Callable[[], dict[str, Any]], *, wait: bool) -> dict[str, Any]:
    """Run `work` as a recorded run of `job` (one at a time, like every job); return the run."""
    now = utcnow()
    me = runners.runner_name()
    with database.connection(write=True) as conn:
        running = conn.execute(sa.select(_runs).where(_runs.c.job == job, _runs.c.status == "running").with_for_update()).first()
        if running is not None:  # a runner that died holds nothing any more; a live one refuses
            reevaluation.interrupt(conn, running, now=now)
        try:
            run_id = conn.execute(
                sa.insert(_runs)
                .values(
                    job=job,
                    steps=[],
                    dry_run=False,
                    source=source,
                    status="running",
                    as_of=now,
                    started_at=now,
                    heartbeat_at=now,
                    runner=me,
                    done=0,
                    total=1,
                    resumes=0,
                    prior_seconds=0.0,
                )
                .returning(_runs.c.id)
            ).scalar_one()
        except sa.exc.IntegrityError:
            raise reevaluation.JobRunning(f"{job} is already running") from None
        runners.hold(me)

    def body() -> None:
        started = time.perf_counter()
        lease = reevaluation.Heartbeat(database, run_id, me)
        lease.start()
        try:
            try:
                result = work()
            except Exception as exc:
                _end(database, run_id, status="failed", error=f"{type(exc).__name__}: {exc}")
                metrics.job_ended(job.split(":")[0], "failed", time.perf_counter() - started)
                raise
            finally:
                lease.stop()
            _end(database, run_id, status="succeeded", result=result)
            metrics.job_ended(job.split(":")[0], "succeeded", time.perf_counter() - started)
        finally:
            runners.release(me)  # held since the insert: from now on a start here may take the run over

    if not wait:

        def background() -> None:
            try:
                body()
            except Exception:  # recorded on the run
                log.exception("%s run %d failed", job, run_id)

        threading.Thread(target=background, name=f"{job}-{run_id}", daemon=True).start()
        return reevaluation.get(database, run_id)
    body()
    return reevaluation.get(database, run_id)


def _end(database: Database, run_id: int, *, status: str, result: dict[str, Any] | None = None, error: str | None = None) -> None:
    with database.connection(write=True) as conn:
        conn.execute(
            sa.update(_runs)
            .where(_runs.c.id == run_id)
            .values(status=status, finished_at=utcnow(), heartbeat_at=utcnow(), done=1, result=result, error=error)
        )
