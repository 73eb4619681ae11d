"""The decision log: responses to decisions (idempotent, late ones welcome) and reading decisions back."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from decision_server.db import to_utc, upsert, utcnow
from decision_server.decisions.learning import Learning
from decision_server.decisions.records import (
    DecisionActionRecord,
    DecisionRecord,
    DecisionResponseRecord,
    OfferDayRecord,
)
from decision_server.errors import Conflict, NotFound, ValidationError

RESPONSES = ("accepted", "declined", "ignored", "clicked")
_d, _a, _r = DecisionRecord.__table__, DecisionActionRecord.__table__, DecisionResponseRecord.__table__
_days = OfferDayRecord.__table__
# A response stamped slightly before its decision is a channel clock running behind, not an error.
CLOCK_SKEW = dt.timedelta(minutes=5)
# How far decided_at may be from the milliseconds an id starts with (float rounding of the stamp).
_ID_SLACK = dt.timedelta(seconds=1)
_ID = re.compile(r"[0-9a-f]{32}")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def decided_window(decision_id: str) -> tuple[dt.datetime, dt.datetime] | None:
    """Return the span decided_at of the decision with this id lies in (its id starts with it), or None for no id of ours."""
    if not _ID.fullmatch(decision_id):
        return None
    try:
        at = _EPOCH + dt.timedelta(milliseconds=int(decision_id[:12], 16))
        return at - _ID_SLACK, at + _ID_SLACK
    except OverflowError:  # past the year 9999: no decision of ours
        return None


def _decision(conn: Connection, decision_id: str, *, lock: bool = False):
    window, row = decided_window(decision_id), None
    if window is not None:
        # decided_at bounded by the id: PostgreSQL reads one day's partition, not every day's.
        select = sa.select(_d.c.id, _d.c.external_id, _d.c.decided_at).where(
            _d.c.id == decision_id, _d.c.decided_at.between(*window)
        )
        if lock:  # a response holds its decision, so retention cannot remove it under the response (no foreign key does)
            select = select.with_for_update(key_share=True)
        row = conn.execute(select).first()
    if row is None:
        message = f"no decision with id {decision_id!r}"
        raise NotFound(message, code="decision_not_found", errors={"decision_id": [message]})
    return row


def respond(
    conn: Connection,
    learning: Learning,
    decision_id: str,
    *,
    response: str,
    offer_id: int | None = None,
    occurred_at: dt.datetime | None = None,
    attributes: Mapping[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> tuple[dict[str, Any], bool, tuple | None]:
    """Record what the customer did with one action; return (the response, whether it is new, learning increment).

    The same response to the same action again is the same record (a retry never counts twice).
    Pass the increment to `Learning.applied` once the transaction has committed.
    """
    now = now or utcnow()
    decision = _decision(conn, decision_id, lock=True)
    actions = conn.execute(
        sa.select(_a.c.rank, _a.c.offer_id, _a.c.learning_key)
        .where(_a.c.decision_id == decision_id, _a.c.decided_at == decision.decided_at)
        .order_by(_a.c.rank)
    ).all()
    if not actions:
        message = "the decision made no action, so there is nothing to respond to"
        raise Conflict(message, code="decision_has_no_actions", errors={"decision_id": [message]})
    if offer_id is None:
        if len(actions) > 1:
            message = f"the decision made {len(actions)} actions; say which offer the response is about"
            raise ValidationError(message, errors={"offer_id": [message]})
        action = actions[0]
    else:
        action = next((a for a in actions if a.offer_id == offer_id), None)
        if action is None:
            message = f"offer {offer_id} was not among the decision's actions ({', '.join(str(a.offer_id) for a in actions)})"
            raise ValidationError(message, errors={"offer_id": [message]})
    occurred_at = occurred_at or now
    if occurred_at < decision.decided_at - CLOCK_SKEW:
        message = f"is before the decision was made ({decision.decided_at.isoformat()})"
        raise ValidationError(f"occurred_at {message}", errors={"occurred_at": [message]})
    row = {
        "decision_id": decision_id,
        "rank": action.rank,
        "response": response,
        "decided_at": decision.decided_at,
        "external_id": decision.external_id,
        "offer_id": action.offer_id,
        "responded_at": occurred_at,
        "recorded_at": now,
        "attributes": dict(attributes or {}),
    }
    inserted = conn.execute(
        upsert(conn, _r)
        .values(**row)
        .on_conflict_do_nothing(index_elements=[_r.c.decision_id, _r.c.rank, _r.c.response, _r.c.decided_at])
        .returning(_r.c.decision_id)
    ).first()
    counted = None
    if inserted is not None and response == "accepted":
        learning.record_accepted(conn, action.offer_id, action.learning_key)
        counted = (action.offer_id, action.learning_key, 0, 0.0, 1)
    stored = conn.execute(
        sa.select(_r).where(
            _r.c.decision_id == decision_id,
            _r.c.rank == action.rank,
            _r.c.response == response,
            _r.c.decided_at == decision.decided_at,
        )
    ).one()
    return _response(stored._mapping), inserted is not None, counted


def _response(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("decision_id", "offer_id", "response", "responded_at", "recorded_at", "attributes")} | {
        "rank": row["rank"]
    }


def get(conn: Connection, decision_id: str) -> dict[str, Any]:
    """Return one decision with its actions and responses."""
    at = _decision(conn, decision_id).decided_at
    row = conn.execute(sa.select(_d).where(_d.c.id == decision_id, _d.c.decided_at == at)).one()._mapping
    actions = conn.execute(sa.select(_a).where(_a.c.decision_id == decision_id, _a.c.decided_at == at).order_by(_a.c.rank)).all()
    responses = conn.execute(
        sa.select(_r)
        .where(_r.c.decision_id == decision_id, _r.c.decided_at == at)
        .order_by(_r.c.recorded_at, _r.c.rank, _r.c.response)
    ).all()
    return {
        **_summary(row, [a._mapping for a in actions]),
        "context": row["context"],
        "models": row["models"],
        "candidates": row["candidates"],
        "responses": [_response(r._mapping) for r in responses],
    }


def listing(
    conn: Connection,
    *,
    limit: int,
    before: str | None = None,
    customer_id: str | None = None,
    channel: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Return up to limit + 1 decisions, newest first (ids sort by time), filtered."""
    columns = [
        _d.c.id,
        _d.c.external_id,
        _d.c.prospect,
        _d.c.channel,
        _d.c.decided_at,
        _d.c.profile,
        _d.c.revision,
        _d.c.latency_us,
    ]
    select = sa.select(*columns).order_by(_d.c.id.desc()).limit(limit + 1)
    if before is not None:
        select = select.where(_d.c.id < before)
        if window := decided_window(before):  # older than the cursor: PostgreSQL skips the newer days
            select = select.where(_d.c.decided_at <= window[1])
    if customer_id is not None:
        select = select.where(_d.c.external_id == customer_id)
    if channel is not None:
        select = select.where(_d.c.channel == channel)
    if since is not None:
        select = select.where(_d.c.decided_at >= since)
    if until is not None:
        select = select.where(_d.c.decided_at < until)
    rows = [r._mapping for r in conn.execute(select).all()]
    if not rows:
        return []
    actions: dict[str, list] = {}
    span = _a.c.decided_at.between(
        min(r["decided_at"] for r in rows), max(r["decided_at"] for r in rows)
    )  # the pages' partitions
    for a in conn.execute(sa.select(_a).where(_a.c.decision_id.in_([r["id"] for r in rows]), span).order_by(_a.c.rank)).all():
        actions.setdefault(a.decision_id, []).append(a._mapping)
    return [_summary(r, actions.get(r["id"], [])) for r in rows]


