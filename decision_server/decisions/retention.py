"""Decision log retention: remove the days older than the retention, without holding decisions up.

On PostgreSQL the log tables are partitioned by UTC day (migration 0015): a day past the cutoff is
detached from all three tables in one short transaction, rolled up into decision_offer_days and
dropped, whatever its size. Partitions are made a week ahead, so decisions land in their day's
partition; what the default partition holds (a day that had no partition in time, rows older
than the migration partitioned) and every row on SQLite is deleted in batches of about 0.1 s,
one transaction each, so a decision waits for one batch at most.

The cutoff is a UTC midnight: the day `days` ago and every day after it are kept.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from decision_server.db import Database, upsert, utcnow
from decision_server.decisions.records import (
    DecisionActionRecord,
    DecisionRecord,
    DecisionResponseRecord,
    OfferDayRecord,
)

log = logging.getLogger("decision_server.decisions.retention")

RESPONSES = ("accepted", "declined", "ignored", "clicked")
TABLES = ("decisions", "decision_actions", "decision_responses")
AHEAD_DAYS = 7  # partitions made ahead: a week of the job not running before a day lands in the default partition
# Decisions per delete transaction: at most BATCH, sized to take about BATCH_SECONDS, the longest
# a decision waits for the purge on SQLite (one writer at a time). 5,000 took 0.7 s there.
BATCH = 5_000
BATCH_SECONDS = 0.1
FIRST_BATCH, MIN_BATCH = 500, 50
# DDL on a log table waits this long for its lock, then gives up until the next try: decisions
# queue behind a waiting ALTER TABLE, so it must never wait long.
LOCK_TIMEOUT = "1s"
LOCK_TRIES = 5
_d, _a, _r, _days = (
    DecisionRecord.__table__,
    DecisionActionRecord.__table__,
    DecisionResponseRecord.__table__,
    OfferDayRecord.__table__,
)
_PARTITION = re.compile(r"^decisions_p(\d{8})$")


@dataclasses.dataclass
class Purge:
    """What one purge did (or, dry, would do)."""

    cutoff: dt.datetime
    dry_run: bool = False
    partitions_created: list[str] = dataclasses.field(default_factory=list)
    days_dropped: list[str] = dataclasses.field(default_factory=list)  # dropped whole (PostgreSQL)
    decisions: int = 0
    actions: int = 0
    responses: int = 0
    batches: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Return the purge as plain values (a job run's result)."""
        return {**dataclasses.asdict(self), "cutoff": self.cutoff.isoformat()}


def cutoff(days: int, now: dt.datetime) -> dt.datetime:
    """Return the UTC midnight before which decisions go when `days` days are kept."""
    day = (now - dt.timedelta(days=days)).astimezone(dt.UTC).date()
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def purge(
    database: Database,
    *,
    days: int,
    now: dt.datetime | None = None,
    batch_size: int = BATCH,
    dry_run: bool = False,
    batch_seconds: float = BATCH_SECONDS,
    pause_seconds: float = 0.005,
    progress: Callable[[Purge], None] | None = None,
) -> Purge:
    """Remove the decisions (with actions and responses) older than `days` days, rolling their counts up; 0 keeps all.

    On PostgreSQL, first make the partitions of the days ahead. Batches hold at most `batch_size`
    decisions and are sized to take about `batch_seconds`; after each, the purge waits
    `pause_seconds`, and on SQLite as long as the batch took, so that the decision writers
    queued on the write lock get in before the next batch takes it.
    """
    started = time.perf_counter()
    now = now or utcnow()
    postgresql = database.dialect == "postgresql"
    result = Purge(cutoff=cutoff(days, now), dry_run=dry_run)
    if postgresql and not dry_run:
        result.partitions_created = ensure_partitions(database, now=now)
    if days <= 0:
        result.seconds = time.perf_counter() - started
        return result
    if dry_run:
        with database.connection() as conn:
            before = _d.c.decided_at < result.cutoff
            result.decisions = conn.execute(sa.select(sa.func.count()).where(before)).scalar_one()
            result.actions = conn.execute(sa.select(sa.func.count()).where(_a.c.decided_at < result.cutoff)).scalar_one()
            result.responses = conn.execute(sa.select(sa.func.count()).where(_r.c.decided_at < result.cutoff)).scalar_one()
            if postgresql:
                result.days_dropped = [f"{d:%Y-%m-%d}" for d in _days_before(conn, result.cutoff)]
        result.seconds = time.perf_counter() - started
        return result
    if postgresql:
        _drop_days(database, result, progress)
    size = min(batch_size, FIRST_BATCH)
    while True:
        with database.connection(write=True) as conn:
            began = time.perf_counter()  # once the write lock is ours: waiting for it is not the batch's cost
            if postgresql:  # planned for each batch's own bound: a generic plan scanned every old action per batch
                conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
            removed = _delete_batch(conn, result, size)
        took = time.perf_counter() - began
        if not removed:
            break
        result.batches += 1
        log.info(
            "decision log purge: %d decisions removed before %s (batch %d of %d in %.0f ms)",
            result.decisions,
            result.cutoff.date(),
            result.batches,
            removed,
            took * 1000,
        )
        if progress:
            progress(result)
        if removed < size:
            break
        size = min(batch_size, max(MIN_BATCH, int(size * batch_seconds / max(took, 1e-3))))
        time.sleep(pause_seconds if postgresql else max(pause_seconds, took))
    result.seconds = time.perf_counter() - started
    log.info(
        "decision log purged before %s: %d decisions, %d actions, %d responses, %d days dropped whole, in %.1f s",
        result.cutoff.date(),
        result.decisions,
        result.actions,
        result.responses,
        len(result.days_dropped),
        result.seconds,
    )
    return result


