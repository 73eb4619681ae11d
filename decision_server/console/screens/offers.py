"""Offers and decisions: per offer what was made and accepted, acceptance by channel per day, removals by rule, volume and latency."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import current_app, request

from decision_server import periods
from decision_server.auth.roles import Permission
from decision_server.console.args import parse
from decision_server.console.pages import page
from decision_server.console.render import query_url, render
from decision_server.decisions import statistics
from decision_server.decisions.schemas import RemovalQuery

# The offers bar chart shows the most made; the table below it lists them all.
TOP_OFFERS = 12
TOP_RULES = 12
_QUERY = RemovalQuery()


def removal_chart(rules: list[dict[str, Any]]) -> dict[str, Any]:
    """Reshape the removals answer for a stacked bar: a bar per rule (most removals first), a colour per rule set."""
    names = list(dict.fromkeys(r["rule"] for r in rules))
    rulesets = list(dict.fromkeys(r["ruleset"] for r in rules))
    counts = {(r["ruleset"], r["rule"]): r["removals"] for r in rules}
    series = [{"name": rs, "values": [counts.get((rs, name), 0) for name in names]} for rs in rulesets]
    return {"kind": "bar", "horizontal": True, "stacked": True, "categories": names, "series": series}


@page("/offers", title="Offers and decisions", group="Programme", permission=Permission.ANALYTICS_READ, position=20)
def offers():
    """What the decisions offered and how customers answered, and why offers were left out."""
    query = parse(_QUERY, request.args)
    since, until = periods.default_period(query.get("since"), query.get("until"), days=statistics.DEFAULT_DAYS)
    with current_app.extensions["database"].connection() as conn:
        totals = statistics.by_channel(conn, since=since, until=until)
        table = statistics.offers(conn, since=since, until=until)
        daily = statistics.daily(conn, since=since, until=until)
        removed = statistics.removals(conn, since=since, until=until, sample=query["sample"])
    return render(
        "console/offers.html",
        title="Offers and decisions",
        since=since,
        until=until,
        last_day=(until - dt.timedelta(microseconds=1)).date(),
        totals=totals,
        offers=table,
        top=table[:TOP_OFFERS],
        daily=daily,
        removed=removed,
        # The charts' series, straight from the service's answer (the API's numbers, reshaped for charts.js).
        volume_series=[{"name": c["channel"], "values": c["decisions"]} for c in daily["channels"]],
        acceptance_series=[{"name": c["channel"], "values": c["acceptance_rate"]} for c in daily["channels"]],
        removal_chart=removal_chart(removed["rules"][:TOP_RULES]),
        presets=[
            ("Last 14 days", query_url(since=None, until=None)),
            ("Last 7 days", query_url(since=(until - dt.timedelta(days=7)).date().isoformat())),
        ],
    )
