"""Reading bulk job runs: the newest first, filtered by status, for the API and the console."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from decision_server.jobs import reevaluation
from decision_server.jobs.records import BulkRunRecord

_runs = BulkRunRecord.__table__


def list_runs(conn: Connection, *, limit: int, status: str | None = None, before: int | None = None) -> list[dict[str, Any]]:
    """Return up to `limit` + 1 runs, newest first (the extra one tells the caller there is a next page)."""
    statement = sa.select(_runs).order_by(_runs.c.id.desc()).limit(limit + 1)
    if status:
        statement = statement.where(_runs.c.status == status)
    if before:
        statement = statement.where(_runs.c.id < before)
    return [reevaluation.with_rate(dict(r._mapping)) for r in conn.execute(statement)]
