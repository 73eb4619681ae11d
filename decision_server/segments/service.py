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
from sqlalchemy.orm import Session

from decision_server.customers.records import CustomerRecord, CustomerStateRecord
from decision_server.db import upsert
from decision_server.errors import Conflict, NotFound, ValidationError
from decision_server.features import bulk
from decision_server.features.definition import FEATURE_NAMES, FEATURES
from decision_server.rules.engine import build_revision
from decision_server.rules.source import RulesInvalid
from decision_server.segments.records import SegmentCountRecord, SegmentMemberRecord, SegmentRecord
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
_n = SegmentCountRecord.__table__
_st = CustomerStateRecord.__table__
_c = CustomerRecord.__table__
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


def _numbers(values: np.ndarray) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def condition_columns(feature_values: np.ndarray, scores: dict[str, Any], state: dict[str, np.ndarray]) -> dict[str, Any]:
    """The inputs of a condition for many customers: feature matrix, batched scores and state columns, aligned."""
    columns: dict[str, Any] = {name: feature_values[:, i].astype(np.float64) for i, name in enumerate(FEATURE_NAMES)}
    columns.update({k: np.asarray(scores[k], dtype=np.float64) for k in SCORES})
    for k in STATE_NUMBERS:
        columns[k] = _numbers(state[k])
    for k in STATE_TEXT:
        columns[k] = state[k]
    return columns


def members_among(compiled: dict[int, Any], columns: dict[str, Any], ids: np.ndarray, now: dt.datetime) -> dict[int, set[int]]:
    """Return, for each compiled segment, the customers of `ids` whose columns meet its condition."""
    return {
        sid: {int(c) for c in ids[condition.evaluate_columns("segment", columns, now=now.timestamp()).fired[0]]}
        for sid, condition in compiled.items()
    }


# --- definitions and members, in the caller's transaction ---------------------------------------


def _find(session: Session, name: str) -> Any:
    row = session.execute(sa.select(_s).where(_s.c.name == name)).first()
    if row is None:
        message = f"no segment named {name!r}"
        raise NotFound(message, code="segment_not_found", errors={"name": [message]})
    return row


def _with_count(session: Session, row: Any) -> dict[str, Any]:
    members = session.execute(sa.select(sa.func.count()).where(_m.c.segment_id == row.id)).scalar()
    return {**row._mapping, "members": members}


def list_segments(session: Session, *, rules: Any) -> dict[str, Any]:
    """Return the segments with their member counts, and the inputs a condition may read."""
    counts = dict(session.execute(sa.select(_m.c.segment_id, sa.func.count()).group_by(_m.c.segment_id)).all())
    rows = session.execute(sa.select(_s).order_by(_s.c.name)).all()
    return {"items": [{**r._mapping, "members": counts.get(r.id, 0)} for r in rows], "inputs": vocabulary(rules)}


def get_segment(session: Session, *, name: str) -> dict[str, Any]:
    """Return a segment and its member count, or raise segment_not_found."""
    return _with_count(session, _find(session, name))


def define_segment(
    session: Session,
    *,
    name: str,
    description: str,
    condition: str,
    actor: str,
    rules: Any,
    models: Any,
    now: dt.datetime,
) -> dict[str, Any]:
    """Define a segment and compute every customer's membership, all in the caller's transaction."""
    compile_condition(name, description, condition, rules)
    if session.execute(sa.select(_s.c.id).where(_s.c.name == name)).first():
        message = f"a segment named {name!r} exists"
        raise Conflict(message, code="segment_exists", errors={"name": [message]})
    session.execute(
        sa.insert(_s).values(
            name=name, description=description, condition=condition, active=True, created_by=actor, created_at=now, updated_at=now
        )
    )
    row = _find(session, name)
    recompute(session, [row], rules=rules, models=models, now=now)
    return _with_count(session, row)


def change_segment(
    session: Session, *, name: str, changes: dict[str, Any], rules: Any, models: Any, now: dt.datetime
) -> dict[str, Any]:
    """Change a segment's description, condition or active flag; recompute its members when that matters."""
    row = _find(session, name)
    if "condition" in changes:
        compile_condition(name, changes.get("description", row.description), changes["condition"], rules)
    session.execute(sa.update(_s).where(_s.c.id == row.id).values(**changes, updated_at=now))
    if changes.get("active") is False:
        session.execute(sa.delete(_m).where(_m.c.segment_id == row.id))
    row = _find(session, name)
    if ("condition" in changes or changes.get("active") is True) and row.active:
        recompute(session, [row], rules=rules, models=models, now=now)
    return _with_count(session, row)


def delete_segment(session: Session, *, name: str) -> None:
    """Delete a segment, its members and its size history."""
    row = _find(session, name)
    session.execute(sa.delete(_m).where(_m.c.segment_id == row.id))
    session.execute(sa.delete(_n).where(_n.c.segment_id == row.id))
    session.execute(sa.delete(_s).where(_s.c.id == row.id))


MEMBER_FILTERS = ("stage", "value_segment", "q")


