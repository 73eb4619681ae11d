"""Database access: engine set-up for SQLite and PostgreSQL, the declarative base, shared types."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows has no fcntl: threads still queue, processes poll as SQLite does
    fcntl = None

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Session

from decision_server.errors import ConfigError

UTC = dt.UTC

# Integer ids: BIGINT on PostgreSQL, INTEGER on SQLite (only INTEGER PRIMARY KEY is a rowid alias).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# The largest id a BigId column holds on both (SQLite's INTEGER is 64-bit signed too).
MAX_ID = 2**63 - 1
# JSON documents: JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.
Json = sa.JSON().with_variant(JSONB(), "postgresql")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every record; its metadata is what Alembic compares against."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(sa.TypeDecorator):
    """A timestamp that is always timezone-aware UTC in Python, whatever the database keeps."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = to_utc(value)
        # SQLite has no time zones: keep naive UTC text so that text order is time order.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):  # a value written by raw SQL on SQLite
            value = dt.datetime.fromisoformat(value)
        return to_utc(value)


def to_utc(value: dt.datetime) -> dt.datetime:
    """Return value as aware UTC; a naive value is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def utcnow() -> dt.datetime:
    """Return the current time, aware UTC."""
    return dt.datetime.now(UTC)


def normalize_url(url: str | URL) -> URL:
    """Parse a database URL and pin the driver: psycopg 3 for PostgreSQL, sqlite3 for SQLite."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with a terse message
        raise ConfigError(f"DATABASE_URL is not a valid database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if parsed.drivername not in ("sqlite", "sqlite+pysqlite"):
            raise ConfigError(f"unsupported SQLite driver {parsed.drivername!r}; use sqlite:///PATH")
        return parsed
    raise ConfigError(f"unsupported database {backend!r} in DATABASE_URL; use sqlite:///PATH or postgresql://user@host:port/db")


def create_engine(url: str | URL) -> Engine:
    """Create an engine with the settings this project relies on for each backend."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    return _ping_when_idle(sa.create_engine(parsed, pool_size=8, max_overflow=8))


# A pooled connection unused for longer than this is checked before use (a server restart or a
# firewall may have dropped it). Checking on every checkout, as pool_pre_ping does, costs one
# round trip per request: ~0.3 ms of a 1.4 ms customer read on PostgreSQL.
IDLE_PING_SECONDS = 10.0


def _ping_when_idle(engine: Engine) -> Engine:
    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection, record):
        record.info["last_used"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection, record, _proxy):
        last_used = record.info.get("last_used")
        if last_used is None or time.monotonic() - last_used < IDLE_PING_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception:
            alive = False
        if not alive:
            raise sa.exc.DisconnectionError("stale pooled connection")  # the pool reconnects

    return engine


def _sqlite_engine(url: URL) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Take transaction control away from the sqlite3 module so that BEGIN is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection):
        # A writer takes the write lock up front: a deferred transaction that reads and then
        # writes can fail with SQLITE_BUSY at once instead of waiting for the other writer.
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def dialect_of(db: Session | Connection) -> str:
    """Return the database dialect name ("sqlite" or "postgresql") behind a session or connection."""
    bind = db.get_bind() if isinstance(db, Session) else db
    return bind.dialect.name


def utc_day(db: Session | Connection, column: sa.ColumnElement) -> sa.ColumnElement:
    """Return the UTC calendar day of a time column in SQL (a date on PostgreSQL, 'YYYY-MM-DD' text on SQLite)."""
    if dialect_of(db) == "postgresql":
        return sa.cast(sa.func.timezone("UTC", column), sa.Date)
    return sa.func.date(column)  # SQLite keeps UTC text: its first ten characters are the day


def as_date(value: Any) -> dt.date:
    """Return a day read back from utc_day() as a date (SQLite answers text)."""
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def upsert(db: Session | Connection, table: sa.Table):
    """Return the INSERT construct that supports ON CONFLICT on the database behind `db`."""
    return (postgresql.insert if dialect_of(db) == "postgresql" else sqlite.insert)(table)


# One writer at a time on SQLite, queued rather than polling: SQLite's busy handler sleeps 1, 2, 5,
# 10 ... 100 ms between tries, so a writer waiting on another can sleep long after the lock is free.
# Threads of a process queue on a re-entrant lock; processes (server workers, a CLI bulk run) on an
# flock of a file beside the database, which the kernel hands over at once and frees if a process
# dies. (p99 of a loyalty earn at 8 connections: 244-338 ms polling, 41 ms queued in one process;
# BEGIN IMMEDIATE of the decision log: 11-19 ms polling, 0.2-0.6 ms queued.) A nested write in the
# same thread is let through, and waits on SQLite as before.
class _WriterLock:
    def __init__(self, path: str | None):
        self._threads = threading.RLock()
        self._path = path if fcntl is not None else None
        self._fd: int | None = None
        self._pid = 0
        self._depth = 0

    def _file(self) -> int | None:
        if self._path is None:
            return None
        if self._fd is None or self._pid != os.getpid():  # a forked child shares its parent's lock: reopen
            try:
                self._fd, self._pid = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600), os.getpid()
            except OSError:  # a read-only folder: threads still queue, processes poll as SQLite does
                self._path = None
                return None
        return self._fd

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            if self._depth == 0 and (fd := self._file()) is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise
        self._depth += 1

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None and self._pid == os.getpid():
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()


_sqlite_writers: dict[str, _WriterLock] = {}
_sqlite_writers_guard = threading.Lock()


def sqlite_writer_lock(engine: Engine):
    """The lock the writers of a SQLite database take turns on, across threads and processes (a no-op elsewhere)."""
    if engine.dialect.name != "sqlite":
        return contextlib.nullcontext()
    database = engine.url.database
    path = f"{Path(database).resolve()}.writer-lock" if database and database != ":memory:" else None
    with _sqlite_writers_guard:
        return _sqlite_writers.setdefault(str(engine.url), _WriterLock(path))


class Database:
    """One engine and the ways to open units of work on it."""

    def __init__(self, url: str | URL):
        self.engine = create_engine(url)
        self.dialect = self.engine.dialect.name

    @contextlib.contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """Open a session in a transaction; commit on success, roll back on any error."""
        with sqlite_writer_lock(self.engine) if write else contextlib.nullcontext(), self.engine.connect() as conn:
            if write:
                conn.execution_options(sqlite_immediate=True)
            with conn.begin():
                session = Session(bind=conn, expire_on_commit=False, autoflush=False)
                try:
                    yield session
                    session.flush()
                finally:
                    session.close()

    @contextlib.contextmanager
    def connection(self, *, write: bool = False) -> Iterator[Connection]:
        """Open a Core connection in a transaction (bulk paths: no ORM objects)."""
        with sqlite_writer_lock(self.engine) if write else contextlib.nullcontext(), self.engine.connect() as conn:
            if write:
                conn.execution_options(sqlite_immediate=True)
            with conn.begin():
                yield conn

    def ping(self) -> None:
        """Run a trivial query; raises when the database cannot be reached."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
