"""Customer search (id, name, email) and the customer 360: header, tabs, and a "decide now" preview."""

from __future__ import annotations

from flask import current_app, redirect, request, url_for

from decision_server.auth.roles import Permission
from decision_server.console.pages import page, view
from decision_server.console.render import render
from decision_server.customers import profile as profiles
from decision_server.customers import service as customers
from decision_server.customers.timeline import KINDS, timeline
from decision_server.db import utcnow
from decision_server.decisions.service import DecisionRequest
from decision_server.errors import ValidationError

PAGE_SIZE = 25
TABS = ("timeline", "scores", "loyalty", "segments")
INTENTS = ("", "browse", "service", "retention", "purchase")


@page("/customers", title="Customers", group="Customers", permission=Permission.CUSTOMERS_READ, position=0)
def customer_search():
    """Find customers by id, name or email; one exact id match opens the customer at once."""
    q = (request.args.get("q") or "").strip()[:100]
    after = request.args.get("after", type=int)
    with current_app.extensions["database"].session() as session:
        rows = customers.list_customers(session, limit=PAGE_SIZE, after=[after] if after else None, q=q or None)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    if q and not after and len(rows) == 1 and rows[0]["external_id"] == q:
        return redirect(url_for("console.customer", customer_id=q))
    return render("console/customers.html", title="Customers", q=q, rows=rows, more=more)


def _view(customer_id: str):
    app = current_app
    with app.extensions["database"].session() as session:
        found = profiles.profile(
            session,
            external_id=customer_id,
            revision=app.extensions["rulebook"].current,
            models=app.extensions["models"].current,
            offers=app.extensions["catalog"].offers,
            margin=app.extensions["config"].default_margin,
            limit=50,
            now=utcnow(),
        )
        kinds = tuple(k for k in request.args.getlist("kind") if k in KINDS) or KINDS
        events = timeline(session.connection(), found, kinds=kinds, limit=50)
    return found, kinds, events


def _page(customer_id: str, decision=None, decide_error=None, status=200):
    tab = request.args.get("tab", "timeline")
    if tab not in TABS:
        raise ValidationError(f"no tab {tab!r}; tabs: {', '.join(TABS)}", errors={"tab": [f"one of: {', '.join(TABS)}"]})
    found, kinds, events = _view(customer_id)
    offers = {o.id: o for o in current_app.extensions["catalog"].offers}
    return render(
        "console/customer.html",
        title=f"Customer {customer_id}",
        view=found,
        customer=found["customer"],
        tab=tab,
        tabs=TABS,
        kinds=kinds,
        all_kinds=KINDS,
        events=events,
        offers=offers,
        channels=list(current_app.extensions["decider"].channels),
        intents=INTENTS,
        decision=decision,
        decide_error=decide_error,
    ), status


@view("/customers/<string:customer_id>", permission=Permission.CUSTOMERS_READ)
def customer(customer_id: str):
    """The customer 360: who they are, where they stand, what happened, and what we would offer now."""
    return _page(customer_id)


@view("/customers/<string:customer_id>/decide", permission=Permission.DECISIONS_READ, methods=("POST",))
def decide_now(customer_id: str):
    """Preview a decision for the customer (not logged); htmx swaps in the panel, a plain form gets the whole page."""
    decider = current_app.extensions["decider"]
    channel = request.form.get("channel", "")
    intent = request.form.get("intent", "")
    if channel not in decider.channels:
        raise ValidationError(f"unknown channel {channel!r}", errors={"channel": [f"one of: {', '.join(decider.channels)}"]})
    if intent not in INTENTS:
        raise ValidationError(f"unknown intent {intent!r}", errors={"intent": [f"one of: {', '.join(i for i in INTENTS if i)}"]})
    answer = decider.preview(DecisionRequest(customer_id, channel, {"intent": intent} if intent else {}, 3))
    offers = {o.id: o for o in current_app.extensions["catalog"].offers}
    if request.headers.get("HX-Request") == "true":
        return render("console/decide_panel.html", decision=answer, offers=offers, customer_id=customer_id)
    return _page(customer_id, decision=answer)