def check_member_filters(rules: Any, *, stage: str | None = None, value_segment: str | None = None) -> None:
    """Refuse a stage or value segment the serving rules do not know (422 naming the field and listing the values)."""
    for field, value in (("stage", stage), ("value_segment", value_segment)):
        known = vocabulary(rules)[field]["values"]
        if value is not None and value not in known:
            message = f"must be one of {', '.join(known)}"
            raise ValidationError(f"{field} {message}", errors={field: [message]}, code="member_filter_invalid")


def _member_select(row: Any, columns: list[Any], stage: str | None, value_segment: str | None, q: str | None) -> Any:
    # An outer join: a customer not evaluated yet has no state row but is still a member.
    joined = _m.join(_c, _c.c.id == _m.c.customer_id).outerjoin(_st, _st.c.customer_id == _m.c.customer_id)
    select = sa.select(*columns).select_from(joined).where(_m.c.segment_id == row.id)
    if stage is not None:
        select = select.where(_st.c.stage == stage)
    if value_segment is not None:
        select = select.where(_st.c.value_segment == value_segment)
    if q:
        pattern = "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        select = select.where(
            sa.or_(
                *(sa.func.lower(col).like(pattern, escape="\\") for col in (_c.c.external_id, _c.c.first_name, _c.c.last_name))
            )
        )
    return select


def members(
    session: Session,
    *,
    name: str,
    limit: int,
    after_id: int | None = None,
    stage: str | None = None,
    value_segment: str | None = None,
    q: str | None = None,
) -> list[dict[str, Any]]:
    """Return up to `limit` members of a segment after `after_id`, in customer id order, with when they joined.

    Optional filters narrow them: lifecycle `stage`, `value_segment` (the state now) and `q`, part
    of the customer id or name (case-insensitive). Each row also carries the name, stage and value
    segment the console lists.
    """
    row = _find(session, name)
    columns = [
        _m.c.customer_id.label("cid"),
        _c.c.external_id,
        _c.c.first_name,
        _c.c.last_name,
        _m.c.since,
        _st.c.stage,
        _st.c.value_segment,
    ]
    select = _member_select(row, columns, stage, value_segment, q)
    if after_id is not None:
        select = select.where(_m.c.customer_id > after_id)
    rows = session.execute(select.order_by(_m.c.customer_id).limit(limit)).all()
    return [
        {
            "customer_id": r.external_id,
            "since": r.since,
            "cid": r.cid,
            "name": " ".join(p for p in (r.first_name, r.last_name) if p),
            "stage": r.stage,
            "value_segment": r.value_segment,
        }
        for r in rows
    ]


def count_members(
    session: Session, *, name: str, stage: str | None = None, value_segment: str | None = None, q: str | None = None
) -> int:
    """Count a segment's members that pass the filters of `members`."""
    row = _find(session, name)
    return session.execute(_member_select(row, [sa.func.count()], stage, value_segment, q)).scalar_one()


def sizes(session: Session, *, name: str, last: int = 1000) -> list[dict[str, Any]]:
    """Return a segment's size after each full recompute, oldest first (at most the `last` ones, 1,000 by default)."""
    row = _find(session, name)
    rows = session.execute(
        sa.select(_n.c.at, _n.c.members)
        .where(_n.c.segment_id == row.id)
        .order_by(_n.c.at.desc(), _n.c.id.desc())
        .limit(min(last, 1000))
    ).all()
    return [dict(r._mapping) for r in reversed(rows)]


def recompute(session: Session, rows: list[Any], *, rules: Any, models: Any, now: dt.datetime, chunk: int = bulk.CHUNK) -> None:
    """Recompute every customer's membership of the segments `rows` and record their sizes, in the caller's transaction.

    The same inputs and vectorized conditions as the bulk pass's segments step (features by
    set-based SQL, batched scores, state columns), chunk by chunk on the session's connection, so
    defining or changing a segment commits with its members or not at all.
    """
    conn = session.connection()
    compiled = {row.id: COMPILED.get(row, rules) for row in rows}
    names = (*STATE_NUMBERS, *STATE_TEXT)
    for ids in list(bulk.customer_ids(conn, now, chunk=chunk)):
        features = bulk.features(conn, ids, now)
        found = {
            r[0]: r[1:]
            for r in conn.execute(sa.select(_st.c.customer_id, *(_st.c[k] for k in names)).where(bulk.of(_st.c.customer_id, ids)))
        }
        empty = (None,) * len(names)
        state = {k: np.array([found.get(int(c), empty)[i] for c in ids], dtype=object) for i, k in enumerate(names)}
        columns = condition_columns(features.values, models.score_batch(features.values), state)
        for sid, inside in members_among(compiled, columns, ids, now).items():
            current = set(
                conn.execute(sa.select(_m.c.customer_id).where(_m.c.segment_id == sid, bulk.of(_m.c.customer_id, ids))).scalars()
            )
            leave, join = sorted(current - inside), sorted(inside - current)
            for start in range(0, len(leave), 900):
                conn.execute(sa.delete(_m).where(_m.c.segment_id == sid, _m.c.customer_id.in_(leave[start : start + 900])))
            if join:
                conn.execute(sa.insert(_m), [{"segment_id": sid, "customer_id": c, "since": now} for c in join])
    for row in rows:
        count = conn.execute(sa.select(sa.func.count()).where(_m.c.segment_id == row.id)).scalar()
        conn.execute(sa.insert(_n).values(segment_id=row.id, at=now, members=count))
