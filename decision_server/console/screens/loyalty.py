"""Loyalty: members and liability by tier, points earned / redeemed / expired over time, top rewards, tier changes.

Base-wide programme figures, so the screen needs ANALYTICS_READ (analysts, editors, admins), not
LOYALTY_READ: a channel key reads one member's balance to serve them, it has no business reading
the whole programme's liability (the new /loyalty/statistics/points endpoint is ANALYTICS_READ too).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import current_app, request

from decision_server import periods
from decision_server.auth.roles import Permission
from decision_server.console.args import parse
from decision_server.console.pages import page
from decision_server.console.render import query_url, render
from decision_server.loyalty import reports, service
from decision_server.loyalty.schemas import PointsOverTimeQuery

DEFAULT_DAYS = 30
_QUERY = PointsOverTimeQuery()


def tier_moves(changes: list[dict[str, Any]], tiers: list[str]) -> dict[str, Any]:
    """Sum GET /loyalty/statistics' tier changes by from → to (over sources): enrolments apart, moves as a heatmap."""
    joined = sum(c["count"] for c in changes if c["from"] is None)
    moves: dict[tuple[str, str], int] = {}
    for c in changes:
        if c["from"] is not None:
            moves[(c["from"], c["to"])] = moves.get((c["from"], c["to"]), 0) + c["count"]
    names = tiers + sorted({t for pair in moves for t in pair} - set(tiers))  # a tier since removed still shows
    cells = [[names.index(to), names.index(frm), n] for (frm, to), n in sorted(moves.items())]
    ups = sum(n for (frm, to), n in moves.items() if names.index(to) > names.index(frm))
    return {"joined": joined, "tiers": names, "cells": cells, "moves": moves, "up": ups, "down": sum(moves.values()) - ups}


@page("/loyalty", title="Loyalty", group="Programme", permission=Permission.ANALYTICS_READ, position=10)
def loyalty():
    """The loyalty programme: who is in which tier, what the points cost, what they buy, who moved."""
    query = parse(_QUERY, request.args)
    since, until = periods.default_period(query.get("since"), query.get("until"), days=DEFAULT_DAYS)
    with current_app.extensions["database"].connection() as conn:
        program = service.statistics(conn, since=since, until=until)
        points = reports.points_over_time(conn, since=since, until=until, interval=query["interval"])
    tiers = [t["tier"] for t in sorted(program["by_tier"], key=lambda t: t["rank"])]
    return render(
        "console/loyalty.html",
        title="Loyalty",
        since=since,
        until=until,
        last_day=(until - dt.timedelta(microseconds=1)).date(),
        interval=query["interval"],
        program=program,
        points=points,
        moves=tier_moves(program["tier_changes"], tiers),
        presets=[
            ("Last 30 days", query_url(since=None, until=None, interval=None)),
            ("Last 90 days by week", query_url(since=(until - dt.timedelta(days=90)).date().isoformat(), interval="week")),
        ],
    )
