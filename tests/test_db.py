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
