"""Bulk writes for imports and demo data: Core statements on a held connection, no ORM objects.

Rows are plain dicts with the column names of the tables. Every write is idempotent: customers
are upserted by external id, transactions and touchpoints are skipped when their external id is
already stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from decision_server.customers.records import CustomerRecord
from decision_server.db import upsert
from decision_server.touchpoints.records import TouchpointRecord
from decision_server.transactions.records import TransactionRecord

CUSTOMER_COLUMNS = ("first_name", "last_name", "email", "phone", "consent", "attributes", "created_at", "updated_at")


def upsert_customers(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert customers, or update them in place when their external id exists."""
    if not rows:
        return
    table = CustomerRecord.__table__
    statement = upsert(conn, table)
    statement = statement.on_conflict_do_update(
        index_elements=["external_id"],
        set_={name: statement.excluded[name] for name in CUSTOMER_COLUMNS if name in rows[0]},
    )
    conn.execute(statement, rows)


def insert_new(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert event rows, skipping those whose external id is already stored."""
    if rows:
        conn.execute(upsert(conn, table).on_conflict_do_nothing(index_elements=["external_id"]), rows)


def insert_transactions(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert transactions that are not stored yet."""
    insert_new(conn, TransactionRecord.__table__, rows)


def insert_touchpoints(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert touchpoints that are not stored yet."""
    insert_new(conn, TouchpointRecord.__table__, rows)


def customer_id_map(conn: Connection, external_ids: Iterable[str] | None = None) -> dict[str, int]:
    """Map external ids to internal ids: all customers, or only `external_ids`."""
    c = CustomerRecord.__table__.c
    if external_ids is None:
        return {x: i for x, i in conn.execute(sa.select(c.external_id, c.id))}
    ids = sorted(set(external_ids))
    found: dict[str, int] = {}
    for start in range(0, len(ids), 900):
        query = sa.select(c.external_id, c.id).where(c.external_id.in_(ids[start : start + 900]))
        found.update({x: i for x, i in conn.execute(query)})
    return found
