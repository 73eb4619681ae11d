"""The migrations build the schema from nothing, match the records, and go down again."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from decision_server import migrate
from decision_server.db import Database
from decision_server.records import metadata


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_empty_to_head_matches_records_and_back(make_database_url, backend):
    database = Database(make_database_url(backend))
    try:
        assert migrate.current_revision(database.engine) is None
        migrate.upgrade(database.engine)
        assert migrate.current_revision(database.engine) == migrate.head_revision(database.engine)
        migrate.check(database.engine)  # `alembic check`: raises when records and migrations differ
        tables = set(sa.inspect(database.engine).get_table_names())
        assert {t.name for t in metadata.sorted_tables} <= tables

        migrate.downgrade(database.engine, "base")
        assert set(sa.inspect(database.engine).get_table_names()) <= {"alembic_version"}
        migrate.upgrade(database.engine)
        migrate.upgrade(database.engine)  # repeating is harmless
        assert migrate.current_revision(database.engine) == migrate.head_revision(database.engine)
    finally:
        database.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(make_database_url):
    database = Database(make_database_url("sqlite"))
    with database.connection() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    database.dispose()


def test_the_migration_defines_the_default_tiers(make_database_url):
    """Migration 0011 keeps its own copy of the default tiers (migrations never import app code): the same."""
    from decision_server.loyalty.tiers import DEFAULT_TIERS

    database = Database(make_database_url("sqlite"))
    migrate.upgrade(database.engine)
    with database.connection() as conn:
        rows = conn.execute(
            sa.text("SELECT name, rank, multiplier, benefits, description FROM loyalty_tiers ORDER BY rank")
        ).all()
    database.dispose()
    assert [(r.name, r.rank, r.multiplier, json.loads(r.benefits), r.description) for r in rows] == [
        (t["name"], t["rank"], t["multiplier"], json.loads(json.dumps(t["benefits"])), t["description"]) for t in DEFAULT_TIERS
    ]