def _summary(row: Mapping[str, Any], actions: list) -> dict[str, Any]:
    return {
        "decision_id": row["id"],
        "customer_id": row["external_id"],
        "prospect": row["prospect"],
        "channel": row["channel"],
        "decided_at": row["decided_at"],
        "customer": row["profile"],
        "revision": row["revision"],
        "latency_us": row["latency_us"],
        "actions": [{"rank": a["rank"], "offer_id": a["offer_id"], "priority": a["priority"]} for a in actions],
    }


def offer_statistics(
    conn: Connection, *, since: dt.datetime | None = None, until: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """Return per offer: actions made, responses by kind, acceptance rate (optionally in [since, until)).

    The log's rows plus the days retention removed (decision_offer_days), so purging changes
    nothing; of a removed day, `since` and `until` count the whole day they fall on.
    """
    made = sa.select(_a.c.offer_id, sa.func.count(), *(sa.literal(0) for _ in RESPONSES)).group_by(_a.c.offer_id)
    answered = sa.select(_r.c.offer_id, sa.literal(0), *(sa.func.count().filter(_r.c.response == r) for r in RESPONSES)).group_by(
        _r.c.offer_id
    )
    removed = sa.select(_days.c.offer_id, *(sa.func.sum(_days.c[c]) for c in ("actions", *RESPONSES))).group_by(_days.c.offer_id)
    if since is not None:
        made = made.where(_a.c.decided_at >= since)
        answered = answered.where(_r.c.responded_at >= since)
        removed = removed.where(_days.c.day >= to_utc(since).date())
    if until is not None:
        made = made.where(_a.c.decided_at < until)
        answered = answered.where(_r.c.responded_at < until)
        removed = removed.where(_days.c.day <= to_utc(until - dt.timedelta(microseconds=1)).date())
    stats: dict[int, dict[str, Any]] = {}
    # One statement, so one snapshot: a purge committing in between cannot count a day twice or not at all.
    for offer_id, *counts in conn.execute(sa.union_all(made, answered, removed)).all():
        row = stats.setdefault(offer_id, {"offer_id": offer_id, "actions": 0, **{r: 0 for r in RESPONSES}})
        for name, n in zip(("actions", *RESPONSES), counts, strict=True):
            row[name] += int(n)
    for s in stats.values():
        s["acceptance_rate"] = round(s["accepted"] / s["actions"], 6) if s["actions"] else None
    return [stats[k] for k in sorted(stats)]


def responses_of(conn: Connection, decisions: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Return the responses to some decisions (summaries from `listing`) by decision id, oldest first."""
    if not decisions:
        return {}
    span = _r.c.decided_at.between(min(d["decided_at"] for d in decisions), max(d["decided_at"] for d in decisions))
    query = sa.select(_r).where(_r.c.decision_id.in_([d["decision_id"] for d in decisions]), span).order_by(_r.c.responded_at)
    found: dict[str, list[dict[str, Any]]] = {}
    for row in conn.execute(query):
        found.setdefault(row.decision_id, []).append(_response(row._mapping))
    return found
