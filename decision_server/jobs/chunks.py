"""Reading chunks of customers for the bulk pass (jobs/bulk_pass.py): features by set-based
SQL, state rows, segment memberships and the rows' updated_at, in this process, in two reader
processes, or on the workers of a Dask cluster (the same function, so the same results).

Processes, not threads: the drivers release the GIL for each row fetched and wait to get it back,
so two reader threads ran at half speed. Reader processes are spawned (a process that may hold
threads and connections is never forked) and exit when the process that started them dies.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa

from decision_server import fastsql
from decision_server.customers.records import CustomerStateRecord
from decision_server.db import Database, UtcDateTime
from decision_server.errors import ConfigError
from decision_server.features import bulk
from decision_server.loyalty.records import LedgerEntryRecord, MemberRecord
from decision_server.segments.records import SegmentMemberRecord

log = logging.getLogger(__name__)

# Chunks read ahead at once, each by its own process: the SQL is most of the pass.
# Memory: READERS + 1 chunks. A base of one chunk is read in process (no start-up cost).
READERS = 2
# State columns the pass reads.
STATE = (
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
    "transaction_count",
    "total_spend_cents",
    "last_purchase_at",
)
# Loyalty facts read when offers are tried (a what-if): the tier and the points the member can spend.
LOYALTY = ("tier", "points_balance")
_st = CustomerStateRecord.__table__
_m = SegmentMemberRecord.__table__
_lm, _ll = MemberRecord.__table__, LedgerEntryRecord.__table__


@dataclasses.dataclass
class Chunk:
    """One chunk of customers as read: features, state rows, memberships, row stamps."""

    ids: np.ndarray
    features: bulk.FeatureChunk
    state: dict[str, np.ndarray]  # STATE columns aligned to ids (object arrays; None where no row)
    has_row: np.ndarray  # bool: the customer has a state row
    members: dict[int, set[int]]  # segment id -> current members in the chunk
    stamps: dict[int, Any]  # updated_at of each state row as read (the driver's raw value)
    reader_peak_mb: float | None = None  # the reading process's peak resident memory (Linux)
    evaluated: Any = None  # evaluation.Evaluated, when a Dask worker evaluated the chunk too (jobs/shards.py)


@contextlib.contextmanager
def readers(
    database: Database, chunks: int, dask_address: str | None = None, work: Any = None
) -> Iterator[tuple[Callable[..., Any], int]]:
    """Yield a function that starts reading a chunk and returns its future (with .result()), and how
    many chunks to keep reading ahead. On Dask, `work` (shards.Work) has the workers evaluate the
    chunks they read as well."""
    url = database.engine.url.render_as_string(hide_password=False)
    if dask_address:
        yield from _dask_readers(dask_address, url, work)
        return
    if chunks <= 1 or database.engine.url.database in (None, "", ":memory:"):

        def now(*args: Any) -> concurrent.futures.Future:
            done: concurrent.futures.Future = concurrent.futures.Future()
            done.set_result(read_chunk(database, *args))
            return done

        yield now, 1
        return
    context = multiprocessing.get_context("spawn")  # never fork a process that may hold threads and connections
    with concurrent.futures.ProcessPoolExecutor(
        READERS, mp_context=context, initializer=_open_reader, initargs=(url, os.getpid())
    ) as pool:
        yield (lambda *args: pool.submit(_read_in_worker, *args)), READERS


def _dask_readers(address: str, url: str, work: Any = None) -> Iterator[tuple[Callable[..., Any], int]]:
    """Read (and evaluate) chunks on a Dask cluster: each chunk is one task, run by a worker near the database."""
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError(
            "DASK_SCHEDULER_ADDRESS is set but dask is not installed: pip install 'decision-server[dask]'"
        ) from None
    with Client(address, set_as_default=False) as client:
        log.info("bulk pass: reading on the Dask cluster at %s (%d workers)", address, len(client.scheduler_info()["workers"]))
        workers = len(client.scheduler_info()["workers"])
        shared = client.scatter(work, broadcast=True) if work is not None else None  # sent to each worker once
        yield (lambda *args: client.submit(_read_on_dask, url, *args, work=shared, pure=False)), max(READERS, workers)


_dask_databases: dict[str, Database] = {}


def _read_on_dask(
    url: str, ids: np.ndarray, as_of: dt.datetime, segment_ids: Sequence[int], loyalty: bool = False, work: Any = None
) -> Chunk:
    """A Dask task: read one chunk with this worker's engine for `url` (opened once per worker), and
    evaluate it when the run sent its `work`."""
    database = _dask_databases.get(url)
    if database is None:
        database = _dask_databases[url] = Database(url)
    chunk = read_chunk(database, ids, as_of, segment_ids, loyalty)
    if work is None:
        return chunk
    from decision_server.jobs import shards

    return shards.evaluate_on_worker(chunk, work)


_worker_database: Database | None = None


def _open_reader(url: str, parent: int) -> None:
    global _worker_database

    def exit_with_parent() -> None:  # a killed pass must not leave its readers behind
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=exit_with_parent, name="reader-watchdog", daemon=True).start()
    _worker_database = Database(url)


def _read_in_worker(ids: np.ndarray, as_of: dt.datetime, segment_ids: Sequence[int], loyalty: bool = False) -> Chunk:
    assert _worker_database is not None
    chunk = read_chunk(_worker_database, ids, as_of, segment_ids, loyalty)
    chunk.reader_peak_mb = peak_memory_mb()
    return chunk


def peak_memory_mb() -> float | None:
    """This process's peak resident memory in MB (VmHWM: since its start or exec), None off Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def read_chunk(
    database: Database, ids: np.ndarray, as_of: dt.datetime, segment_ids: Sequence[int], loyalty: bool = False
) -> Chunk:
    """Read customers `ids` (sorted): their stamps first (an event after this is seen as newer), then the rest.

    `loyalty` adds the LOYALTY columns to the state: tier and spendable points (balance less
    points still pending at `as_of`), None for customers who are not members, as decisions see them.
    """
    with database.connection() as conn:
        seen = dict(fastsql.raw_rows(conn, stamps(ids)))
        features = bulk.features(conn, ids, as_of)
        rows = conn.execute(sa.select(_st.c.customer_id, *(_st.c[k] for k in STATE)).where(bulk.of(_st.c.customer_id, ids))).all()
        members = {
            sid: set(
                conn.execute(sa.select(_m.c.customer_id).where(_m.c.segment_id == sid, bulk.of(_m.c.customer_id, ids))).scalars()
            )
            for sid in segment_ids
        }
        enrolled = conn.execute(_loyalty(ids), {"now": as_of}).all() if loyalty else []
    n = len(ids)
    state = {k: np.full(n, None, dtype=object) for k in STATE + (LOYALTY if loyalty else ())}
    has_row = _place(ids, rows, STATE, state)
    _place(ids, enrolled, LOYALTY, state)
    return Chunk(ids, features, state, has_row, members, seen)


