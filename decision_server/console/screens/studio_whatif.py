"""What-if: run the signed-in user's draft over the whole base (a dry run), follow it live, read its
effect (stage, value segment and journey moves, segment sizes, tiers, offers per channel) and put two
runs side by side.

The runs are those of POST /api/v1/jobs/what-if (jobs/whatif.py starts both); the figures are
studio/whatif.summary's, so this page, the API's result and the publish page agree.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import current_app, g, redirect, request, url_for
from marshmallow import fields

from decision_server.auth.roles import Permission
from decision_server.console.pages import page, view
from decision_server.console.query import parse_query
from decision_server.console.render import render
from decision_server.errors import ValidationError
from decision_server.jobs import reevaluation, whatif
from decision_server.rules.source import RulesInvalid, revision_id
from decision_server.studio import drafts
from decision_server.studio import whatif as service

RECENT = 20
INTENTS = ("", "browse", "service", "retention", "purchase")
STEP_LABELS = {
    "rfm": "RFM scores (recomputed as of now)",
    "stages": "Stage, value segment and journey",
    "segments": "Segment memberships",
    "tiers": "Loyalty tiers",
    "offers": "Offers per channel",
}
DEFAULT_STEPS = ("stages", "segments", "tiers", "offers")  # RFM as stored: its quintiles move only with purchases
RULES_URL = "/console/rules"  # the rule set browser (the studio's editor pages)


class CompareQuery(ma.Schema):
    a = fields.Integer(validate=ma.validate.Range(min=1))
    b = fields.Integer(validate=ma.validate.Range(min=1))


def _database():
    return current_app.extensions["database"]


def _rulebook():
    return current_app.extensions["rulebook"]


def _owner() -> str:
    return f"key:{g.console_user.name}"


def _workspace() -> drafts.Workspace:
    with _database().session() as session:
        return drafts.workspace(session, _rulebook().current, _owner())


def _order() -> dict[str, list[str]]:
    return service.orders(_rulebook().current)


@page("/rules/what-if", title="What-if", group="Rules", permission=Permission.RULES_READ, position=40)
def whatif_runs():
    """The recent what-ifs and a form to try the user's draft on every customer."""
    return _runs_page()


@view("/rules/what-if", permission=Permission.RULES_READ, methods=("POST",))
def whatif_start():
    """Start a what-if of the user's draft; go to its page, or show why it cannot start (409, 422)."""
    space = _workspace()
    steps = [s for s in request.form.getlist("steps") if s]
    channels = [c for c in request.form.getlist("channels") if c]
    intent = request.form.get("intent") or None
    chosen = {"steps": steps, "channels": channels, "intent": intent or ""}
    try:
        if not space.changes:
            raise ValidationError("you have no draft to try: change a rule file first", errors={"draft": ["no changes"]})
        if not steps:
            raise ValidationError("choose at least one thing to re-evaluate", errors={"steps": ["choose at least one"]})
        if "offers" in steps and not channels:
            raise ValidationError("choose the channels to try the offers on", errors={"channels": ["choose at least one"]})
        if intent is not None and intent not in INTENTS:
            raise ValidationError(f"unknown intent {intent!r}", errors={"intent": [f"one of: {', '.join(INTENTS[1:])}"]})
        row = whatif.start_what_if(
            _database(),
            _rulebook(),
            current_app.extensions["models"].current,
            current_app.extensions["config"],
            files=space.files,
            steps=steps,
            channels=channels or None,
            intent=intent,
            source="console",
            started_by=_owner(),
        )
    except RulesInvalid as exc:
        return _runs_page(space, chosen=chosen, problems=[p for p in exc.problems if p.severity == "error"]), 422
    except reevaluation.JobRunning as exc:
        busy = (exc.errors or {}).get("run") or [None]
        return _runs_page(space, chosen=chosen, busy={"message": exc.message, "run_id": busy[0]}), 409
    except ValidationError as exc:
        return _runs_page(space, chosen=chosen, refused=exc), 422
    return redirect(url_for("console.whatif_run", run_id=row["id"]), code=303)


def _runs_page(space: drafts.Workspace | None = None, **context: Any) -> str:
    space = space or _workspace()
    config = current_app.extensions["config"]
    draft = revision_id(space.files) if space.changes else None
    runs = service.recent(_database(), limit=RECENT)
    return render(
        "console/studio/whatif.html",
        title="What-if",
        space=space,
        draft=draft,
        latest=service.summary(service.latest_for(_database(), draft)) if draft else None,
        runs=[service.summary(r) for r in runs],
        running=next((r for r in runs if r["status"] == "running"), None) or service.running(_database()),
        steps=reevaluation.WHAT_IF_STEPS,
        step_labels=STEP_LABELS,
        channels=list(config.channels),
        intents=INTENTS,
        chosen=context.pop("chosen", None) or {"steps": list(DEFAULT_STEPS), "channels": list(config.channels), "intent": ""},
        rules_url=RULES_URL,
        **context,
    )


