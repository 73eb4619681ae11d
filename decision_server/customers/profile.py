"""The customer 360 view: everything we know and decide about one customer, consistent as of one moment.

The API's GET /customers/{id}/profile and the console's customer page call the same function.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from decision_server.clv import service as clv
from decision_server.customers.service import customer_id, get_customer
from decision_server.features import online
from decision_server.features.definition import as_dict
from decision_server.lifecycle import service as lifecycle
from decision_server.touchpoints.records import TouchpointRecord

_tp = TouchpointRecord.__table__


def profile(
    session: Session,
    *,
    external_id: str,
    revision: Any,
    models: Any,
    offers: Any,
    margin: Decimal,
    limit: int,
    now: dt.datetime,
) -> dict[str, Any]:
    """Return the 360 view: state, stage, value, RFM, scores with model versions, segments, CLV, recent events and transitions."""
    from decision_server.decisions import log as decision_log
    from decision_server.offers.catalog import value_offers
    from decision_server.touchpoints.service import list_touchpoints
    from decision_server.transactions.service import list_transactions

    customer = get_customer(session, external_id=external_id)
    cid = customer_id(session, external_id=external_id)
    conn = session.connection()
    features = online.read(conn, customer_id=cid, as_of=now)
    history = clv.historical(conn, as_of=now, margin=margin, customer_ids=[cid])
    touches_30d = conn.execute(
        sa.select(sa.func.count()).where(_tp.c.customer_id == cid, _tp.c.occurred_at > now - dt.timedelta(days=30))
    ).scalar()
    transactions = list_transactions(session, customer_external_id=external_id, limit=limit)[:limit]
    touchpoints = list_touchpoints(session, customer_external_id=external_id, limit=limit)[:limit]
    transitions = lifecycle.list_transitions(session, limit=limit, customer_id=cid)
    decisions = decision_log.listing(conn, limit=limit, customer_id=external_id)[:limit]
    loyalty = _loyalty(conn, cid, now, limit)
    state = customer["state"]
    scored = models.score(features.values)
    named = as_dict(features.values[0])
    facts = {
        "tier": loyalty["tier"] if loyalty else None,
        "value_segment": state["value_segment"],
        "churn_risk": scored.values["churn_risk"],
        "first_purchase_at": state["first_purchase_at"],
        "last_purchase_at": state["last_purchase_at"],
        "touchpoints_30d": touches_30d,
        "spend_12m": named["spend_12m"],
    }
    segments = revision.evaluate("segments", facts, now=now.timestamp())
    rfm_part = (
        None
        if state["rfm_r"] is None
        else {"r": state["rfm_r"], "f": state["rfm_f"], "m": state["rfm_m"], "segment": state["rfm_segment"]}
    )
    return {
        "customer": customer,
        "as_of": now,
        "stage": state["stage"],
        "stage_since": state["stage_since"],
        "journey_stage": state["journey_stage"],
        "recommended_actions": lifecycle.actions(revision, state["stage"]),
        "value": {"score": state["value_score"], "segment": state["value_segment"]},
        "rfm": rfm_part,
        "tier": loyalty["tier"] if loyalty else None,
        "loyalty": loyalty,
        "scores": scored.values,
        "models": scored.models,
        "segments": [
            {"segment": o["segment"], "rule": rule} for o, rule in zip(segments.outcome, segments.fired_ids, strict=True)
        ],
        "clv": {
            "historical": clv.money(history[0].__dict__) if history else None,
            "predicted": clv.predicted(scored),
        },
        "recent_transactions": transactions,
        "recent_touchpoints": touchpoints,
        "transitions": transitions,
        "recent_decisions": decisions,
        "rule_revision": revision.id,
        "value_offers": value_offers(offers, state["value_segment"]),
    }


def _loyalty(conn: Connection, customer_id: int, now: dt.datetime, limit: int) -> dict[str, Any] | None:
    """The loyalty part of the 360 view (None: not a member)."""
    from decision_server.loyalty import ledger, rewards
    from decision_server.loyalty.service import member_summary

    member = member_summary(conn, customer_id)
    if member is None:
        return None
    points = ledger.figures(conn, customer_id, member["balance"], now=now)
    entries = [
        {k: e[k] for k in ("id", "kind", "points", "balance_after", "occurred_at", "expires_at", "reason")}
        for e in ledger.entries(conn, customer_id, limit=limit)[:limit]
    ]
    redeemed = [
        {k: r[k] for k in ("id", "reward_code", "points", "status", "created_at")}
        for r in rewards.redemptions(conn, limit=limit, customer_id=customer_id)[:limit]
    ]
    iso = lambda row: {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in row.items()}
    return {
        "tier": member["tier"],
        "tier_since": member["tier_since"].isoformat(),
        "points": iso(points),
        "recent_ledger": [iso(e) for e in entries],
        "recent_redemptions": [iso(r) for r in redeemed],
    }
