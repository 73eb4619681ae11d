"""Test fixtures: every database test runs on SQLite and on PostgreSQL, on the migrated schema."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from decision_server import create_app, migrate
from decision_server.auth import service as auth_service
from decision_server.auth.roles import Role
from decision_server.config import Config
from decision_server.db import Database, normalize_url
from decision_server.loyalty.records import TierRecord
from decision_server.loyalty.tiers import DEFAULT_TIERS
from decision_server.records import metadata

# Chromium for pytest-playwright, the live server on demo data and the screenshot helper.
pytest_plugins = ["browser_fixtures"]

REPO = Path(__file__).resolve().parent.parent
# The maintenance database; each test run creates (and drops) its own database next to it.
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.hookimpl(trylast=True)  # after pytest has grouped the tests by database
def pytest_collection_modifyitems(items):
    """Run the slow end-to-end tests first: under xdist they then run beside the rest instead of after it."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def _create_postgres_database() -> tuple[str, str]:
    admin = normalize_url(POSTGRES_URL)
    name = f"ds_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
            # A throw-away database need not wait for its WAL to reach the disk at each commit (3 ms
            # each on this box, ~100 a test); commits stay atomic and isolated, only a crash loses them.
            conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is required for the test suite and is not reachable at {POSTGRES_URL} (set TEST_POSTGRES_URL): {exc}",
            pytrace=False,
        )
    return conninfo, admin.set(database=name).render_as_string(hide_password=False)


def _drop_postgres_database(conninfo: str, url: str) -> None:
    name = sa.make_url(url).database
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def make_database_url(tmp_path_factory):
    """Return a factory of fresh, empty databases of a backend ("sqlite" or "postgresql")."""
    created: list[tuple[str, str]] = []

    def make(backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
        conninfo, url = _create_postgres_database()
        created.append((conninfo, url))
        return url

    yield make
    for conninfo, url in created:
        _drop_postgres_database(conninfo, url)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request, make_database_url) -> str:
    """A migrated database of each backend, shared by the tests of that backend."""
    url = make_database_url(request.param)
    database = Database(url)
    migrate.upgrade(database.engine)
    database.dispose()
    return url


@pytest.fixture
def database(database_url):
    """The migrated database, emptied after the test."""
    db = Database(database_url)
    yield db
    with db.engine.begin() as conn:
        tables = [t.name for t in metadata.sorted_tables]
        # DELETE, children first, not TRUNCATE: TRUNCATE gives every table and index a new file
        # (0.9 s a test on this box, a third of the suite); DELETE on a test's few rows takes 30 ms.
        for table in reversed(tables):
            conn.exec_driver_sql(f"DELETE FROM {table}")
        if db.dialect == "postgresql":  # and the ids start at 1 again, as after TRUNCATE ... RESTART IDENTITY
            owned = (
                conn.execute(
                    sa.text(
                        "SELECT DISTINCT s.oid::regclass::text FROM pg_class s JOIN pg_depend d ON d.objid = s.oid "
                        "JOIN pg_class t ON t.oid = d.refobjid WHERE s.relkind = 'S' AND t.relname = ANY(:tables)"
                    ),
                    {"tables": tables},
                )
                .scalars()
                .all()
            )
            for sequence in owned:
                conn.exec_driver_sql(f"ALTER SEQUENCE {sequence} RESTART")
        if sa.inspect(conn).has_table("apscheduler_jobs"):  # the scheduler's job store (not our metadata)
            conn.exec_driver_sql("DELETE FROM apscheduler_jobs")
        # Back to a freshly migrated database: migration 0011 defines the four default tiers.
        conn.execute(sa.insert(TierRecord.__table__), [{**t, "id": i} for i, t in enumerate(DEFAULT_TIERS, start=1)])
        if db.dialect == "postgresql":
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('loyalty_tiers', 'id'), 4)")
    db.dispose()


@pytest.fixture
def rules_dir(tmp_path) -> Path:
    """A copy of the shipped rule files that a test may edit."""
    target = tmp_path / "rules"
    shutil.copytree(REPO / "rules", target)
    return target


@pytest.fixture
def revision(rules_dir):
    """The test's rule files built with the compiled backend, for service-level bulk work (closed after)."""
    from decision_server.rules.engine import build_revision
    from decision_server.rules.source import read_rules_dir

    built = build_revision(read_rules_dir(rules_dir), backend="python", run_cases=False)
    yield built
    built.close()


@pytest.fixture
def config(database, rules_dir, tmp_path) -> Config:
    """Configuration for an app on the test database (no key cache, so revocation is immediate).

    Rules and models are not polled in the background; tests call `sync()` when they want a poll.
    The models folder starts empty (every model falls back); model tests train into it.
    """
    return Config(
        database_url=str(database.engine.url.render_as_string(hide_password=False)),
        rules_dir=rules_dir,
        rules_poll_seconds=0,
        models_dir=tmp_path / "models",
        models_poll_seconds=0,
        catalog_poll_seconds=0,
        learning_poll_seconds=0,
        key_cache_seconds=0,
    )


@pytest.fixture
def app(config):
    """The application under test."""
    application = create_app(config)
    yield application
    application.extensions["rulebook"].stop()
    application.extensions["models"].stop()
    application.extensions["catalog"].stop()
    application.extensions["decider"].learning.stop()
    application.extensions["database"].dispose()


@pytest.fixture
def client(app):
    """A test client of the app."""
    return app.test_client()


@pytest.fixture
def keys(database) -> dict[str, str]:
    """One API key per role, by role name."""
    with database.session(write=True) as session:
        return {role.value: auth_service.create_key(session, name=f"test-{role.value}", role=role.value).secret for role in Role}


@pytest.fixture
def auth(keys):
    """Return the Authorization header for a role: auth("admin")."""
    return lambda role: {"Authorization": f"Bearer {keys[role]}"}


@pytest.fixture
def run_ended(client, auth):
    """Return a function that follows a job run over the API until it ends and returns it: run_ended(run_id)."""

    def follow(run_id: int, role: str = "analyst") -> dict:
        deadline = time.monotonic() + 120
        while True:
            run = client.get(f"/api/v1/jobs/runs/{run_id}", headers=auth(role)).get_json()
            if run["status"] != "running":
                return run
            assert time.monotonic() < deadline, run
            time.sleep(0.1)

    return follow


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory) -> Path:
    """Models trained once per test run on a small demo base (SQLite); copy them, never edit them.

    churn is trained twice (two versions), so promotion and rollback have somewhere to go.
    """
    from decision_server.demo import generator
    from decision_server.scoring import training

    folder = tmp_path_factory.mktemp("trained")
    database = Database(f"sqlite:///{folder / 'demo.db'}")
    migrate.upgrade(database.engine)
    generator.load(database, generator.DemoSpec(customers=1500, seed=21))
    models = folder / "models"
    results = training.train(database, models, seed=1)
    assert all(r.error is None for r in results), [r.error for r in results]
    training.train(database, models, ["churn"], seed=2)
    database.dispose()
    return models


@pytest.fixture
def models_dir(config, trained_models) -> Path:
    """The test app's models folder, holding a copy of the trained models."""
    shutil.copytree(trained_models, config.models_dir, dirs_exist_ok=True)
    return config.models_dir
