"""Reading chunks of customers for the bulk pass (analytics/reevaluate.py): features by set-based
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
from decision_server.analytics.records import SegmentMemberRecord
from decision_server.customers.records import CustomerStateRecord
from decision_server.db import Database
from decision_server.errors import ConfigError
from decision_server.features import bulk

log = logging.getLogger(__name__)

# Chunks read ahead at once, each by its own process: the SQL is most of the pass.
# Memory: READERS + 1 chunks. A base of one chunk is read in process (no start-up cost).
READERS = 2
# State columns the pass reads.
STATE = ("stage", "stage_since", "rfm_r", "rfm_f", "rfm_m", "rfm_segment", "rfm_run_id", "value_score",
         "value_segment", "journey_stage", "transaction_count", "total_spend_cents", "last_purchase_at")
_st = CustomerStateRecord.__table__
_m = SegmentMemberRecord.__table__


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


@contextlib.contextmanager
def readers(database: Database, chunks: int, dask_address: str | None = None) -> Iterator[tuple[Callable[..., Any], int]]:
    """Yield a function that starts reading a chunk and returns its future (with .result()), and how
    many chunks to keep reading ahead."""
    url = database.engine.url.render_as_string(hide_password=False)
    if dask_address:
        yield from _dask_readers(dask_address, url)
        return
    if chunks <= 1 or database.engine.url.database in (None, "", ":memory:"):
        def now(*args: Any) -> concurrent.futures.Future:
            done: concurrent.futures.Future = concurrent.futures.Future()
            done.set_result(read_chunk(database, *args))
            return done
        yield now, 1
        return
    context = multiprocessing.get_context("spawn")  # never fork a process that may hold threads and connections
    with concurrent.futures.ProcessPoolExecutor(READERS, mp_context=context, initializer=_open_reader,
                                             initargs=(url, os.getpid())) as pool:
        yield (lambda *args: pool.submit(_read_in_worker, *args)), READERS


def _dask_readers(address: str, url: str) -> Iterator[tuple[Callable[..., Any], int]]:
    """Read chunks on a Dask cluster: each chunk is one task, its SQL run by a worker near the database."""
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("DASK_SCHEDULER_ADDRESS is set but dask is not installed: pip install 'decision-server[dask]'") from None
    with Client(address, set_as_default=False) as client:
        log.info("bulk pass: reading on the Dask cluster at %s (%d workers)", address, len(client.scheduler_info()["workers"]))
        workers = len(client.scheduler_info()["workers"])
        yield (lambda *args: client.submit(_read_on_dask, url, *args, pure=False)), max(READERS, workers)


_dask_databases: dict[str, Database] = {}


def _read_on_dask(url: str, ids: np.ndarray, as_of: dt.datetime, segment_ids: Sequence[int]) -> Chunk:
    """A Dask task: read one chunk with this worker's engine for `url` (opened once per worker)."""
    database = _dask_databases.get(url)
    if database is None:
        database = _dask_databases[url] = Database(url)
    return read_chunk(database, ids, as_of, segment_ids)


_worker_database: Database | None = None


def _open_reader(url: str, parent: int) -> None:
    global _worker_database

    def exit_with_parent() -> None:  # a killed pass must not leave its readers behind
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=exit_with_parent, name="reader-watchdog", daemon=True).start()
    _worker_database = Database(url)


def _read_in_worker(ids: np.ndarray, as_of: dt.datetime, segment_ids: Sequence[int]) -> Chunk:
    assert _worker_database is not None
    chunk = read_chunk(_worker_database, ids, as_of, segment_ids)
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


def read_chunk(database: Database, ids: np.ndarray, as_of: dt.datetime, segment_ids: Sequence[int]) -> Chunk:
    """Read customers `ids` (sorted): their stamps first (an event after this is seen as newer), then the rest."""
    lo, hi = int(ids[0]), int(ids[-1])
    with database.connection() as conn:
        seen = dict(fastsql.raw_rows(conn, stamps(lo, hi)))
        features = bulk.features(conn, ids, as_of)
        rows = conn.execute(sa.select(_st.c.customer_id, *(_st.c[k] for k in STATE))
                            .where(_st.c.customer_id.between(lo, hi))).all()
        members = {sid: set(conn.execute(sa.select(_m.c.customer_id).where(
            _m.c.segment_id == sid, _m.c.customer_id.between(lo, hi))).scalars()) for sid in segment_ids}
    n = len(ids)
    state = {k: np.full(n, None, dtype=object) for k in STATE}
    has_row = np.zeros(n, dtype=bool)
    if rows:
        columns = list(zip(*rows))
        found = np.fromiter(columns[0], dtype=np.int64, count=len(rows))
        where = np.searchsorted(ids, found)
        keep = (where < n) & (ids[np.minimum(where, n - 1)] == found)
        has_row[where[keep]] = True
        for name, values in zip(STATE, columns[1:]):
            state[name][where[keep]] = np.array(values, dtype=object)[keep]
    return Chunk(ids, features, state, has_row, members, seen)


def stamps(lo: int, hi: int) -> sa.Select:
    """The state rows' updated_at in an id range (compared before a chunk is written)."""
    return sa.select(_st.c.customer_id, _st.c.updated_at).where(_st.c.customer_id.between(lo, hi))
