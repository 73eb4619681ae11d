"""Journey statistics over the whole base: distribution now, the funnel, time in stage, moves in a period.

Definitions (the console shows these numbers, so they are spelt out once, here):
- distribution: customers per journey stage now (the state rows), in the rule set's order.
- funnel: the journey stages in the rule set's order, less those off the funnel (OFF_FUNNEL:
  dormant is where anyone may drop out, not a step after loyalty). A customer has *reached* a step
  when they were ever at it or at a later step, by the recorded transitions or their stage now:
  a customer who bought without ever being named "consideration" has passed it. Each step's
  `conversion_to_next` is the share of those who reached it who reached the next step.
- time in stage: for every stay that ended in the period (a transition out of the stage whose
  customer had an earlier transition, into it), its length; the median per stage in days. Stays
  still going and stays begun before any recorded transition are not counted.
- transitions: the moves recorded in the period, in total, by source and by from → to.
"""

from __future__ import annotations

import datetime as dt
import statistics as stats
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from decision_server.customers.records import CustomerStateRecord
from decision_server.db import utcnow
from decision_server.journeys.records import JourneyTransitionRecord
from decision_server.journeys.service import SOURCES, check_period, stages

OFF_FUNNEL = frozenset({"dormant"})
DEFAULT_PERIOD = dt.timedelta(days=30)
_tr = JourneyTransitionRecord.__table__
_st = CustomerStateRecord.__table__


def funnel_stages(revision: Any) -> list[str]:
    """Return the funnel's steps: the journey stages in declared order, less those off the funnel."""
    return [s for s in stages(revision) if s not in OFF_FUNNEL]


def _reached(conn: Connection, funnel: list[str]) -> list[int]:
    """Return per funnel step how many customers reached it or a later step (history and stage now)."""
    if not funnel:
        return []
    rank = {stage: i for i, stage in enumerate(funnel)}
    seen = sa.union_all(
        sa.select(_tr.c.customer_id.label("cid"), sa.case(rank, value=_tr.c.to_stage).label("step")),
        sa.select(_st.c.customer_id.label("cid"), sa.case(rank, value=_st.c.journey_stage).label("step")),
    ).subquery()
    best = sa.select(seen.c.cid, sa.func.max(seen.c.step).label("best")).where(seen.c.step.is_not(None)).group_by(seen.c.cid)
    best = best.subquery()
    furthest = dict(conn.execute(sa.select(best.c.best, sa.func.count()).group_by(best.c.best)).all())
    return [sum(n for step, n in furthest.items() if step >= i) for i in range(len(funnel))]


def _stays(conn: Connection, since: dt.datetime, until: dt.datetime) -> dict[str, list[float]]:
    """Return the lengths in days of the stays that ended in the period, by stage."""
    p = _tr.alias("p")
    began = (
        sa.select(sa.func.max(p.c.at))
        .where(p.c.customer_id == _tr.c.customer_id, sa.or_(p.c.at < _tr.c.at, sa.and_(p.c.at == _tr.c.at, p.c.id < _tr.c.id)))
        .scalar_subquery()
    )
    rows = conn.execute(
        sa.select(_tr.c.from_stage, _tr.c.at, began.label("began")).where(
            _tr.c.at >= since, _tr.c.at < until, _tr.c.from_stage.is_not(None)
        )
    ).all()
    out: dict[str, list[float]] = {}
    for stage, ended, start in rows:
        if start is not None:
            out.setdefault(stage, []).append((ended - start).total_seconds() / 86_400)
    return out


def statistics(
    conn: Connection,
    *,
    revision: Any,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> dict[str, Any]:
    """Return the journey statistics (module docstring); the period defaults to the 30 days to now."""
    until = until or utcnow()
    since = since or until - DEFAULT_PERIOD
    check_period(since, until)
    order = stages(revision)
    counts = dict(conn.execute(sa.select(_st.c.journey_stage, sa.func.count()).group_by(_st.c.journey_stage)).all())
    staged = sum(n for s, n in counts.items() if s is not None)
    known = order + sorted(s for s in counts if s is not None and s not in order)  # stages a newer revision dropped
    funnel = funnel_stages(revision)
    reached = _reached(conn, funnel)
    stays = _stays(conn, since, until)
    period = (_tr.c.at >= since) & (_tr.c.at < until)
    moves = conn.execute(
        sa.select(_tr.c.from_stage, _tr.c.to_stage, _tr.c.source, sa.func.count())
        .where(period)
        .group_by(_tr.c.from_stage, _tr.c.to_stage, _tr.c.source)
    ).all()
    matrix: dict[tuple[str | None, str], int] = {}
    by_source = dict.fromkeys(SOURCES, 0)
    for before, after, source, n in moves:
        matrix[(before, after)] = matrix.get((before, after), 0) + n
        by_source[source] = by_source.get(source, 0) + n
    return {
        "since": since,
        "until": until,
        "distribution": [
            {"stage": s, "customers": counts.get(s, 0), "share": round(counts.get(s, 0) / staged, 4) if staged else 0.0}
            for s in known
        ],
        "not_evaluated": counts.get(None, 0),
        "funnel": [
            {
                "stage": s,
                "reached": reached[i],
                "conversion_to_next": round(reached[i + 1] / reached[i], 4) if i + 1 < len(funnel) and reached[i] else None,
            }
            for i, s in enumerate(funnel)
        ],
        "time_in_stage": [
            {
                "stage": s,
                "stays": len(stays.get(s, [])),
                "median_days": round(stats.median(stays[s]), 3) if stays.get(s) else None,
            }
            for s in known + sorted(set(stays) - set(known))
        ],
        "transitions": {
            "total": sum(matrix.values()),
            "by_source": by_source,
            "matrix": [
                {"from": a, "to": b, "count": n} for (a, b), n in sorted(matrix.items(), key=lambda kv: (-kv[1], str(kv[0])))
            ],
        },
    }
