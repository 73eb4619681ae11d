"""Touchpoints of the whole base over time: counts per day or week, by channel and by channel and kind.

Definitions (the console's journeys screen charts these numbers, so they are spelt out here):
- periods: weeks start on Monday 00:00 UTC, days at 00:00 UTC; the first period is the one that
  holds `since`, the last the one that holds the instant before `until`. Only touchpoints in
  [since, until) are counted, so the first and last period may be partial.
- by_channel: per channel, its count in each period and its total, largest first.
- by_kind: the same per (channel, kind), the TOP_KINDS largest; the rest are summed in one row
  named "other" (kind ingestion is free text, so the list is bounded whatever arrives).
Counting happens in SQL (one GROUP BY over the period, bucketed by a CASE over the period
boundaries, which SQLite and PostgreSQL read alike); Python only arranges the grouped rows.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from decision_server.db import to_utc, utcnow
from decision_server.errors import ValidationError
from decision_server.touchpoints.records import TouchpointRecord

INTERVALS = ("day", "week")
MAX_PERIODS = 120
DEFAULT_PERIODS = {"day": 30, "week": 12}
TOP_KINDS = 12
_tp = TouchpointRecord.__table__


def _start_of(moment: dt.datetime, interval: str) -> dt.datetime:
    day = to_utc(moment).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - dt.timedelta(days=day.weekday()) if interval == "week" else day


def periods(since: dt.datetime, until: dt.datetime, interval: str) -> list[dt.datetime]:
    """Return the start of every period from the one holding `since` to the one holding the instant before `until`."""
    step = dt.timedelta(days=7 if interval == "week" else 1)
    starts, start = [], _start_of(since, interval)
    while start < until:
        starts.append(start)
        start += step
    return starts


def _check(since: dt.datetime, until: dt.datetime, interval: str) -> list[dt.datetime]:
    if interval not in INTERVALS:
        message = f"must be one of {', '.join(INTERVALS)}"
        raise ValidationError(f"interval {message}", errors={"interval": [message]}, code="interval_invalid")
    if since >= until:
        message = "must be before until"
        raise ValidationError(f"since {message}", errors={"since": [message]}, code="period_invalid")
    starts = periods(since, until, interval)
    if len(starts) > MAX_PERIODS:
        message = f"the period spans {len(starts)} {interval}s; at most {MAX_PERIODS}"
        raise ValidationError(f"since: {message}", errors={"since": [message]}, code="period_too_long")
    return starts


def _series(counts: dict[Any, dict[int, int]], size: int) -> list[tuple[Any, list[int], int]]:
    rows = [(key, [by_period.get(i, 0) for i in range(size)]) for key, by_period in counts.items()]
    return sorted(((key, values, sum(values)) for key, values in rows), key=lambda r: (-r[2], str(r[0])))


def statistics(
    conn: Connection,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    interval: str = "week",
) -> dict[str, Any]:
    """Return the touchpoints per period by channel and by channel and kind (module docstring).

    The default period is the last 12 weeks (30 days with interval=day) to now, from the start of
    the first one; a period of more than MAX_PERIODS intervals is refused.
    """
    until = to_utc(until) if until else utcnow()
    if since is None:
        count = DEFAULT_PERIODS.get(interval, 1)
        since = _start_of(until - dt.timedelta(days=(7 if interval == "week" else 1) * (count - 1)), interval)
        since = min(since, until - dt.timedelta(microseconds=1))
    starts = _check(to_utc(since), until, interval)
    # The period index of a touchpoint: the last boundary it is at or after.
    bucket = sa.case(*((_tp.c.occurred_at >= start, i) for i, start in reversed(list(enumerate(starts)))), else_=0)
    inside = (
        sa.select(bucket.label("period"), _tp.c.channel, _tp.c.kind)
        .where(_tp.c.occurred_at >= since, _tp.c.occurred_at < until)
        .subquery()
    )
    # Grouped outside: PostgreSQL cannot match a GROUP BY expression with bound values to the selected one.
    rows = conn.execute(
        sa.select(inside.c.period, inside.c.channel, inside.c.kind, sa.func.count()).group_by(
            inside.c.period, inside.c.channel, inside.c.kind
        )
    ).all()
    channels: dict[str, dict[int, int]] = {}
    kinds: dict[tuple[str, str], dict[int, int]] = {}
    for period, channel, kind, n in rows:
        per_channel = channels.setdefault(channel, {})
        per_channel[period] = per_channel.get(period, 0) + n
        kinds.setdefault((channel, kind), {})[period] = n
    ranked = _series(kinds, len(starts))
    by_kind = [{"channel": c, "kind": k, "counts": values, "total": total} for (c, k), values, total in ranked[:TOP_KINDS]]
    if len(ranked) > TOP_KINDS:
        rest = [sum(values[i] for _, values, _ in ranked[TOP_KINDS:]) for i in range(len(starts))]
        by_kind.append({"channel": None, "kind": "other", "counts": rest, "total": sum(rest)})
    return {
        "since": since,
        "until": until,
        "interval": interval,
        "periods": starts,
        "total": sum(n for *_, n in rows),
        "by_channel": [{"channel": c, "counts": values, "total": total} for c, values, total in _series(channels, len(starts))],
        "by_kind": by_kind,
    }
