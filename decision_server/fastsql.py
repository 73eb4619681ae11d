"""Statements for the decision hot path, run on the driver's connection with SQLAlchemy's SQL.

SQLAlchemy Core costs ~70-120 µs per statement in compiling caches, events and result
processing; the decision path runs four or five statements per request. Here a Core statement is
compiled once for the engine's dialect, and values are converted exactly as our column types do
(UtcDateTime, JSON, Boolean), so rows written here are the rows SQLAlchemy would write and read
back (tests compare both paths).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from decision_server.db import UTC, UtcDateTime, sqlite_writer_lock, to_utc

_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's SQLite DateTime text: text order is time order


def _bind_converter(type_: Any, sqlite: bool):
    if isinstance(type_, UtcDateTime):
        if sqlite:
            return lambda v: None if v is None else to_utc(v).strftime(_SQLITE_TIME)
        return lambda v: None if v is None else to_utc(v)
    if isinstance(type_, sa.JSON) or isinstance(getattr(type_, "impl", None), sa.JSON):
        # orjson: ~10x json.dumps on the decision log; NaN becomes null (valid for PostgreSQL's jsonb).
        return lambda v: None if v is None else orjson.dumps(v).decode()
    return None


def _result_converter(type_: Any, sqlite: bool):
    if isinstance(type_, UtcDateTime):
        if sqlite:
            return lambda v: None if v is None else dt.datetime.fromisoformat(v).replace(tzinfo=UTC)
        return lambda v: None if v is None else to_utc(v)
    if isinstance(type_, sa.JSON) and sqlite:
        return lambda v: None if v is None else orjson.loads(v)
    if isinstance(type_, sa.Boolean) and sqlite:
        return lambda v: None if v is None else bool(v)
    return None


class Prepared:
    """One statement compiled for one engine, with its value conversions."""

    def __init__(self, engine: Engine, statement: sa.sql.ClauseElement, *, expand: bool = False):
        """`expand`: the statement runs once with its own values, and an `IN` list among them becomes
        one bound parameter per item (an expanding parameter cannot be compiled once for any list)."""
        compiled = statement.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True} if expand else {})
        self.sql = compiled.string
        sqlite = engine.dialect.name == "sqlite"
        self.positional = tuple(compiled.positiontup) if compiled.positiontup is not None else None
        # Literals in the statement keep their values; named parameters come from each call.
        self.defaults = {name: bind.value for bind, name in compiled.bind_names.items() if not bind.expanding}
        self.binders = {}
        for bind, name in compiled.bind_names.items():
            converter = _bind_converter(bind.type, sqlite)
            if converter is not None and not bind.expanding:
                self.binders[name] = converter
        if expand:  # the items of IN lists, each its own parameter now (id_3_1, id_3_2, ...)
            self.defaults.update({k: v for k, v in compiled.params.items() if k not in self.defaults})
        columns = getattr(statement, "selected_columns", None) or ()
        self.names = tuple(c.name for c in columns)
        self.readers = tuple((i, f) for i, c in enumerate(columns) if (f := _result_converter(c.type, sqlite)) is not None)

    def params(self, values: Mapping[str, Any]) -> Any:
        """Return the driver's parameters for `values` (statement literals filled in)."""
        merged = {**self.defaults, **values}
        for name, convert in self.binders.items():
            merged[name] = convert(merged[name])
        return tuple(merged[n] for n in self.positional) if self.positional is not None else merged

    def rows(self, cursor: Any, values: Mapping[str, Any]) -> list[tuple]:
        """Run a SELECT and return its rows with values as SQLAlchemy would give them."""
        cursor.execute(self.sql, self.params(values))
        rows = cursor.fetchall()
        if not self.readers:
            return rows
        out = []
        for row in rows:
            row = list(row)
            for i, convert in self.readers:
                row[i] = convert(row[i])
            out.append(tuple(row))
        return out

    def execute_columns(self, cursor: Any, columns: Mapping[str, Any]) -> None:
        """Run an INSERT or UPDATE once per row, the values given column by column (bulk writes).

        A column is a sequence (one value per row) or a single value for every row; each is
        converted once per column rather than once per row and value.
        """
        names = self.positional if self.positional is not None else tuple(self.defaults)
        rows = None
        lists = []
        for name in names:
            column = columns.get(name, self.defaults.get(name))
            convert = self.binders.get(name)
            if isinstance(column, (list, tuple)):
                rows = len(column)
                lists.append([convert(v) for v in column] if convert else list(column))
            else:
                lists.append(convert(column) if convert else column)
        if not rows:
            return
        lists = [c if isinstance(c, list) else itertools.repeat(c, rows) for c in lists]
        if self.positional is not None:
            cursor.executemany(self.sql, zip(*lists, strict=True))
        else:
            cursor.executemany(self.sql, [dict(zip(names, values, strict=True)) for values in zip(*lists, strict=True)])

    def execute(self, cursor: Any, values: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
        """Run an INSERT or UPDATE for one row, or for each of several."""
        if isinstance(values, Mapping):
            cursor.execute(self.sql, self.params(values))
        else:
            cursor.executemany(self.sql, [self.params(v) for v in values])


def raw_rows(conn: Any, statement: sa.Select) -> list[tuple]:
    """Run a SELECT on a SQLAlchemy connection's driver; rows with the driver's own values (bulk reads).

    On SQLite timestamps come back as the naive UTC text they are stored as.
    """
    rows: list[tuple] = []
    for part in raw_slices(conn, statement, None):
        rows.extend(part)
    return rows


def raw_slices(conn: Any, statement: sa.Select, size: int | None) -> Iterator[list[tuple]]:
    """Like raw_rows, `size` rows at a time (all at once for None), so a long result is never all in memory."""
    prepared = Prepared(conn.engine, statement, expand=True)
    cur = conn.connection.driver_connection.cursor()
    try:
        cur.execute(prepared.sql, prepared.params({}))
        if size is None:
            yield cur.fetchall()
            return
        while rows := cur.fetchmany(size):
            yield rows
    finally:
        cur.close()


@contextlib.contextmanager
def cursor(engine: Engine, *, write: bool = False) -> Iterator[Any]:
    """Yield a driver cursor on a pooled connection; with `write`, one committed transaction."""
    sqlite = engine.dialect.name == "sqlite"
    lock = sqlite_writer_lock(engine) if write else contextlib.nullcontext()  # shared with Database's write sessions
    with lock:
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            if write and sqlite:
                cur.execute("BEGIN IMMEDIATE")  # take the write lock up front, as Database.session(write=True)
            try:
                yield cur
            except BaseException:
                if write:
                    cur.execute("ROLLBACK") if sqlite else raw.rollback()
                raise
            if write:
                cur.execute("COMMIT") if sqlite else raw.commit()
            elif not sqlite:
                # End the read transaction with COMMIT: the pool would roll it back, and psycopg drops
                # its prepared statements on rollback, so every read would be planned again (~0.4 ms).
                raw.commit()
            cur.close()
        finally:
            raw.close()  # back to the pool, which rolls back anything left open
