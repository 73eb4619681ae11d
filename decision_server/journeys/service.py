"""Journeys: record journey stage changes, read a customer's journey, move it by hand.

The journey stage (rules/journey.yaml) changes in three ways, each one row of
`journey_transitions`, as lifecycle stages do in `stage_transitions`:
- event: a purchase or touchpoint re-evaluates that customer (analytics/lifecycle.py
  `refresh_customers` calls `record_move`);
- bulk: the bulk pass writes a chunk's changes (analytics/reevaluate.py calls `record_bulk`);
- manual: someone moves a customer with a reason (`move`); audited with their key's name. The move
  lasts until the next event or bulk pass re-evaluates the journey rules for that customer.

Every function takes a Connection and plain values (no Flask): the API and the console call the
same ones. Statistics over the whole base are in statistics.py.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from decision_server import fastsql
from decision_server.customers.records import CustomerRecord, CustomerStateRecord
from decision_server.customers.state import refresh_state
from decision_server.db import utcnow
from decision_server.errors import Conflict, DecisionServerError, NotFound, ValidationError
from decision_server.journeys.records import JourneyTransitionRecord
from decision_server.validation import check_external_id

SOURCES = ("event", "bulk", "manual")
RULESET = "journey"
OUTPUT = "journey_stage"
DEFAULT_RULE = "default"  # rule_id recorded when no journey rule fired (as Revision.outcome_columns does)
BLANK = " \t\r\n"  # what a reason may not consist of alone (schemas.MoveSchema says the same)
COLUMNS = ("customer_id", "from_stage", "to_stage", "at", "rule_id", "rule_revision", "source", "actor", "reason")
_tr = JourneyTransitionRecord.__table__
_st = CustomerStateRecord.__table__
_c = CustomerRecord.__table__


class JourneyRulesMissing(DecisionServerError):
    """The serving rules have no journey rule set, so there are no stages to name (an old rules folder)."""

    status = 409
    code = "rules_missing"


def stages(revision: Any) -> list[str]:
    """Return the journey stages the journey rule set can give, in its declared order."""
    if RULESET not in revision.rulesets:
        raise JourneyRulesMissing(
            f"the rules serving (revision {revision.id[:12]}) have no journey rule set; "
            "add the shipped files with `decision-server rules add-missing`",
            errors={"rules": ["missing: journey"]},
        )
    return list(revision.rulesets[RULESET].outputs[OUTPUT].values or [])


def customer_id_of(conn: Connection, external_id: str) -> int:
    """Return the internal id of the customer with `external_id`, or raise customer_not_found."""
    cid = None
    if not check_external_id(external_id):  # one that cannot exist is not looked up (PostgreSQL refuses a NUL)
        cid = conn.execute(sa.select(_c.c.id).where(_c.c.external_id == external_id)).scalar()
    if cid is None:
        raise NotFound(f"no customer with id {external_id!r}", code="customer_not_found")
    return cid


# --- recording ---------------------------------------------------------------------------------


def record_move(
    conn: Connection,
    *,
    customer_id: int,
    from_stage: str | None,
    to_stage: str | None,
    at: dt.datetime,
    rule_id: str | None,
    rule_revision: str | None,
    source: str,
) -> bool:
    """Record a journey transition when the stage changed (the event path); tell whether it did."""
    if to_stage is None or to_stage == from_stage:
        return False
    row = dict(zip(COLUMNS, (customer_id, from_stage, to_stage, at, rule_id, rule_revision, source, None, None), strict=True))
    conn.execute(sa.insert(_tr), [row])
    return True


def bulk_statement(engine: Engine) -> fastsql.Prepared:
    """Return the bulk pass's insert of journey transitions, compiled once for `engine`."""
    return fastsql.Prepared(engine, sa.insert(_tr).values(**{k: sa.bindparam(k) for k in COLUMNS}))


def record_bulk(
    statement: fastsql.Prepared,
    cursor: Any,
    *,
    customer_ids: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    rule_ids: np.ndarray | None,
    at: dt.datetime,
    rule_revision: str,
    source: str,
) -> int:
    """Record the journey transitions of a chunk's written customers whose stage changed; return how many.

    Arrays are aligned: the customers written, their journey stage as read and as evaluated, and
    the journey rule that decided each (None: the rule set gave no rule ids).
    """
    moved = np.flatnonzero((after != before) & np.array([a is not None for a in after], dtype=bool))
    if not len(moved):
        return 0
    statement.execute_columns(
        cursor,
        {
            "customer_id": [int(c) for c in customer_ids[moved]],
            "from_stage": before[moved].tolist(),
            "to_stage": after[moved].tolist(),
            "at": at,
            "rule_id": rule_ids[moved].tolist() if rule_ids is not None else DEFAULT_RULE,
            "rule_revision": rule_revision,
            "source": source,
            "actor": None,
            "reason": None,
        },
    )
    return len(moved)


# --- reading -----------------------------------------------------------------------------------