def _day(column: sa.ColumnElement, dialect: str) -> sa.ColumnElement:
    if dialect == "postgresql":
        return sa.cast(sa.func.timezone("UTC", column), sa.Date)
    return sa.func.date(column)  # SQLite keeps UTC text: its first ten characters are the day


def _as_date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def _roll_up(
    conn: Connection, actions: sa.Table, responses: sa.Table, where_actions: Sequence, where_responses: Sequence
) -> tuple[int, int]:
    """Add the counts of the given actions and responses to decision_offer_days; return (actions, responses)."""
    dialect = conn.dialect.name
    rows: dict[tuple[int, dt.date], dict[str, int]] = {}

    def row(offer_id: int, day: Any) -> dict[str, int]:
        return rows.setdefault((offer_id, _as_date(day)), {"actions": 0, **{r: 0 for r in RESPONSES}})

    made = conn.execute(
        sa.select(actions.c.offer_id, _day(actions.c.decided_at, dialect).label("day"), sa.func.count())
        .where(*where_actions)
        .group_by(actions.c.offer_id, sa.text("day"))
    ).all()
    for offer_id, day, n in made:
        row(offer_id, day)["actions"] += n
    answered = conn.execute(
        sa.select(
            responses.c.offer_id, _day(responses.c.responded_at, dialect).label("day"), responses.c.response, sa.func.count()
        )
        .where(*where_responses)
        .group_by(responses.c.offer_id, sa.text("day"), responses.c.response)
    ).all()
    for offer_id, day, response, n in answered:
        row(offer_id, day)[response] += n
    if rows:
        insert = upsert(conn, _days)
        values = [{"offer_id": o, "day": d, **counts} for (o, d), counts in sorted(rows.items())]
        conn.execute(
            insert.values(values).on_conflict_do_update(
                index_elements=[_days.c.offer_id, _days.c.day],
                set_={c: _days.c[c] + insert.excluded[c] for c in ("actions", *RESPONSES)},
            )
        )
    return sum(n for *_, n in made), sum(n for *_, n in answered)


def _delete_batch(conn: Connection, result: Purge, size: int) -> int:
    """Remove the oldest `size` decisions before the cutoff (and any of the same time) with their actions and responses."""
    last = conn.execute(
        sa.select(_d.c.decided_at).where(_d.c.decided_at < result.cutoff).order_by(_d.c.decided_at).offset(size - 1).limit(1)
    ).scalar()

    def batch(table: sa.Table) -> sa.ColumnElement:
        # One bound only: given two upper bounds, SQLite ranges the index on one and filters by the
        # other, and took the cutoff, walking every old row for each batch.
        return table.c.decided_at <= last if last is not None else table.c.decided_at < result.cutoff

    # The decisions locked first: on PostgreSQL a response holds its decision (log.respond), so this
    # waits for one being written, and none can be written for these any more; the responses read
    # next include every response there is. (SQLite has one writer at a time.)
    locked = conn.execute(sa.select(_d.c.id).where(batch(_d)).with_for_update()).scalars().all()
    if not locked:
        return 0
    ids = sa.select(_d.c.id).where(batch(_d))
    of_actions = (_a.c.decision_id.in_(ids), batch(_a))
    of_responses = (_r.c.decision_id.in_(ids), batch(_r))
    actions, responses = _roll_up(conn, _a, _r, of_actions, of_responses)
    conn.execute(sa.delete(_r).where(*of_responses))
    conn.execute(sa.delete(_a).where(*of_actions))
    removed = conn.execute(sa.delete(_d).where(batch(_d))).rowcount
    result.decisions += removed
    result.actions += actions
    result.responses += responses
    return removed


# PostgreSQL partitions. Their names and bounds are made here from dates, never from input, so
# the DDL (which cannot take bound parameters) only ever holds digits and dashes of our making.


def partition_name(table: str, day: dt.date) -> str:
    """Return the name of a table's partition of one UTC day."""
    return f"{table}_p{day:%Y%m%d}"


