"""Customers per lifecycle stage over time, reconstructed from today's counts and the stage transitions.

No snapshot of the stage distribution is stored: `stage_transitions` is the stage's history, so
the count of a stage at a past moment is today's count minus the moves into it since, plus the
moves out of it since. Counting backwards from today (not forwards from nothing) keeps the last
point equal to today's distribution even when the history starts after the first customers did.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from decision_server.customers.records import CustomerStateRecord
from decision_server.errors import ValidationError
from decision_server.lifecycle.records import StageTransitionRecord

INTERVALS = {"day": dt.timedelta(days=1), "week": dt.timedelta(weeks=1)}
MAX_PERIODS = 106  # two years of weeks: one query, bounded rows, a chart one can still read
_st = CustomerStateRecord.__table__
_tr = StageTransitionRecord.__table__


def periods(since: dt.datetime, until: dt.datetime, interval: str) -> list[tuple[dt.datetime, dt.datetime]]:
    """Return the calendar periods (days, or weeks from Monday, UTC) covering [since, until), clipped to it."""
    if since >= until:
        message = "must be before until"
        raise ValidationError(f"since {message}", errors={"since": [message]}, code="period_invalid")
    step = INTERVALS[interval]
    start = since.replace(hour=0, minute=0, second=0, microsecond=0)
    if interval == "week":
        start -= dt.timedelta(days=start.weekday())
    edges = []
    while start < until:
        edges.append((max(start, since), min(start + step, until)))
        start += step
        if len(edges) > MAX_PERIODS:
            message = f"at most {MAX_PERIODS} {interval}s; choose a later since or a longer interval"
            raise ValidationError(f"since {message}", errors={"since": [message]}, code="period_too_long")
    return edges


def stage_history(
    session: Session, *, stages: list[str], since: dt.datetime, until: dt.datetime, interval: str = "week"
) -> dict[str, Any]:
    """Return customers per stage at the end of each period of [since, until), and the moves in each period."""
    edges = periods(since, until, interval)
    ends = [end for _, end in edges]
    now_counts = dict(session.execute(sa.select(_st.c.stage, sa.func.count()).group_by(_st.c.stage)).all())
    # Bucket k < n: the transitions of period k; bucket n: those after until (they too separate today from the past).
    bucket = sa.case(*[(_tr.c.at < end, k) for k, end in enumerate(ends)], else_=len(ends))
    inner = sa.select(bucket.label("bucket"), _tr.c.from_stage, _tr.c.to_stage).where(_tr.c.at >= since).subquery()
    # A subquery so that GROUP BY names the bucket (PostgreSQL refuses a CASE re-rendered with new parameters).
    rows = session.execute(
        sa.select(inner.c.bucket, inner.c.from_stage, inner.c.to_stage, sa.func.count()).group_by(
            inner.c.bucket, inner.c.from_stage, inner.c.to_stage
        )
    ).all()
    seen = set(now_counts) | {r[1] for r in rows} | {r[2] for r in rows}
    names = list(stages) + sorted(s for s in seen - set(stages) if s is not None)  # stages a past revision gave
    net = [dict.fromkeys(names, 0) for _ in range(len(ends) + 1)]  # net[k][stage]: moves in minus moves out, bucket k
    moves = [0] * (len(ends) + 1)
    for k, from_stage, to_stage, count in rows:
        moves[k] += count
        if to_stage in net[k]:
            net[k][to_stage] += count
        if from_stage in net[k]:
            net[k][from_stage] -= count
    counts = {name: [0] * len(ends) for name in names}
    after = dict.fromkeys(names, 0)  # net moves at or after ends[i]
    for i in range(len(ends) - 1, -1, -1):
        for name in names:
            after[name] += net[i + 1][name]
            counts[name][i] = now_counts.get(name, 0) - after[name]
    return {
        "interval": interval,
        "since": since,
        "until": until,
        "periods": [{"start": start, "end": end, "moves": moves[i]} for i, (start, end) in enumerate(edges)],
        "stages": [{"stage": name, "customers": counts[name]} for name in names],
    }
