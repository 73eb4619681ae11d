"""Run the Alembic migrations shipped with the package against a database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

import decision_server.migrations as migrations_package


def alembic_config(engine: Engine) -> AlembicConfig:
    """Build an Alembic config that runs the packaged migrations on `engine`."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(migrations_package.__file__).parent))
    cfg.attributes["engine"] = engine
    return cfg


def _run(engine: Engine, fn, *args) -> None:
    cfg = alembic_config(engine)
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        fn(cfg, *args)
        conn.commit()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to `revision` (default: the newest), then fill what new columns need."""
    before = current_revision(engine)
    _run(engine, command.upgrade, revision)
    after = current_revision(engine)
    if before is not None and before < "0003" <= (after or ""):
        # 0003 added the state row's monthly activity buckets: build them from the stored events
        # (the rows would otherwise read as quiet customers until their next event).
        from decision_server.customers.state import refresh_state

        with engine.begin() as conn:
            refresh_state(conn)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to `revision`."""
    _run(engine, command.downgrade, revision)


def check(engine: Engine) -> None:
    """Raise if the records differ from what the migrations build (`alembic check`)."""
    _run(engine, command.check)


def current_revision(engine: Engine) -> str | None:
    """Return the revision the database is at, or None when it was never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    """Return the newest revision the package ships."""
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
