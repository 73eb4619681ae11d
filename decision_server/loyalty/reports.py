"""Reports on the loyalty programme over time: points earned, redeemed and expired per day or week.

Kept apart from loyalty/service.py (which moves points): these only read. Points are counted by
their business time (`occurred_at`: the purchase's time for earned points), so a programme started
on an existing base shows its history, not one spike on the day it was loaded.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from decision_server.db import as_date, utc_day
from decision_server.loyalty.records import LedgerEntryRecord
from decision_server.periods import period_starts

_l = LedgerEntryRecord.__table__
# The entry kinds each series sums, and the sign that makes it a positive number of points.
SERIES = {"earned": ("earn", 1), "redeemed": ("redeem", -1), "expired": ("expire", -1)}


def points_over_time(conn: Connection, *, since: dt.datetime, until: dt.datetime, interval: str = "day") -> dict[str, Any]:
    """Return points earned, redeemed and expired per day or week of [since, until), with the period's totals."""
    starts = period_starts(since, until, interval)
    index = {start: i for i, start in enumerate(starts)}
    kinds = {kind: name for name, (kind, _sign) in SERIES.items()}
    series = {name: [0] * len(starts) for name in SERIES}
    day = utc_day(conn, _l.c.occurred_at).label("day")
    grouped = (
        sa.select(day, _l.c.kind, sa.func.sum(_l.c.points))
        .where(_l.c.occurred_at >= since, _l.c.occurred_at < until, _l.c.kind.in_(kinds))
        .group_by(day, _l.c.kind)
    )
    for value, kind, points in conn.execute(grouped):
        on = as_date(value)
        start = on if interval == "day" else on - dt.timedelta(days=on.weekday())
        name = kinds[kind]
        series[name][index[start]] += SERIES[name][1] * int(points or 0)
    return {
        "since": since,
        "until": until,
        "interval": interval,
        "periods": [s.isoformat() for s in starts],
        **series,
        "totals": {name: sum(values) for name, values in series.items()},
    }