def _filtered(
    select: sa.Select,
    *,
    customer_id: int | None = None,
    from_stage: str | None = None,
    to_stage: str | None = None,
    source: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> sa.Select:
    if customer_id is not None:
        select = select.where(_tr.c.customer_id == customer_id)
    for value, column in ((from_stage, _tr.c.from_stage), (to_stage, _tr.c.to_stage), (source, _tr.c.source)):
        if value is not None:
            select = select.where(column == value)
    if since is not None:
        select = select.where(_tr.c.at >= since)
    if until is not None:
        select = select.where(_tr.c.at < until)
    return select


def check_period(since: dt.datetime | None, until: dt.datetime | None) -> None:
    """Refuse a period that ends before it starts (422 naming `since`)."""
    if since is not None and until is not None and since >= until:
        message = "must be before until"
        raise ValidationError(f"since {message}", errors={"since": [message]}, code="period_invalid")


def transitions(
    conn: Connection,
    *,
    limit: int,
    after: tuple[dt.datetime, int] | None = None,
    customer_id: int | None = None,
    from_stage: str | None = None,
    to_stage: str | None = None,
    source: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """List journey transitions newest first (by time, then id), `limit` + 1 rows after `after`.

    `after` is the (at, id) of the previous page's last row. Time order, not id order: the bulk
    pass stamps its moves with its as-of time, which may be earlier than moves already recorded.
    Each row has the customer's external id as `customer_id`; the extra row tells a caller that
    another page follows.
    """
    check_period(since, until)
    select = sa.select(*_tr.c, _c.c.external_id).join(_c, _c.c.id == _tr.c.customer_id)
    select = _filtered(
        select,
        customer_id=customer_id,
        from_stage=from_stage,
        to_stage=to_stage,
        source=source,
        since=since,
        until=until,
    )
    if after is not None:
        at, last = after
        select = select.where(sa.or_(_tr.c.at < at, sa.and_(_tr.c.at == at, _tr.c.id < last)))
    rows = conn.execute(select.order_by(_tr.c.at.desc(), _tr.c.id.desc()).limit(limit + 1)).all()
    return [{**r._mapping, "customer_id": r.external_id} for r in rows]


def journey(conn: Connection, external_id: str, *, limit: int, after: tuple[dt.datetime, int] | None = None) -> dict[str, Any]:
    """Return a customer's journey: stage now, since when (null: before any recorded move) and history.

    The history is a page of `limit` + 1 transitions newest first after `after` (the extra row:
    more follow).
    """
    cid = customer_id_of(conn, external_id)
    stage = conn.execute(sa.select(_st.c.journey_stage).where(_st.c.customer_id == cid)).scalar()
    since = None
    if stage is not None:
        since = conn.execute(
            sa.select(_tr.c.at).where(_tr.c.customer_id == cid).order_by(_tr.c.at.desc(), _tr.c.id.desc()).limit(1)
        ).scalar()
    history = transitions(conn, limit=limit, after=after, customer_id=cid)
    return {"customer_id": external_id, "stage": stage, "since": since, "history": history}


# --- moving by hand ----------------------------------------------------------------------------


def move(
    conn: Connection,
    external_id: str,
    stage: str,
    *,
    revision: Any,
    actor: str,
    reason: str,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Move a customer's journey stage by hand, with a reason; return the manual transition recorded.

    An unknown stage is a 422 (journey_stage_invalid, listing the stages); a move to the stage the
    customer is in is a 409 (journey_stage_unchanged): nothing would be recorded, and saying so
    keeps a client from believing it made a change.
    """
    allowed = stages(revision)
    if stage not in allowed:
        message = f"not a journey stage; the stages are {', '.join(allowed)}"
        raise ValidationError(message, errors={"stage": [message]}, code="journey_stage_invalid")
    if not reason.strip(BLANK):
        raise ValidationError("a reason is required", errors={"reason": ["must not be blank"]})
    now = now or utcnow()
    cid = customer_id_of(conn, external_id)
    found = conn.execute(sa.select(_st.c.journey_stage).where(_st.c.customer_id == cid).with_for_update()).first()
    if found is None:  # a customer with no events has no state row yet: make it, so the stage has a home
        refresh_state(conn, customer_ids=[cid])
        found = (None,)
    current = found[0]
    if current == stage:
        message = f"the customer is in journey stage {stage!r} already"
        raise Conflict(message, errors={"stage": [message]}, code="journey_stage_unchanged")
    conn.execute(sa.update(_st).where(_st.c.customer_id == cid).values(journey_stage=stage))  # updated_at: onupdate
    values = (cid, current, stage, now, None, revision.id, "manual", actor, reason)
    new_id = conn.execute(sa.insert(_tr).values(**dict(zip(COLUMNS, values, strict=True))).returning(_tr.c.id)).scalar_one()
    return {**dict(zip(COLUMNS, values, strict=True)), "id": new_id, "customer_id": external_id}
