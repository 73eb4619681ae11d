"""Add and list touchpoints."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from decision_server.ingest.events import EventKind, ingest_events, list_events
from decision_server.touchpoints.records import TouchpointRecord

TOUCHPOINTS = EventKind(
    table=TouchpointRecord.__table__,
    content=("occurred_at", "channel", "kind", "payload"),
    noun="touchpoint",
)


def add_touchpoints(session: Session, *, items: list[dict[str, Any]], batch: bool, after: Any = None) -> list[dict[str, Any]]:
    """Store interactions idempotently and bring their customers' state up to date."""
    field = (lambda i, name: f"items.{i}.{name}") if batch else (lambda i, name: name)
    return ingest_events(session, TOUCHPOINTS, items, field=field, after=after)


def list_touchpoints(session: Session, *, customer_external_id: str, **filters: Any) -> list[dict[str, Any]]:
    """Return a page of a customer's interactions, newest first."""
    return list_events(session, TOUCHPOINTS, customer_external_id=customer_external_id, **filters)