def _place(ids: np.ndarray, rows: Sequence[Any], names: Sequence[str], state: dict[str, np.ndarray]) -> np.ndarray:
    """Put rows (customer id first, then `names`) in the state columns at their ids' positions."""
    n = len(ids)
    found_at = np.zeros(n, dtype=bool)
    if rows:
        columns = list(zip(*rows, strict=True))
        found = np.fromiter(columns[0], dtype=np.int64, count=len(rows))
        where = np.searchsorted(ids, found)
        keep = (where < n) & (ids[np.minimum(where, n - 1)] == found)
        found_at[where[keep]] = True
        for name, values in zip(names, columns[1:], strict=True):
            state[name][where[keep]] = np.array(values, dtype=object)[keep]
    return found_at


def _loyalty(ids: np.ndarray) -> sa.Select:
    """Members in an id range: tier and the points they can spend (pending points are not spendable yet)."""
    pending = (
        sa.select(_ll.c.customer_id, sa.func.sum(_ll.c.points).label("points"))
        .where(bulk.of(_ll.c.customer_id, ids), _ll.c.points > 0, _ll.c.available_at > sa.bindparam("now", type_=UtcDateTime()))
        .group_by(_ll.c.customer_id)
        .subquery()
    )
    spendable = _lm.c.balance - sa.func.coalesce(pending.c.points, 0)
    return (
        sa.select(_lm.c.customer_id, _lm.c.tier, sa.case((spendable > 0, spendable), else_=0))
        .outerjoin(pending, pending.c.customer_id == _lm.c.customer_id)
        .where(bulk.of(_lm.c.customer_id, ids))
    )


def stamps(ids: np.ndarray) -> sa.Select:
    """The state rows' updated_at of customers `ids` (compared before a chunk is written)."""
    return sa.select(_st.c.customer_id, _st.c.updated_at).where(bulk.of(_st.c.customer_id, ids))
