"""Trace a customer: their profile and offers under my draft next to the serving revision's, and "why not offer X?"."""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import current_app, request

from decision_server.auth.roles import Permission
from decision_server.console.pages import page, view
from decision_server.console.render import render
from decision_server.console.screens.customers import INTENTS
from decision_server.console.screens.studio import owner
from decision_server.customers import service as customers
from decision_server.errors import NotFound, ValidationError
from decision_server.rules.source import RulesInvalid
from decision_server.studio import drafts, trace

MATCHES = 10  # customers listed to pick from when a search finds several


@dataclasses.dataclass(frozen=True)
class Asked:
    """What the form asks: who (an id, a name or an email), on which channel, with which intent, and about which offer."""

    customer: str
    channel: str
    intent: str
    offer: str


def _asked() -> Asked:
    channels = list(current_app.extensions["decider"].channels)
    channel = request.args.get("channel") or channels[0]
    intent = request.args.get("intent", "")
    if channel not in channels:
        raise ValidationError(f"unknown channel {channel!r}", errors={"channel": [f"one of: {', '.join(channels)}"]})
    if intent not in INTENTS:
        raise ValidationError(f"unknown intent {intent!r}", errors={"intent": [f"one of: {', '.join(i for i in INTENTS if i)}"]})
    return Asked(
        (request.args.get("customer") or "").strip()[:100], channel, intent, (request.args.get("offer") or "").strip()[:100]
    )


def _find(asked: Asked) -> tuple[str | None, list[dict[str, Any]]]:
    """The customer to trace (an exact id, or the one customer a search finds), else the matches to pick from."""
    with current_app.extensions["database"].session() as session:
        try:
            customers.customer_id(session, external_id=asked.customer)
            return asked.customer, []
        except NotFound:
            rows = customers.list_customers(session, limit=MATCHES, q=asked.customer)
    if len(rows) == 1:
        return rows[0]["external_id"], []
    return None, rows


def _trace(customer_id: str, asked: Asked) -> tuple[trace.Trace, drafts.Workspace, RulesInvalid | None]:
    """Trace under my draft (the serving side alone when I have none, or it does not validate)."""
    ext = current_app.extensions
    rulebook = ext["rulebook"]
    serving = rulebook.current
    with ext["database"].session() as session:
        space = drafts.workspace(session, serving, owner())
    common = dict(
        customer_id=customer_id,
        channel=asked.channel,
        intent=asked.intent or None,
        serving=serving,
        models=ext["models"].current,
        decider=ext["decider"],
        margin=ext["config"].default_margin,
    )
    try:
        with trace.draft_revision(space.files if space.changes else None, serving=serving, limits=rulebook.limits) as draft:
            return trace.trace(ext["database"], draft=draft, **common), space, None
    except RulesInvalid as refused:
        return trace.trace(ext["database"], draft=None, **common), space, refused


@page("/rules/trace", title="Trace a customer", group="Rules", permission=Permission.RULES_READ, position=40)
def studio_trace():
    """One customer under my draft and under the serving rules: profile, offers with why, and "why not offer X?"."""
    asked = _asked()
    channels = list(current_app.extensions["decider"].channels)
    context: dict[str, Any] = {"asked": asked, "channels": channels, "intents": INTENTS, "match_limit": MATCHES}
    status = 200
    if asked.customer:
        customer_id, matches = _find(asked)
        if customer_id is None:
            context["matches"] = matches
            status = 200 if matches else 404
        else:
            found, space, refused = _trace(customer_id, asked)
            context.update(_shown(found, space, refused, asked))
    return render("console/studio/trace.html", title="Trace a customer", **context), status


@view("/rules/trace/why-not", permission=Permission.RULES_READ)
def studio_trace_why_not():
    """The one-line answer to "why not offer X?" for the traced customer (htmx swaps it in; the page shows it without JS)."""
    asked = _asked()
    if not asked.customer or not asked.offer:
        raise ValidationError(
            "name a customer and an offer", errors={k: ["required"] for k in ("customer", "offer") if not getattr(asked, k)}
        )
    found, _space, _refused = _trace(asked.customer, asked)
    return render("console/studio/trace_why_not.html", answer=trace.why_not(found, asked.offer), asked=asked)


def _shown(found: trace.Trace, space: drafts.Workspace, refused: RulesInvalid | None, asked: Asked) -> dict[str, Any]:
    return {
        "found": found,
        "space": space,
        "refused": refused,
        "profile_rows": trace.profile_rows(found),
        "offer_rows": trace.offer_rows(found),
        "answer": trace.why_not(found, asked.offer) if asked.offer else None,
        "actions": trace.ACTIONS,
        "changed_files": [f for f in space.changes if not f.endswith(".cases.yaml")],
    }
