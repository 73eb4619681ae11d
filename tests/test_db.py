"""Engine behaviour that production relies on: stale pooled connections are replaced, not failed."""

from __future__ import annotations

import psycopg

from decision_server import db as db_module
from decision_server import migrate
from decision_server.db import Database


def test_connection_dropped_by_the_server_is_replaced_after_idling(make_database_url, monkeypatch):
    database = Database(make_database_url("postgresql"))
    migrate.upgrade(database.engine)
    with database.connection() as conn:
        backend_pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    # The server drops the pooled connection (a restart, a failover, an idle timeout).
    admin = database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as other:
        assert other.execute("SELECT pg_terminate_backend(%s)", (backend_pid,)).fetchone()[0]

    monkeypatch.setattr(db_module, "IDLE_PING_SECONDS", 0.0)  # the connection counts as idle
    with database.connection() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM customers").scalar() == 0
        assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() != backend_pid
    database.dispose()


def test_sqlite_writers_of_two_processes_take_turns_on_the_writer_lock(tmp_path):
    """A second process's write waits while the first holds the writer lock (the lock file, not SQLite's lock)."""
    import subprocess
    import sys
    import threading
    import time

    from decision_server.db import Database

    url = f"sqlite:///{tmp_path / 'w.db'}"
    holding, release = tmp_path / "holding", tmp_path / "release"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import pathlib, sys, time\n"
                "from decision_server.db import Database, sqlite_writer_lock\n"
                f"database = Database({url!r})\n"
                "with sqlite_writer_lock(database.engine):  # the lock alone: no SQLite transaction is open\n"
                f"    pathlib.Path({str(holding)!r}).write_text('yes')\n"
                f"    while not pathlib.Path({str(release)!r}).exists(): time.sleep(0.01)\n"
            ),
        ]
    )
    try:
        deadline = time.monotonic() + 30
        while not holding.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert holding.exists(), "the child never took the write lock"
        database = Database(url)
        entered = threading.Event()

        def write():
            with database.connection(write=True):
                entered.set()

        writer = threading.Thread(target=write)
        writer.start()
        assert not entered.wait(0.5)  # the child holds the writer lock: we wait
        release.write_text("go")
        assert entered.wait(30)  # handed over as soon as the child's transaction ends
        writer.join()
        assert (tmp_path / "w.db.writer-lock").exists()
        database.dispose()
    finally:
        release.write_text("go")
        child.wait(30)