@view("/rules/what-if/<int:run_id>", permission=Permission.RULES_READ)
def whatif_run(run_id: int):
    """One what-if: its progress while it runs (live), then what the draft would change."""
    return render("console/studio/whatif_run.html", title=f"What-if {run_id}", **_run_context(run_id))


@view("/rules/what-if/<int:run_id>/live", permission=Permission.RULES_READ)
def whatif_live(run_id: int):
    """The run's live part (htmx polls it every second): the progress while it runs, the result once it ended."""
    return render("console/studio/whatif_live.html", **_run_context(run_id))


def _run_context(run_id: int) -> dict[str, Any]:
    run = service.get(_database(), run_id)
    summed = service.summary(run, order=_order())
    others = [r for r in service.recent(_database(), limit=RECENT) if r["id"] != run_id and r["status"] == "succeeded"]
    return {
        "run": run,
        "s": summed,
        "charts": charts(summed, _order()) if run["status"] == "succeeded" else {},
        "others": others,
        "active_page": "console.whatif_runs",
    }


@view("/rules/what-if/compare", permission=Permission.RULES_READ)
def whatif_compare():
    """Two what-ifs side by side (?a=ID&b=ID); without both, a form to choose them."""
    query = parse_query(CompareQuery, request.args)
    runs = [r for r in service.recent(_database(), limit=RECENT) if r["status"] == "succeeded"]
    side = None
    if query.get("a") and query.get("b"):
        side = service.compare(service.get(_database(), query["a"]), service.get(_database(), query["b"]), order=_order())
        for key in ("a", "b"):
            if side[key]["status"] != "succeeded":
                raise ValidationError(
                    f"what-if {side[key]['run_id']} has not succeeded ({side[key]['status']}): only finished runs compare",
                    errors={key: [side[key]["status"]]},
                )
    return render(
        "console/studio/whatif_compare.html",
        title="Compare what-ifs",
        side=side,
        runs=runs,
        query=query,
        active_page="console.whatif_runs",
    )


def charts(s: dict[str, Any], order: dict[str, list[str]]) -> dict[str, Any]:
    """The chart specs of a run's result page (charts.js; each chart's numbers are also in a table beside it)."""
    out = {
        "stage_moves": moves_spec(s["stage_moves"], order.get("stage", []), "No customer would change stage"),
        "value_moves": moves_spec(s["value_segment_moves"], order.get("value_segment", []), "No value segment would change"),
        "journey_moves": moves_spec(s["journey_stage_moves"], order.get("journey_stage", []), "No journey stage would change"),
        "segments": {
            "kind": "bar",
            "horizontal": True,
            "categories": [r["name"] for r in s["segments"]],
            "series": [
                {"name": "now", "values": [r["before"] for r in s["segments"]]},
                {"name": "draft", "values": [r["after"] for r in s["segments"]]},
            ],
            "format": "integer",
            "empty_text": "No active segments (or the segments step did not run)",
        },
    }
    for field, rows in s["distributions"].items():
        out[f"dist_{field}"] = {
            "kind": "bar",
            "categories": [r["value"] for r in rows],
            "series": [
                {"name": "now", "values": [r["before"] for r in rows]},
                {"name": "draft", "values": [r["after"] for r in rows]},
            ],
            "format": "integer",
            "empty_text": "Not counted in this run",
        }
    for channel in (s["offers"] or {}).get("channels", []):
        moved = [o for o in channel["offers"] if o["gained"] or o["lost"]]  # none: no chart, a sentence
        out[f"offers_{channel['channel']}"] = {
            "kind": "bar",
            "categories": [o["code"] for o in moved],
            "series": [
                {"name": "gained", "values": [o["gained"] for o in moved]},
                {"name": "lost", "values": [o["lost"] for o in moved]},
            ],
            "format": "integer",
            "x_name": "offer",
            "y_name": "customers",
            "empty_text": "No active offers",
        }
    return out


def moves_spec(moves: list[dict[str, Any]], order: list[str], empty: str) -> dict[str, Any]:
    """A heatmap of moves from → to (y = from, top to bottom; x = to): every declared value, in order, then any other."""
    seen = {m[k] for m in moves for k in ("from", "to")}
    labels = (list(order) + sorted(seen - set(order) - {service.NONE})) if moves else []
    labels += [service.NONE] if service.NONE in seen else []
    return {
        "kind": "heatmap",
        "x": labels,
        "y": labels,
        "cells": [[labels.index(m["to"]), labels.index(m["from"]), m["count"]] for m in moves],
        "x_name": "to",
        "y_name": "from",
        "format": "integer",
        "empty_text": empty,
    }
