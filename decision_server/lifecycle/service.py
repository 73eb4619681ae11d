"""Lifecycle (CLM): each customer's stage from the lifecycle rule set and the churn model.

A stage changes in three ways, and each change is one row of `stage_transitions` (from, to,
time, the rule that decided it, the rule revision, source, actor, reason):
- event: a purchase or touchpoint arrives and that customer is re-evaluated in the same database
  transaction (`refresh_customers`), so a third purchase moves them from onboarding to growth at once;
- bulk: everyone is re-evaluated (`jobs/passes.py` `evaluate_stages`), which is how time alone moves a silent customer;
- manual: someone sets a stage with a reason (`set_stage`); audited with their key's name.
The same customer refresh also places their RFM scores against the newest RFM run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from decision_server.customers.records import CustomerRecord, CustomerStateRecord
from decision_server.customers.state import refresh_state
from decision_server.db import utcnow
from decision_server.errors import ValidationError
from decision_server.features import online
from decision_server.features.definition import as_dict
from decision_server.journeys import service as journeys
from decision_server.lifecycle.records import StageTransitionRecord
from decision_server.rfm import service as rfm
from decision_server.rulebook.requirements import missing, require
from decision_server.segments import service as segments
from decision_server.value import service as value

SOURCES = ("event", "bulk", "manual")
DEFAULT_RULE = "default"  # rule_id recorded when no lifecycle rule fired (as Revision.outcome_columns does)
_st = CustomerStateRecord.__table__
_tr = StageTransitionRecord.__table__
_c = CustomerRecord.__table__
_READ_STAGES = online.READ_BY_ID.add_columns(
    _st.c.stage,
    _st.c.value_score,
    _st.c.value_segment,
    _st.c.journey_stage,
    _st.c.rfm_r,
    _st.c.rfm_f,
    _st.c.rfm_m,
    _st.c.rfm_segment,
)


def actions(revision: Any, stage: str | None) -> list[str]:
    """Return the recommended actions for a stage (rules/stage_actions.yaml; none without it)."""
    if stage is None or missing(revision, "stage_actions"):
        return []
    return [o["action"] for o in revision.evaluate("stage_actions", {"stage": stage}, backend="python").outcome]


def journey_inputs(revision: Any) -> list[str]:
    """The features the journey rule set reads (its inputs are named after features)."""
    return list(revision.rulesets["journey"].inputs)


def stages(revision: Any) -> list[str]:
    """Return the stages the lifecycle rule set can give, in its declared order."""
    require(revision, "lifecycle")
    return list(revision.rulesets["lifecycle"].outputs["stage"].values or [])


def _facts(row: Any, churn_risk: float) -> dict[str, Any]:
    return {
        "stage": row["stage"],
        "transaction_count": row["transaction_count"] or 0,
        "first_purchase_at": row["first_purchase_at"],
        "last_purchase_at": row["last_purchase_at"],
        "churn_risk": churn_risk,
    }


@dataclasses.dataclass(frozen=True)
class Transition:
    """A stage change just recorded."""

    customer_id: int
    from_stage: str | None
    to_stage: str
    rule_id: str | None


def refresh_customers(
    conn: Connection,
    customer_ids: Iterable[int],
    *,
    revision: Any,
    models: Any,
    now: dt.datetime | None = None,
    source: str = "event",
) -> list[Transition]:
    """Re-evaluate some customers now: stage (recording a transition when it changes) and RFM place."""
    now = now or utcnow()
    run = rfm.latest_run(conn)
    has_stage = not missing(revision, "lifecycle")
    has_value = not missing(revision, "value", "value_weights")
    has_journey = not missing(revision, "journey")
    changes = []
    for cid in sorted(set(customer_ids)):
        row = conn.execute(_READ_STAGES, {"id": cid}).first()
        if row is None:
            continue
        row = row._mapping
        features = online.from_row(row, now)
        scores = models.score(features.values).values
        placed = rfm.score_customer(
            row["last_purchase_at"], row["transaction_count"] or 0, row["total_spend_cents"] or 0, run, revision
        )
        values: dict[str, Any] = {"rfm_r": None, "rfm_f": None, "rfm_m": None, "rfm_segment": None}
        if placed:
            values = {
                "rfm_r": placed["r"],
                "rfm_f": placed["f"],
                "rfm_m": placed["m"],
                "rfm_segment": placed["segment"],
                "rfm_run_id": placed["run_id"],
            }
        if has_journey:
            named = as_dict(features.values[0])
            journey = revision.evaluate("journey", {k: named[k] for k in journey_inputs(revision)}, backend="python")
            values["journey_stage"] = journey.outcome["journey_stage"]
            journeys.record_move(
                conn,
                customer_id=cid,
                from_stage=row["journey_stage"],
                to_stage=values["journey_stage"],
                at=now,
                rule_id=journey.fired_ids[0] if journey.fired_ids else journeys.DEFAULT_RULE,
                rule_revision=revision.id,
                source=source,
            )
        if has_value:
            values["value_score"], values["value_segment"] = value.for_customer(
                revision,
                transaction_count=row["transaction_count"] or 0,
                ltv=scores["ltv"],
                rfm=(placed["r"], placed["f"], placed["m"]) if placed else None,
                engagement=scores["engagement_score"],
            )
        if has_stage:
            result = revision.evaluate("lifecycle", _facts(row, scores["churn_risk"]), now=now.timestamp())
            stage = result.outcome["stage"]
            rule_id = result.fired_ids[0] if result.fired_ids else DEFAULT_RULE
            if stage != row["stage"]:
                values.update(stage=stage, stage_since=now)
                _record(
                    conn,
                    [
                        {
                            "customer_id": cid,
                            "from_stage": row["stage"],
                            "to_stage": stage,
                            "at": now,
                            "rule_id": rule_id,
                            "rule_revision": revision.id,
                            "source": source,
                            "actor": None,
                            "reason": None,
                        }
                    ],
                )
                changes.append(Transition(cid, row["stage"], stage, rule_id))
        conn.execute(sa.update(_st).where(_st.c.customer_id == cid).values(**values))
        state = {**row, **values}
        segments.refresh_customer(conn, cid, segments.facts_of(features.values[0], state, scores), revision, now)
    return changes


def _record(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(sa.insert(_tr), rows)


def set_stage(
    conn: Connection, customer_id: int, stage: str, *, revision: Any, actor: str, reason: str, now: dt.datetime | None = None
) -> Transition | None:
    """Set a stage by hand, with a reason; recorded as a manual transition (None if unchanged)."""
    allowed = stages(revision)
    if stage not in allowed:
        message = f"not a lifecycle stage; the stages are {', '.join(allowed)}"
        raise ValidationError(message, errors={"stage": [message]}, code="stage_invalid")
    now = now or utcnow()
    found = conn.execute(sa.select(_st.c.stage).where(_st.c.customer_id == customer_id).with_for_update()).first()
    if found is None:  # a customer with no events has no state row yet: make it, so the stage has a home
        refresh_state(conn, customer_ids=[customer_id])
        found = (None,)
    current = found[0]
    if current == stage:
        return None
    conn.execute(sa.update(_st).where(_st.c.customer_id == customer_id).values(stage=stage, stage_since=now))
    _record(
        conn,
        [
            {
                "customer_id": customer_id,
                "from_stage": current,
                "to_stage": stage,
                "at": now,
                "rule_id": None,
                "rule_revision": revision.id,
                "source": "manual",
                "actor": actor,
                "reason": reason,
            }
        ],
    )
    return Transition(customer_id, current, stage, None)


# --- reads and manual changes for the API and the console, in the caller's transaction ----------


def _filtered(
    select: sa.Select,
    *,
    customer_id: int | None = None,
    from_stage: str | None = None,
    to_stage: str | None = None,
    first: bool = False,
    source: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> sa.Select:
    if customer_id is not None:
        select = select.where(_tr.c.customer_id == customer_id)
    for wanted, column in ((from_stage, _tr.c.from_stage), (to_stage, _tr.c.to_stage), (source, _tr.c.source)):
        if wanted:
            select = select.where(column == wanted)
    if first:
        select = select.where(_tr.c.from_stage.is_(None))
    if since:
        select = select.where(_tr.c.at >= since)
    if until:
        select = select.where(_tr.c.at < until)
    return select


def list_transitions(session: Session, *, limit: int, before_id: int | None = None, **filters: Any) -> list[dict[str, Any]]:
    """Return up to `limit` stage transitions, newest first, filtered (customer_id: the customer's internal id).

    Filters: customer_id, from_stage, to_stage, first (only a customer's first stage: from_stage null),
    source, since (at or after), until (before).
    """
    select = _filtered(sa.select(*_tr.c, _c.c.external_id, _c.c.first_name, _c.c.last_name), **filters)
    select = select.join(_c, _c.c.id == _tr.c.customer_id)
    if before_id:
        select = select.where(_tr.c.id < before_id)
    rows = session.execute(select.order_by(_tr.c.id.desc()).limit(limit)).all()
    return [{**dict(r._mapping), "customer_id": r.external_id} for r in rows]


def count_transitions(session: Session, **filters: Any) -> int:
    """Count the stage transitions list_transitions would list with the same filters (a heatmap cell's number)."""
    return session.execute(_filtered(sa.select(sa.func.count()).select_from(_tr), **filters)).scalar_one()


def change_stage(session: Session, *, customer_id: int, stage: str, revision: Any, actor: str, reason: str) -> dict[str, Any]:
    """Set a customer's stage by hand; return {changed, transition} with the manual transition recorded."""
    change = set_stage(session.connection(), customer_id, stage, revision=revision, actor=actor, reason=reason)
    if change is None:
        return {"changed": False, "transition": None}
    return {"changed": True, "transition": list_transitions(session, limit=1, customer_id=customer_id)[0]}


def statistics(session: Session, *, revision: Any, since: dt.datetime, until: dt.datetime) -> dict[str, Any]:
    """Return customers per stage now (with each stage's actions) and the transition matrix over [since, until)."""
    counts = dict(session.execute(sa.select(_st.c.stage, sa.func.count()).group_by(_st.c.stage)).all())
    matrix = session.execute(
        sa.select(_tr.c.from_stage, _tr.c.to_stage, sa.func.count())
        .where(_tr.c.at >= since, _tr.c.at < until)
        .group_by(_tr.c.from_stage, _tr.c.to_stage)
    ).all()
    return {
        "stages": [{"stage": s, "customers": counts.get(s, 0), "actions": actions(revision, s)} for s in stages(revision)],
        "not_evaluated": counts.get(None, 0),
        "since": since,
        "until": until,
        "matrix": [{"from": a, "to": b, "count": n} for a, b, n in sorted(matrix, key=lambda r: -r[2])],
    }
