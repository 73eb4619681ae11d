"""Idempotent writes of customer events (transactions, touchpoints) from the API."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from decision_server.customers.records import CustomerRecord
from decision_server.customers.state import refresh_state
from decision_server.db import upsert, utcnow
from decision_server.errors import Conflict, ValidationError
from decision_server.ingest.bulk import customer_id_map


@dataclasses.dataclass(frozen=True)
class EventKind:
    """What differs between event tables: the table, its content columns and its name."""

    table: sa.Table
    content: tuple[str, ...]
    noun: str


def ingest_events(
    session: Session,
    kind: EventKind,
    items: list[dict[str, Any]],
    *,
    field: Callable[[int, str], str],
    after: Callable[[Session, list[int]], object] | None = None,
    on_created: Callable[[Session, list[dict[str, Any]]], object] | None = None,
) -> list[dict[str, Any]]:
    """Store events once each: new ids are created, repeats with equal content are no-ops.

    `items` hold `customer_id` (external), an optional `external_id` and the content columns.
    `field(i, name)` names the field of item i in error messages. Nothing is written unless every
    item is valid; the result lists each stored row with `status` "created" or "existing".
    `after(session, customer_ids)` runs in the same transaction once the state rows of the
    customers with new events are up to date (the event path: stage, RFM place). `on_created(session,
    rows)` runs just before it with the rows this call stored (loyalty points for new purchases).
    """
    items = [{**item, "external_id": item.get("external_id") or uuid.uuid4().hex} for item in items]
    _check_repeats(kind, items, field)
    customers = customer_id_map(session.connection(), (item["customer_id"] for item in items))
    unknown = {
        field(i, "customer_id"): ["no customer with this id"]
        for i, item in enumerate(items)
        if item["customer_id"] not in customers
    }
    if unknown:
        raise ValidationError("unknown customer id", errors=unknown, code="unknown_customer")

    # Writers of the same customer take turns, so that each state refresh below sees the events
    # the others committed (PostgreSQL would otherwise let two refreshes overwrite each other;
    # SQLite's write lock already serializes them and ignores FOR UPDATE).
    session.execute(
        sa.select(CustomerRecord.id)
        .where(CustomerRecord.id.in_(sorted(set(customers.values()))))
        .order_by(CustomerRecord.id)
        .with_for_update()
    ).all()
    wanted = {
        item["external_id"]: {"customer_id": customers[item["customer_id"]], **{c: item.get(c) for c in kind.content}}
        for item in items
    }
    stored = _load(session, kind, list(wanted))
    now = utcnow()
    new_rows = [{"external_id": x, **row, "ingested_at": now} for x, row in wanted.items() if x not in stored]
    if new_rows:
        insert = (
            upsert(session, kind.table).on_conflict_do_nothing(index_elements=["external_id"]).returning(kind.table.c.external_id)
        )
        # RETURNING names only the rows this call inserted, not those a concurrent call won.
        created = set(session.execute(insert, new_rows).scalars())
        stored = _load(session, kind, list(wanted))
        changed = sorted({wanted[x]["customer_id"] for x in created})
        refresh_state(session, customer_ids=changed)
        if on_created is not None and created:
            on_created(session, [stored[x] for x in sorted(created, key=lambda x: stored[x]["id"])])
        if after is not None and changed:
            after(session, changed)
    else:
        created = set()

    conflicts = {}
    for i, item in enumerate(items):
        row = stored[item["external_id"]]
        differing = [c for c in ("customer_id", *kind.content) if row[c] != wanted[item["external_id"]][c]]
        if differing and item["external_id"] not in created:
            conflicts[field(i, "external_id")] = [
                f"a {kind.noun} with this id exists with other values for: {', '.join(differing)}"
            ]
    if conflicts:
        raise Conflict(f"{kind.noun} id already used for other content", errors=conflicts, code=f"{kind.noun}_conflict")
    results = []
    for item in items:
        key = item["external_id"]
        results.append(
            {**stored[key], "customer_external_id": item["customer_id"], "status": "created" if key in created else "existing"}
        )
        created.discard(key)  # a repeat later in the same batch is "existing"
    return results


def _check_repeats(kind: EventKind, items: list[dict[str, Any]], field: Callable[[int, str], str]) -> None:
    first: dict[str, dict[str, Any]] = {}
    errors = {}
    for i, item in enumerate(items):
        seen = first.setdefault(item["external_id"], item)
        if seen is not item and any(seen.get(c) != item.get(c) for c in ("customer_id", *kind.content)):
            errors[field(i, "external_id")] = ["repeated in this batch with different content"]
    if errors:
        raise ValidationError("repeated ids in the batch", errors=errors)


def _load(session: Session, kind: EventKind, external_ids: list[str]) -> dict[str, dict[str, Any]]:
    t = kind.table
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(external_ids), 900):
        rows = session.execute(sa.select(t).where(t.c.external_id.in_(external_ids[start : start + 900])))
        found.update({row.external_id: dict(row._mapping) for row in rows})
    return found


def list_events(
    session: Session,
    kind: EventKind,
    /,  # positional only: `kind` is also a touchpoint filter that arrives in **equal
    *,
    customer_external_id: str,
    limit: int,
    after: list | None = None,
    occurred_from=None,
    occurred_to=None,
    **equal: Any,
) -> list[dict[str, Any]]:
    """Return up to limit + 1 of a customer's events, newest first, after the cursor `after`."""
    from decision_server.customers.service import find_customer

    customer = find_customer(session, external_id=customer_external_id)
    t = kind.table
    query = sa.select(t).where(t.c.customer_id == customer.id)
    if after is not None:
        if len(after) != 2 or not hasattr(after[0], "isoformat"):
            raise ValidationError("bad cursor", errors={"cursor": ["not a cursor returned by this API"]})
        when, last_id = after
        query = query.where(sa.or_(t.c.occurred_at < when, sa.and_(t.c.occurred_at == when, t.c.id < last_id)))
    if occurred_from is not None:
        query = query.where(t.c.occurred_at >= occurred_from)
    if occurred_to is not None:
        query = query.where(t.c.occurred_at < occurred_to)
    for name, value in equal.items():
        if value is not None:
            query = query.where(t.c[name] == value)
    query = query.order_by(t.c.occurred_at.desc(), t.c.id.desc()).limit(limit + 1)
    return [{**row._mapping, "customer_external_id": customer_external_id} for row in session.execute(query)]


def event_position(row: dict[str, Any]) -> tuple:
    """Return the keyset position of an event row (newest-first order)."""
    return (row["occurred_at"], row["id"])


def batch_result(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Summarize a batch: how many rows were created and how many existed already."""
    created = sum(1 for row in rows if row["status"] == "created")
    return {"created": created, "existing": len(rows) - created, "items": rows}
