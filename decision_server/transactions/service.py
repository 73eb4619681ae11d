"""Add and list transactions."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from decision_server.customers.records import CustomerRecord
from decision_server.errors import ValidationError
from decision_server.ingest.events import EventKind, ingest_events, list_events
from decision_server.transactions.records import TransactionRecord

TRANSACTIONS = EventKind(
    table=TransactionRecord.__table__,
    content=("occurred_at", "amount_cents", "cost_cents", "product", "category", "channel", "refund_of"),
    noun="transaction",
)


def add_transactions(
    session: Session, *, items: list[dict[str, Any]], batch: bool, after: Any = None, on_created: Any = None
) -> list[dict[str, Any]]:
    """Store purchases idempotently and bring their customers' state (and loyalty points) up to date."""
    field = (lambda i, name: f"items.{i}.{name}") if batch else (lambda i, name: name)
    _check_refunds(session, items, field)
    return ingest_events(session, TRANSACTIONS, items, field=field, after=after, on_created=on_created)


def _check_refunds(session: Session, items: list[dict[str, Any]], field: Any) -> None:
    """A refund may name the purchase it refunds: it must be a purchase of the same customer."""
    named = [(i, item) for i, item in enumerate(items) if item.get("refund_of")]
    if not named:
        return
    t, c = TransactionRecord.__table__, CustomerRecord.__table__
    wanted = sorted({item["refund_of"] for _, item in named})
    stored = {
        row.external_id: (row.customer, row.amount_cents)
        for row in session.execute(
            sa.select(t.c.external_id, c.c.external_id.label("customer"), t.c.amount_cents)
            .join(c, c.c.id == t.c.customer_id)
            .where(t.c.external_id.in_(wanted))
        )
    }
    in_batch = {item["external_id"]: (item["customer_id"], item["amount_cents"]) for item in items if item.get("external_id")}
    errors = {}
    for i, item in named:
        if item["amount_cents"] >= 0:
            errors[field(i, "refund_of")] = ["only a refund (a negative amount) can name the purchase it refunds"]
            continue
        purchase = stored.get(item["refund_of"]) or in_batch.get(item["refund_of"])
        if purchase is None:
            errors[field(i, "refund_of")] = ["no purchase with this id"]
        elif purchase[0] != item["customer_id"] or purchase[1] <= 0:
            errors[field(i, "refund_of")] = ["not a purchase of this customer"]
    if errors:
        raise ValidationError("invalid refund", errors=errors, code="refund_invalid")


def list_transactions(session: Session, *, customer_external_id: str, **filters: Any) -> list[dict[str, Any]]:
    """Return a page of a customer's purchases, newest first."""
    return list_events(session, TRANSACTIONS, customer_external_id=customer_external_id, **filters)
