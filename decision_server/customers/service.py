"""Create, update, read and list customers."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from decision_server.customers.records import CustomerRecord, CustomerStateRecord
from decision_server.errors import Conflict, NotFound
from decision_server.validation import check_external_id

_STATE_FIELDS = (
    "transaction_count",
    "total_spend_cents",
    "total_cost_cents",
    "first_purchase_at",
    "last_purchase_at",
    "touchpoint_count",
    "last_touchpoint_at",
    "stage",
    "stage_since",
    "rfm_r",
    "rfm_f",
    "rfm_m",
    "rfm_segment",
    "value_score",
    "value_segment",
    "journey_stage",
)
_EMPTY_STATE = {name: 0 if name.endswith(("count", "cents")) else None for name in _STATE_FIELDS}
_CUSTOMER_FIELDS = (
    "id",
    "external_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "consent",
    "attributes",
    "created_at",
    "updated_at",
)


@functools.cache
def _profile_query() -> sa.Select:
    """Select customers with their state as flat columns: read paths skip ORM objects."""
    c, st = CustomerRecord.__table__.c, CustomerStateRecord.__table__.c
    return sa.select(*(c[n] for n in _CUSTOMER_FIELDS), *(st[n] for n in _STATE_FIELDS)).select_from(
        CustomerRecord.__table__.outerjoin(CustomerStateRecord.__table__, st.customer_id == c.id)
    )


@functools.cache
def _profile_by_external_id() -> sa.Select:
    """The one-customer read, built once (it is the API's most frequent query)."""
    return _profile_query().where(CustomerRecord.__table__.c.external_id == sa.bindparam("external_id"))


def _profile_from_row(row: sa.Row) -> dict[str, Any]:
    values = row._mapping
    state = {n: values[n] for n in _STATE_FIELDS}
    if state["transaction_count"] is None:  # no state row yet
        state = dict(_EMPTY_STATE)
    return {**{n: values[n] for n in _CUSTOMER_FIELDS}, "state": state}


def _not_found(external_id: str) -> NotFound:
    return NotFound(f"no customer with id {external_id!r}", code="customer_not_found")


def find_customer(session: Session, *, external_id: str) -> CustomerRecord:
    """Return the customer with `external_id` or raise customer_not_found."""
    if check_external_id(external_id):  # cannot exist; PostgreSQL would also refuse a NUL in it
        raise _not_found(external_id)
    customer = session.scalars(sa.select(CustomerRecord).where(CustomerRecord.external_id == external_id)).first()
    if customer is None:
        raise _not_found(external_id)
    return customer


def customer_id(session: Session, *, external_id: str) -> int:
    """Return the database id of the customer with `external_id` or raise customer_not_found (one indexed read)."""
    found = (
        None
        if check_external_id(external_id)
        else session.scalar(sa.select(CustomerRecord.id).where(CustomerRecord.external_id == external_id))
    )
    if found is None:
        raise _not_found(external_id)
    return found


def get_customer(session: Session, *, external_id: str) -> dict[str, Any]:
    """Return one customer's profile with its state row."""
    if check_external_id(external_id):
        raise _not_found(external_id)
    row = session.connection().execute(_profile_by_external_id(), {"external_id": external_id}).first()
    if row is None:
        raise _not_found(external_id)
    return _profile_from_row(row)


def create_customer(session: Session, *, external_id: str, **fields: Any) -> dict[str, Any]:
    """Create a customer; an external id already in use is a conflict."""
    exists = session.scalar(sa.select(CustomerRecord.id).where(CustomerRecord.external_id == external_id))
    if exists is not None:
        raise Conflict(
            f"a customer with id {external_id!r} already exists; PATCH it to change it",
            code="customer_exists",
            errors={"external_id": ["already exists"]},
        )
    fields.setdefault("consent", {})
    fields.setdefault("attributes", {})
    customer = CustomerRecord(external_id=external_id, **fields)
    session.add(customer)
    session.flush()
    session.add(CustomerStateRecord(customer_id=customer.id, **_EMPTY_STATE))
    session.flush()
    return get_customer(session, external_id=external_id)


def update_customer(session: Session, *, external_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Apply a partial update: plain fields are replaced, consent and attributes merged by key."""
    customer = find_customer(session, external_id=external_id)
    for name, value in changes.items():
        if name in ("consent", "attributes"):
            merged = {**getattr(customer, name), **value}
            setattr(customer, name, {k: v for k, v in merged.items() if v is not None})
        else:
            setattr(customer, name, value)
    session.flush()
    return get_customer(session, external_id=external_id)


def list_customers(
    session: Session,
    *,
    limit: int,
    after: list | None = None,
    q: str | None = None,
    email: str | None = None,
    created_from: dt.datetime | None = None,
    created_to: dt.datetime | None = None,
    consent: str | None = None,
) -> list[dict[str, Any]]:
    """Return up to limit + 1 customer profiles after the cursor position `after`, oldest first."""
    query = _profile_query().order_by(CustomerRecord.id).limit(limit + 1)
    if after is not None:
        query = query.where(CustomerRecord.id > after[-1])
    if q:
        pattern = "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            sa.or_(
                *(
                    sa.func.lower(col).like(pattern, escape="\\")
                    for col in (
                        CustomerRecord.external_id,
                        CustomerRecord.first_name,
                        CustomerRecord.last_name,
                        CustomerRecord.email,
                    )
                )
            )
        )
    if email:
        query = query.where(sa.func.lower(CustomerRecord.email) == email.lower())
    if created_from:
        query = query.where(CustomerRecord.created_at >= created_from)
    if created_to:
        query = query.where(CustomerRecord.created_at < created_to)
    if consent:
        query = query.where(CustomerRecord.consent[consent].as_boolean().is_(True))
    return [_profile_from_row(row) for row in session.connection().execute(query)]