def partitions(conn: Connection, table: str = "decisions") -> list[str]:
    """Return the names of the partitions of a log table (PostgreSQL)."""
    return sorted(
        conn.exec_driver_sql(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %(t)s::regclass",
            {"t": table},
        ).scalars()
    )


def _partition_days(names: Sequence[str]) -> list[dt.date]:
    return sorted(dt.datetime.strptime(m.group(1), "%Y%m%d").date() for n in names if (m := _PARTITION.match(n)))


def _days_before(conn: Connection, cutoff_at: dt.datetime) -> list[dt.date]:
    """The days partitioned (or detached and left by an interrupted purge) that end by the cutoff."""
    attached = _partition_days(partitions(conn))
    detached = _partition_days(
        conn.exec_driver_sql(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND NOT relispartition AND pg_table_is_visible(oid)"
        ).scalars()
    )
    return sorted({d for d in attached + detached if d + dt.timedelta(days=1) <= cutoff_at.date()})


def _with_lock_timeout(database: Database, work: Callable[[Connection], Any], what: str) -> Any:
    """Run DDL in one transaction that waits at most LOCK_TIMEOUT for each lock; try again a few times."""
    for attempt in range(LOCK_TRIES):
        try:
            with database.connection() as conn:
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                return work(conn)
        except sa.exc.OperationalError as exc:
            if "lock timeout" not in str(exc) or attempt == LOCK_TRIES - 1:
                raise
            log.warning("decision log retention: %s waited too long for its lock; trying again (%d)", what, attempt + 1)
            time.sleep(1.0 + attempt)
    return None


def ensure_partitions(database: Database, *, now: dt.datetime | None = None, ahead: int = AHEAD_DAYS) -> list[str]:
    """Make the daily partitions of today and the `ahead` days after it that are missing (PostgreSQL); return their days."""
    today = (now or utcnow()).astimezone(dt.UTC).date()
    with database.connection() as conn:
        have = set(_partition_days(partitions(conn)))
    made = []
    for offset in range(ahead + 1):
        day = today + dt.timedelta(days=offset)
        if day in have:
            continue
        start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        bounds = (start, start + dt.timedelta(days=1))

        def create(conn: Connection, day: dt.date = day, bounds: tuple = bounds) -> bool:
            for table in TABLES:
                # A day whose rows already went to the default partition stays there (and is purged in batches):
                # a partition cannot be made over rows the default one holds.
                if conn.exec_driver_sql(
                    f"SELECT 1 FROM {table}_default WHERE decided_at >= %(a)s AND decided_at < %(b)s LIMIT 1",
                    {"a": bounds[0], "b": bounds[1]},
                ).first():
                    log.warning("decision log: %s has rows of %s in its default partition; the day gets no partition", table, day)
                    return False
            for table in TABLES:
                conn.exec_driver_sql(
                    f"CREATE TABLE {partition_name(table, day)} PARTITION OF {table} "
                    f"FOR VALUES FROM ('{bounds[0].isoformat()}') TO ('{bounds[1].isoformat()}')"
                )
            return True

        if _with_lock_timeout(database, create, f"partitions of {day}"):
            made.append(f"{day:%Y-%m-%d}")
    if made:
        log.info("decision log: partitions made for %s", ", ".join(made))
    return made


def _drop_days(database: Database, result: Purge, progress: Callable[[Purge], None] | None) -> None:
    with database.connection() as conn:
        days = _days_before(conn, result.cutoff)
    for day in days:
        names = {t: partition_name(t, day) for t in TABLES}

        def detach(conn: Connection, names: dict[str, str] = names) -> None:
            for table in TABLES:  # decisions first, the order every writer takes the tables in: no deadlock
                if names[table] in partitions(conn, table):  # (not when an interrupted purge detached it already)
                    conn.exec_driver_sql(f"ALTER TABLE {table} DETACH PARTITION {names[table]}")

        # Detached, the day takes no more writes (a late response finds no decision), so its counts are final.
        _with_lock_timeout(database, detach, f"detaching {day}")
        with database.connection() as conn:
            actions, responses = (
                sa.table(names[t], *(sa.column(c.name, c.type) for c in table.columns))
                for t, table in (("decision_actions", _a), ("decision_responses", _r))
            )
            decisions = conn.exec_driver_sql(f"SELECT count(*) FROM {names['decisions']}").scalar_one()
            made, answered = _roll_up(conn, actions, responses, (), ())
            conn.exec_driver_sql(f"DROP TABLE {names['decision_responses']}, {names['decision_actions']}, {names['decisions']}")
        result.days_dropped.append(f"{day:%Y-%m-%d}")
        result.decisions += decisions
        result.actions += made
        result.responses += answered
        log.info("decision log: day %s dropped (%d decisions, %d actions, %d responses)", day, decisions, made, answered)
        if progress:
            progress(result)
