"""Rendering console pages: the common context, number and time filters, and error pages."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from urllib.parse import urlencode

from flask import Flask, g, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from decision_server.auth.roles import Permission, role_allows
from decision_server.console import guard
from decision_server.console.pages import blp, navigation
from decision_server.db import to_utc, utcnow
from decision_server.errors import DecisionServerError

log = logging.getLogger("decision_server.console")


def is_htmx() -> bool:
    """Tell whether htmx asked for a fragment (not a whole page)."""
    return request.headers.get("HX-Request") == "true" and request.headers.get("HX-Boosted") != "true"


def render(template: str, **context: Any) -> str:
    """Render a console template with the signed-in user, the menu and the CSRF token."""
    user = g.get("console_user")
    return render_template(
        template,
        me=user,
        nav=navigation(user.role) if user else [],
        csrf_token=user.csrf_token if user else guard.sign_in_token(),
        partial=is_htmx(),
        **context,
    )


def allowed(permission: Permission) -> bool:
    """Tell the template whether the signed-in role may do `permission` (to hide what it may not)."""
    user = g.get("console_user")
    return bool(user) and role_allows(user.role, permission)


def query_url(**changes: Any) -> str:
    """Return this page's URL with some query parameters changed (None removes one): filters stay bookmarkable."""
    args = {k: v for k, v in request.args.items() if k not in changes}
    args.update({k: v for k, v in changes.items() if v is not None and v != ""})
    return request.path + ("?" + urlencode(args) if args else "")


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{float(value):,.{digits}f}" if digits else f"{round(float(value)):,}"


def _pct(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{float(value) * 100:.{digits}f}%"


def _money(value: Any) -> str:
    return "–" if value is None else f"{float(value):,.2f}"


def _cents(value: Any) -> str:
    return "–" if value is None else f"{int(value) / 100:,.2f}"


def _when(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.datetime):
        return to_utc(value).strftime("%Y-%m-%d %H:%M")
    return value.isoformat()


def _ago(value: Any) -> str:
    if value is None:
        return "never"
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    seconds = (utcnow() - to_utc(value)).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "–"
    seconds = float(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _label(value: Any) -> str:
    return "–" if value is None else str(value).replace("_", " ").capitalize()


blp.before_request(guard.check_request)
blp.after_request(guard.secure_response)


@blp.errorhandler(guard.NotSignedIn)
def _not_signed_in(error: guard.NotSignedIn):
    target = request.full_path.rstrip("?") if request.method == "GET" else url_for("console.home")
    location = url_for("console.sign_in") + "?" + urlencode({"next": target, "reason": error.code})
    if is_htmx():
        return "", 204, {"HX-Redirect": location}
    return redirect(location)


@blp.errorhandler(DecisionServerError)
def _domain_error(error: DecisionServerError):
    if error.status >= 500:
        log.exception("console error", exc_info=error)
    return _error_page(error.status, error.code, error.message, error.errors)


@blp.errorhandler(HTTPException)
def _http_error(error: HTTPException):
    return _error_page(error.code or 500, "http_error", error.description or error.name, {})


@blp.errorhandler(Exception)
def _unexpected(error: Exception):
    log.exception("console page failed", exc_info=error)
    return _error_page(500, "internal_error", "something went wrong on our side; it was logged", {})


_TITLES = {401: "Sign in again", 403: "Not allowed", 404: "Not found", 409: "Conflict", 422: "Check the form", 429: "Busy"}


def _error_page(status: int, code: str, message: str, errors: dict[str, Any]):
    template = "console/error_fragment.html" if is_htmx() else "console/error.html"
    title = _TITLES.get(status, "Something went wrong")
    return render(template, status=status, code=code, message=message, errors=errors, title=title), status


def init_console(app: Flask) -> None:
    """Register the console blueprint, its filters and its guards on `app`."""
    from decision_server.console import screens  # noqa: F401  (registers the screens on the blueprint)

    app.jinja_env.filters.update(
        num=_num, pct=_pct, money=_money, cents=_cents, when=_when, ago=_ago, duration=_duration, label=_label
    )
    app.jinja_env.globals.update(allowed=allowed, Permission=Permission, query_url=query_url)
    app.register_blueprint(blp)
