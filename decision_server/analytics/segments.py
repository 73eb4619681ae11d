"""Segments the business defines over the API: a name and a condition in the rule language.

A condition reads the customer's features (features/definition.py), their state (stage,
value_segment, journey_stage, rfm_segment, value_score, rfm_r/f/m) and model scores (churn_risk,
propensity_to_buy, engagement_score, ltv), e.g. `stage == "growth" and churn_risk >= 0.6`.
It is parsed and type-checked by the same safe parser as the rule files (never run as code); a
bad one is refused with its column and reason. Memberships are recomputed for one customer on
each event and for everyone in a full recompute, which also records each segment's size.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from decision_server.analytics.records import (
    SegmentMemberRecord,
    SegmentRecord,
)
from decision_server.customers.records import CustomerStateRecord
from decision_server.db import upsert
from decision_server.errors import ValidationError
from decision_server.features.definition import FEATURE_NAMES, FEATURES
from decision_server.rules.engine import build_revision
from decision_server.rules.source import RulesInvalid
from decision_server.validation import ONE_LINE_RE, ONE_LINE_RULE

NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
SCORES = {
    "churn_risk": "Churn model score, 0–1",
    "propensity_to_buy": "Propensity to buy in 30 days, 0–1",
    "engagement_score": "Engagement score, 0–100",
    "ltv": "Predicted spend in the next 12 months",
}
STATE_NUMBERS = {
    "value_score": "Customer value score, 0–100",
    "rfm_r": "RFM recency score 1–5",
    "rfm_f": "RFM frequency score 1–5",
    "rfm_m": "RFM monetary score 1–5",
}
# State text inputs and the rule set output that lists their values.
STATE_TEXT = {
    "stage": ("lifecycle", "stage"),
    "value_segment": ("value", "value_segment"),
    "journey_stage": ("journey", "journey_stage"),
    "rfm_segment": ("rfm", "rfm_segment"),
}
_s = SegmentRecord.__table__
_m = SegmentMemberRecord.__table__
_st = CustomerStateRecord.__table__
_WHEN_LINE = "    when: "


def vocabulary(rules: Any) -> dict[str, dict[str, Any]]:
    """The inputs a segment condition may read, as rule-file input declarations."""
    inputs: dict[str, dict[str, Any]] = {f.name: {"type": "number", "description": f.description} for f in FEATURES}
    inputs.update({k: {"type": "number", "description": d} for k, d in {**SCORES, **STATE_NUMBERS}.items()})
    for name, (ruleset, output) in STATE_TEXT.items():
        values = list(rules.rulesets[ruleset].outputs[output].values or []) if ruleset in rules.rulesets else []
        inputs[name] = {"type": "string", "values": values, "description": f"From the {ruleset} rule set"}
    return inputs


def _document(name: str, description: str, condition: str, rules: Any) -> str:
    head = {
        "ruleset": "segment",
        "description": description or name,
        "hit": "first",
        "inputs": vocabulary(rules),
        "outputs": {"member": {"type": "string", "values": ["in"]}},
    }
    return (
        json.dumps(head)[:-1]
        + ', "rules": [{"id": '
        + json.dumps(name)
        + ', "description": "member",\n'
        + '"then": {"member": "in"},\n'
        + _WHEN_LINE.strip()
        + " '"
        + condition.replace("'", "''")
        + "'}]}\n"
    )


def compile_condition(name: str, description: str, condition: str, rules: Any) -> Any:
    """Check and compile a condition; raise ValidationError naming the column and reason."""
    if not ONE_LINE_RE.fullmatch(condition) or any("\ud800" <= ch <= "\udfff" for ch in condition):
        _refuse(f"must be {ONE_LINE_RULE}")
    text = _document(name, description, condition, rules)
    try:
        return build_revision({"segment.yaml": text}, backend="python", run_cases=False)
    except RulesInvalid as exc:
        errors = [p for p in exc.problems if p.severity == "error"] or exc.problems
        prefix = len(_WHEN_LINE.strip()) + 2  # 'when: "' before the condition's first character
        messages = [f"column {max(p.column - prefix, 1)}: {p.message}" if p.line == 3 else p.message for p in errors]
        _refuse("; ".join(messages[:5]))


def _refuse(message: str) -> None:
    raise ValidationError(
        f"the condition is not valid: {message}", errors={"condition": [message]}, code="segment_condition_invalid"
    )


class Compiled:
    """Compiled segment conditions, by (segment id, updated_at), so each is compiled once per change."""

    def __init__(self):
        self._cache: dict[tuple[int, Any, str], Any] = {}
        self._lock = threading.Lock()

    def get(self, row: Any, rules: Any) -> Any:
        key = (row.id, row.updated_at, rules.id)
        with self._lock:
            found = self._cache.get(key)
        if found is None:
            found = compile_condition(row.name, row.description, row.condition, rules)
            with self._lock:
                self._cache = {k: v for k, v in self._cache.items() if k[0] != row.id}
                self._cache[key] = found
        return found


COMPILED = Compiled()


def active_segments(conn: Connection) -> list[Any]:
    """Return the active segment definitions."""
    return conn.execute(sa.select(_s).where(_s.c.active.is_(True)).order_by(_s.c.id)).all()


def facts_of(features_row: np.ndarray, state: Any, scores: dict[str, Any]) -> dict[str, Any]:
    """The inputs of a condition for one customer."""
    facts: dict[str, Any] = dict(zip(FEATURE_NAMES, features_row.tolist(), strict=True))
    facts.update({k: scores[k] for k in SCORES})
    facts.update({k: state.get(k) for k in (*STATE_NUMBERS, *STATE_TEXT)})
    return facts


def refresh_customer(conn: Connection, customer_id: int, facts: dict[str, Any], rules: Any, now: dt.datetime) -> list[str]:
    """Recompute one customer's memberships of every active segment; return the names they are in."""
    inside, names = [], []
    for row in active_segments(conn):
        compiled = COMPILED.get(row, rules)
        if compiled.evaluate("segment", facts, backend="python").fired_ids:
            inside.append(row.id)
            names.append(row.name)
    current = set(conn.execute(sa.select(_m.c.segment_id).where(_m.c.customer_id == customer_id)).scalars())
    leave = current - set(inside)
    join = [sid for sid in inside if sid not in current]
    if leave:
        conn.execute(sa.delete(_m).where(_m.c.customer_id == customer_id, _m.c.segment_id.in_(leave)))
    if join:  # a bulk recompute may have added the same row meanwhile: keep the first
        conn.execute(
            upsert(conn, _m).on_conflict_do_nothing(),
            [{"segment_id": sid, "customer_id": customer_id, "since": now} for sid in join],
        )
    return names
