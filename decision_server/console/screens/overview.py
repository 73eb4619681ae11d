"""Overview: today's decisions by channel, the loyalty programme, the last bulk run, rules and models."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import current_app

from decision_server.auth.roles import Permission
from decision_server.console.pages import page
from decision_server.console.render import render
from decision_server.db import utcnow
from decision_server.decisions import statistics as decision_statistics
from decision_server.jobs.runs import list_runs
from decision_server.lifecycle import service as lifecycle
from decision_server.loyalty import service as loyalty
from decision_server.scoring.specs import MODELS
from decision_server.value import service as value


def model_status() -> list[dict[str, Any]]:
    """Each model with the version serving it, or the fallback rule and why (the console shows fallbacks in red)."""
    statuses = current_app.extensions["models"].current.statuses
    rows = []
    for spec in MODELS:
        status = statuses[spec.name]
        rows.append(
            {
                "name": spec.name,
                "score": spec.score,
                "version": status.version,
                "fallback": status.fallback,
                "reason": status.reason,
                "fallback_rule": spec.fallback_rule,
            }
        )
    return rows


@page("/overview", title="Overview", group="Dashboards", permission=Permission.ANALYTICS_READ, position=0)
def overview():
    """The programme at a glance."""
    now = utcnow()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with current_app.extensions["database"].connection() as conn:
        decisions = decision_statistics.by_channel(conn, since=today, until=now)
        program = loyalty.statistics(conn, since=now - dt.timedelta(days=30))
        runs = list_runs(conn, limit=1)
    with current_app.extensions["database"].session() as session:
        stages = lifecycle.statistics(session, revision=current_app.extensions["rulebook"].current, since=today, until=now)
        values = value.statistics(session)
    rules = current_app.extensions["rulebook"].status()
    return render(
        "console/overview.html",
        title="Overview",
        decisions=decisions,
        program=program,
        last_run=runs[0] if runs else None,
        stages=stages,
        values=values,
        value_items=[{"name": v["segment"], "value": v["customers"]} for v in values["segments"]],
        rules=rules,
        models=model_status(),
    )
