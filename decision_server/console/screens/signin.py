"""Sign in with an API key (exchanged for a session), sign out, and the console's home."""

from __future__ import annotations

import datetime as dt

from flask import current_app, g, redirect, request, url_for

from decision_server.auth import sessions
from decision_server.console import guard
from decision_server.console.pages import SIGNED_IN, navigation, view
from decision_server.console.render import render
from decision_server.errors import Forbidden, Unauthorized

_REASONS = {
    "session_expired": "Your session expired. Sign in again.",
    "session_ended": "You signed out.",
    "api_key_revoked": "The key of your session was revoked.",
}


def _safe_next(target: str | None) -> str:
    """Only a path inside the console (no scheme, no host, no `//`): a sign-in link cannot send anyone elsewhere."""
    if target and target.startswith("/console/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("console.home")


@view("/", permission=SIGNED_IN)
def home():
    """The console's front door: the first screen the role may open (the guard sends strangers to sign in)."""
    menu = navigation(g.console_user.role)
    if not menu:
        raise Forbidden("your role may open no console page", code="forbidden")
    return redirect(url_for(menu[0][1][0].endpoint))


@view("/sign-in", permission=None, methods=("GET", "POST"))
def sign_in():
    """Show the sign-in form; on POST exchange the key for a session cookie and go where the user was going."""
    target = _safe_next(request.values.get("next"))
    if request.method == "GET":
        return render("console/signin.html", next=target, notice=_REASONS.get(request.args.get("reason", "")), error=None)
    config = current_app.extensions["config"]
    lifetime = dt.timedelta(hours=config.console_session_hours)
    try:
        with current_app.extensions["database"].session(write=True) as session:
            opened = sessions.open_session(session, request.form.get("api_key", ""), lifetime=lifetime)
    except Unauthorized as exc:
        return render("console/signin.html", next=target, notice=None, error=exc.message), 401
    response = redirect(target)
    guard.set_session_cookie(response, opened.token, int(lifetime.total_seconds()))
    return response


@view("/sign-out", permission=SIGNED_IN, methods=("POST",))
def sign_out():
    """End the session server-side (the token stops working everywhere) and drop the cookie."""
    with current_app.extensions["database"].session(write=True) as session:
        sessions.end_session(session, g.console_user.session_id)
    g.pop("console_user", None)
    response = redirect(url_for("console.sign_in", reason="session_ended"))
    guard.clear_session_cookie(response)
    return response
