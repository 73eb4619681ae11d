"""Add and list transactions."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from decision_server.ingest.events import EventKind, ingest_events, list_events
from decision_server.transactions.records import TransactionRecord

TRANSACTIONS = EventKind(
    table=TransactionRecord.__table__,
    content=("occurred_at", "amount_cents", "cost_cents", "product", "category", "channel"),
    noun="transaction",
)


def add_transactions(session: Session, *, items: list[dict[str, Any]], batch: bool, after: Any = None) -> list[dict[str, Any]]:
    """Store purchases idempotently and bring their customers' state up to date."""
    field = (lambda i, name: f"items.{i}.{name}") if batch else (lambda i, name: name)
    return ingest_events(session, TRANSACTIONS, items, field=field, after=after)


def list_transactions(session: Session, *, customer_external_id: str, **filters: Any) -> list[dict[str, Any]]:
    """Return a page of a customer's purchases, newest first."""
    return list_events(session, TRANSACTIONS, customer_external_id=customer_external_id, **filters)
