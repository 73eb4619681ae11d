"""Lifecycle (CLM): each customer's stage from the lifecycle rule set and the churn model.

A stage changes in three ways, and each change is one row of `stage_transitions` (from, to,
time, the rule that decided it, the rule revision, source, actor, reason):
- event: a purchase or touchpoint arrives and that customer is re-evaluated in the same database
  transaction (`refresh_customers`), so a third purchase moves them from onboarding to growth at once;
- bulk: everyone is re-evaluated (`evaluate_all`), which is how time alone moves a silent customer;
- manual: someone sets a stage with a reason (`set_stage`); audited with their key's name.
The same customer refresh also places their RFM scores against the newest RFM run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from decision_server.analytics import rfm
from decision_server.analytics.records import StageTransitionRecord
from decision_server.customers.records import CustomerStateRecord
from decision_server.db import Database, utcnow
from decision_server.errors import ValidationError
from decision_server.features import bulk, online

SOURCES = ("event", "bulk", "manual")
DEFAULT_RULE = "default"  # rule_id recorded when no lifecycle rule fired and the default applied
_st = CustomerStateRecord.__table__
_tr = StageTransitionRecord.__table__
_READ_STAGES = online.READ_BY_ID.add_columns(_st.c.stage)


def stages(revision: Any) -> list[str]:
    """Return the stages the lifecycle rule set can give, in its declared order."""
    return list(revision.rulesets["lifecycle"].outputs["stage"].values or [])


def _facts(row: Any, churn_risk: float) -> dict[str, Any]:
    return {"stage": row["stage"], "transaction_count": row["transaction_count"] or 0,
            "first_purchase_at": row["first_purchase_at"], "last_purchase_at": row["last_purchase_at"],
            "churn_risk": churn_risk}


@dataclasses.dataclass(frozen=True)
class Transition:
    """A stage change just recorded."""

    customer_id: int
    from_stage: str | None
    to_stage: str
    rule_id: str | None


def refresh_customers(conn: Connection, customer_ids: Iterable[int], *, revision: Any, models: Any,
                      now: dt.datetime | None = None, source: str = "event") -> list[Transition]:
    """Re-evaluate some customers now: stage (recording a transition when it changes) and RFM place."""
    now = now or utcnow()
    run = rfm.latest_run(conn)
    changes = []
    for cid in sorted(set(customer_ids)):
        row = conn.execute(_READ_STAGES, {"id": cid}).first()
        if row is None:
            continue
        row = row._mapping
        features = online.from_row(row, now)
        churn = models.score(features.values).values["churn_risk"]
        result = revision.evaluate("lifecycle", _facts(row, churn), now=now.timestamp())
        stage = result.outcome["stage"]
        rule_id = result.fired_ids[0] if result.fired_ids else DEFAULT_RULE
        placed = rfm.score_customer(row["last_purchase_at"], row["transaction_count"] or 0,
                                    row["total_spend_cents"] or 0, run, revision)
        values: dict[str, Any] = {"rfm_r": None, "rfm_f": None, "rfm_m": None, "rfm_segment": None}
        if placed:
            values = {"rfm_r": placed["r"], "rfm_f": placed["f"], "rfm_m": placed["m"], "rfm_segment": placed["segment"],
                      "rfm_run_id": placed["run_id"]}
        if stage != row["stage"]:
            values.update(stage=stage, stage_since=now)
            _record(conn, [{"customer_id": cid, "from_stage": row["stage"], "to_stage": stage, "at": now,
                            "rule_id": rule_id, "rule_revision": revision.id, "source": source,
                            "actor": None, "reason": None}])
            changes.append(Transition(cid, row["stage"], stage, rule_id))
        conn.execute(sa.update(_st).where(_st.c.customer_id == cid).values(**values))
    return changes


def _record(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(sa.insert(_tr), rows)


def set_stage(conn: Connection, customer_id: int, stage: str, *, revision: Any, actor: str, reason: str,
              now: dt.datetime | None = None) -> Transition | None:
    """Set a stage by hand, with a reason; recorded as a manual transition (None if unchanged)."""
    allowed = stages(revision)
    if stage not in allowed:
        message = f"not a lifecycle stage; the stages are {', '.join(allowed)}"
        raise ValidationError(message, errors={"stage": [message]}, code="stage_invalid")
    now = now or utcnow()
    current = conn.execute(sa.select(_st.c.stage).where(_st.c.customer_id == customer_id).with_for_update()).scalar()
    if current == stage:
        return None
    conn.execute(sa.update(_st).where(_st.c.customer_id == customer_id).values(stage=stage, stage_since=now))
    _record(conn, [{"customer_id": customer_id, "from_stage": current, "to_stage": stage, "at": now, "rule_id": None,
                    "rule_revision": revision.id, "source": "manual", "actor": actor, "reason": reason}])
    return Transition(customer_id, current, stage, None)


def evaluate_all(database: Database, revision: Any, models: Any, *, now: dt.datetime | None = None,
                 chunk: int = bulk.CHUNK, source: str = "bulk") -> dict[str, Any]:
    """Re-evaluate every customer's stage as of now, chunk by chunk (vectorized rules, batched models).

    Each chunk is one transaction: it writes only the customers whose stage changed, with their
    transitions. Returns counts: customers, changed, and changes by (from, to).
    """
    now = now or utcnow()
    ruleset = revision.rulesets["lifecycle"]
    outcomes = [rule.then["stage"] for rule in ruleset.rules] + [ruleset.default["stage"]]
    rule_ids = [rule.id for rule in ruleset.rules] + [DEFAULT_RULE]
    counts: dict[tuple[str | None, str], int] = {}
    customers = changed = 0
    with database.connection() as reader:
        chunks = list(bulk.customer_ids(reader, now, chunk=chunk))
    for ids in chunks:
        with database.connection(write=True) as conn:
            features = bulk.features(conn, ids, now)
            churn = models.score_batch(features.values)["churn_risk"]
            current = dict(conn.execute(sa.select(_st.c.customer_id, _st.c.stage).where(_st.c.customer_id.between(int(ids[0]), int(ids[-1])))).all())
            before = np.array([current.get(int(c)) for c in ids], dtype=object)
            agg = features.aggregates
            columns = {
                "stage": before, "transaction_count": agg["purchases"], "churn_risk": churn,
                "first_purchase_at": agg["first_purchase_at"], "last_purchase_at": agg["last_purchase_at"],
            }
            chosen = revision.evaluate_columns("lifecycle", columns, now=now.timestamp()).chosen
            after = np.array(outcomes, dtype=object)[chosen]
            rules = np.array(rule_ids, dtype=object)[chosen]
            moved = np.flatnonzero(after != before)
            rows = [{"customer_id": int(ids[i]), "from_stage": before[i], "to_stage": after[i], "at": now,
                     "rule_id": rules[i], "rule_revision": revision.id, "source": source, "actor": None, "reason": None}
                    for i in moved]
            _record(conn, rows)
            if rows:
                conn.execute(sa.update(_st).where(_st.c.customer_id == sa.bindparam("cid")).values(
                    stage=sa.bindparam("to"), stage_since=now), [{"cid": r["customer_id"], "to": r["to_stage"]} for r in rows])
            for r in rows:
                key = (r["from_stage"], r["to_stage"])
                counts[key] = counts.get(key, 0) + 1
            customers += len(ids)
            changed += len(rows)
    return {"customers": customers, "changed": changed,
            "transitions": [{"from": k[0], "to": k[1], "count": v} for k, v in sorted(counts.items(), key=lambda kv: -kv[1])]}
