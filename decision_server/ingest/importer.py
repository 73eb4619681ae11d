"""Bulk import of customers, transactions and touchpoints from CSV or Parquet files.

The file is streamed in batches: every row is checked with the API's field rules (ingest.rows),
bad rows are reported by line and skipped, and each batch of good rows is written in its own
transaction (ingest.bulk). Re-running a file changes nothing: events are keyed by external id
(the first row of an id wins, later ones count as already present) and customers are merged into
the stored ones, where an empty cell never erases anything and consent and attributes are merged
by key, as a PATCH does. The state rows of the customers concerned are rebuilt at the end; an
interrupted import leaves them stale until the file is imported again.

Line numbers: for CSV the physical line where the row starts (the header is line 1); for Parquet
the 1-based row number.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import gc
import operator
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from decision_server.customers.state import refresh_state
from decision_server.db import Database, utcnow
from decision_server.errors import ImportFileError
from decision_server.ingest import bulk
from decision_server.ingest.files import Row, open_source
from decision_server.ingest.rows import REQUIRED, Parser, row_parser
from decision_server.touchpoints.records import TouchpointRecord
from decision_server.transactions.records import TransactionRecord

Progress = Callable[[str, int, "int | None"], None]

# A file that is wrong on every row should not exhaust memory with its report.
MAX_KEPT_ERRORS = 1_000_000
# Past this many customers one set-based refresh of every state row beats refreshing by id.
_REFRESH_ALL_ABOVE = 200_000
_CUSTOMER_CACHE_LIMIT = 1_000_000


@dataclasses.dataclass(frozen=True, slots=True)
class RowError:
    """Why a row was refused: its line, the offending column and the rule it breaks."""

    line: int
    field: str
    reason: str


@dataclasses.dataclass
class ImportReport:
    """What an import did: rows read, written and refused, with the reasons for each refusal."""

    kind: str
    rows_read: int = 0
    new: int = 0
    updated: int = 0  # customers only: stored customers that the file changed
    existing: int = 0  # already present (events), unchanged (customers), or repeated in the file
    bad_rows: int = 0
    seconds: float = 0.0
    errors: list[RowError] = dataclasses.field(default_factory=list)  # a row may break several rules

    @property
    def loaded(self) -> int:
        """Count the good rows, whether they were new or already stored."""
        return self.new + self.updated + self.existing

    def summary(self) -> str:
        """Describe the import in one line."""
        if self.kind == "customers":
            detail = f"{self.new:,} new, {self.updated:,} updated, {self.existing:,} unchanged"
        else:
            detail = f"{self.new:,} new, {self.existing:,} already present"
        rate = self.rows_read / self.seconds if self.seconds else 0.0
        kept = f" (the first {len(self.errors):,} errors are listed)" if len(self.errors) >= MAX_KEPT_ERRORS else ""
        return (
            f"{self.kind}: {self.rows_read:,} rows read, {self.loaded:,} loaded ({detail}), "
            f"{self.bad_rows:,} bad rows{kept} in {self.seconds:.1f} s ({rate:,.0f} rows/s)"
        )

    def write_errors(self, path: str | os.PathLike) -> None:
        """Write the errors to a CSV file with the columns line, field, reason."""
        with open(path, "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(["line", "field", "reason"])
            out.writerows((e.line, e.field, e.reason) for e in self.errors)


def import_file(
    database: Database,
    kind: str,
    path: str | os.PathLike,
    *,
    fmt: str | None = None,
    batch_size: int = 20_000,
    progress: Progress | None = None,
) -> ImportReport:
    """Load a CSV or Parquet file of `kind` rows, skipping bad rows; raise ImportFileError if unreadable."""
    if kind not in REQUIRED:
        raise ImportFileError(f"cannot import {kind!r}: choose one of {', '.join(REQUIRED)}")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    path = Path(path)
    started = time.perf_counter()
    run = _Run(database, kind)
    with contextlib.closing(open_source(path, fmt)) as source, _rare_garbage_collection():
        parse = row_parser(kind, source.columns, path)
        shown = time.perf_counter()
        for batch in source.batches(batch_size):
            run.load(batch, parse)
            if progress and time.perf_counter() - shown > 0.5:
                progress(f"{kind} ({source.unit})", source.position(), source.total)
                shown = time.perf_counter()
    if progress:
        progress(f"{kind} ({source.unit})", source.total, source.total)
    run.refresh_state()
    run.report.seconds = time.perf_counter() - started
    return run.report


@contextlib.contextmanager
def _rare_garbage_collection() -> Iterator[None]:
    # Every row makes a few short-lived containers. At the default threshold (700) the collector
    # runs thousands of times per million rows and rescans each batch in flight; it cost a third
    # of the checking time. Reference counting still frees the rows; only cycles wait longer.
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], 100_000), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)


class _Run:
    """One import in progress: its report, the customers it touched, the ids it has seen."""

    def __init__(self, database: Database, kind: str):
        self.database = database
        self.kind = kind
        self.report = ImportReport(kind=kind)
        self.stamp = utcnow()  # ingested_at / updated_at of every row this import writes
        self.affected: set[int] = set()  # customers whose state row is to be rebuilt
        self._customer_ids: dict[str, int] = {}  # external -> internal id, across batches
        self._seen: set[str] = set()  # customer ids already read from this file

    def load(self, batch: list[Row], parse: Parser) -> None:
        """Check a batch of rows and write the good ones in one transaction."""
        self.report.rows_read += len(batch)
        bad: list[tuple[int, str, str]] = []
        good: list[tuple[int, dict[str, Any]]] = []
        for line, cells, problems in batch:
            if cells is not None:
                row = parse(cells, problems)
            if problems:
                bad.extend((line, name, reason) for name, reason in problems)
                self.report.bad_rows += 1
            else:
                good.append((line, row))
        if good:
            with self.database.connection(write=True) as conn:
                if self.kind == "customers":
                    self._write_customers(conn, good)
                else:
                    self._write_events(conn, good, bad)
        bad.sort(key=operator.itemgetter(0))
        room = max(0, MAX_KEPT_ERRORS - len(self.report.errors))
        self.report.errors.extend(RowError(*error) for error in bad[:room])

    def _write_events(self, conn: Connection, good: list[tuple[int, dict[str, Any]]], bad: list) -> None:
        ids = self._lookup_customers(conn, {row["customer_id"] for _, row in good})
        rows = []
        for line, row in good:
            customer_id = ids.get(row["customer_id"])
            if customer_id is None:
                bad.append((line, "customer_id", "no customer with this id"))
                self.report.bad_rows += 1
                continue
            row["customer_id"] = customer_id
            row["ingested_at"] = self.stamp
            rows.append(row)
        self.affected.update(row["customer_id"] for row in rows)
        table = (TransactionRecord if self.kind == "transactions" else TouchpointRecord).__table__
        new = bulk.insert_new(conn, table, rows)
        self.report.new += new
        self.report.existing += len(rows) - new

    def _lookup_customers(self, conn: Connection, external_ids: set[str]) -> dict[str, int]:
        missing = external_ids.difference(self._customer_ids)
        if len(self._customer_ids) + len(missing) > _CUSTOMER_CACHE_LIMIT:
            self._customer_ids.clear()
            missing = external_ids
        if missing:
            self._customer_ids.update(bulk.customer_id_map(conn, missing))
        return self._customer_ids

    def _write_customers(self, conn: Connection, good: list[tuple[int, dict[str, Any]]]) -> None:
        rows = []
        for _, row in good:
            if row["external_id"] in self._seen:  # the first row of a repeated id wins
                self.report.existing += 1
                continue
            self._seen.add(row["external_id"])
            row["updated_at"] = self.stamp
            rows.append(row)
        stored = bulk.customer_id_map(conn, (row["external_id"] for row in rows))
        changed = bulk.merge_customers(conn, rows)
        new = len(rows) - len(stored)
        self.report.new += new
        self.report.updated += len(changed) - new
        self.report.existing += len(rows) - len(changed)
        self.affected.update(changed)

    def refresh_state(self) -> None:
        """Rebuild the state rows of the customers this import touched (new customers get one)."""
        if not self.affected:
            return
        with self.database.connection(write=True) as conn:
            if len(self.affected) > _REFRESH_ALL_ABOVE:
                refresh_state(conn)
            else:
                refresh_state(conn, customer_ids=sorted(self.affected))
