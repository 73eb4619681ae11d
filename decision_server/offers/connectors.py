"""Catalog connectors: how to read one external catalog API, checked as a whole when saved."""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

import marshmallow as ma
import sqlalchemy as sa
from sqlalchemy.orm import Session

from decision_server.db import utcnow
from decision_server.errors import Conflict, NotFound, ValidationError
from decision_server.offers.records import CatalogConnectorRecord
from decision_server.offers.schemas import OfferInSchema

_c = CatalogConnectorRecord.__table__

NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# Dotted keys and list indices into an upstream JSON document: `data.items`, `pricing.value`, `images.0.url`.
PATH = re.compile(r"^[A-Za-z0-9_@$-]{1,64}(\.[A-Za-z0-9_@$-]{1,64}){0,9}$")
HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")  # an HTTP header name (RFC 9110 token)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
CRON = re.compile(r"^[0-9A-Za-z*/,?#LW-]+( [0-9A-Za-z*/,?#LW-]+){4}$")
TIMEOUT_SECONDS = (0.1, 120.0)
RETRIES = (0, 10)
REQUIRED_MAPPING = ("external_id", "code", "name")
# Offer fields a connector may fill. `id` is ours to give and `external_system` is the connector's
# name; `status`, when neither mapped nor defaulted, is left to the people running the catalog.
MAPPABLE = frozenset(OfferInSchema().fields) - {"id", "external_system"}
# The same value on every offer could not tell them apart.
NOT_DEFAULTABLE = frozenset({"external_id", "code"})
# `treatments.<channel>.<field>`: one treatment field from one upstream field, e.g. an SMS text.
_TREATMENT_KEY = re.compile(r"^treatments\.[a-z][a-z0-9_]{0,31}\.[a-z_]{1,32}$")
DEFAULTS: dict[str, Any] = {
    "auth_header": None,
    "auth_env": None,
    "items_path": "",
    "next_path": None,
    "defaults": {},
    "timeout_seconds": 10.0,
    "retries": 3,
    "max_retire_fraction": 0.2,
    "schedule": None,
    "enabled": True,
}


def check(data: Mapping[str, Any]) -> None:
    """Raise ValidationError listing every problem of a complete connector."""
    errors: dict[str, list[str]] = {}

    def bad(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    if not isinstance(data.get("name"), str) or not NAME.fullmatch(data["name"]):
        bad("name", "lower-case letters, digits and _, starting with a letter, at most 32")
    problem = _url_problem(data.get("url"))
    if problem:
        bad("url", problem)
    for field, (lo, hi), kinds in (
        ("timeout_seconds", TIMEOUT_SECONDS, (int, float)),
        ("retries", RETRIES, int),
        ("max_retire_fraction", (0, 1), (int, float)),
    ):
        value = data.get(field)
        if isinstance(value, bool) or not isinstance(value, kinds) or not lo <= value <= hi:
            bad(field, f"{'a whole number' if kinds is int else 'a number'} from {lo:g} to {hi:g}")
    header, env = data.get("auth_header"), data.get("auth_env")
    if (header is None) != (env is None):
        bad("auth_env" if env is None else "auth_header", "auth_header and auth_env go together: both or neither")
    if header is not None and (not isinstance(header, str) or not HEADER.fullmatch(header)):
        bad("auth_header", "an HTTP header name, e.g. Authorization or X-Api-Key")
    if env is not None and (not isinstance(env, str) or not ENV_NAME.fullmatch(env)):
        bad("auth_env", "the NAME of an environment variable holding the secret (e.g. CATALOG_TOKEN), never the secret")
    items_path = data.get("items_path")
    if not isinstance(items_path, str) or (items_path and not PATH.fullmatch(items_path)):
        bad("items_path", "a dotted path such as data.items, or empty for a body that is the list")
    next_path = data.get("next_path")
    if next_path is not None and (not isinstance(next_path, str) or not PATH.fullmatch(next_path)):
        bad("next_path", "a dotted path such as links.next, or null for one page")
    schedule = data.get("schedule")
    if schedule is not None and (not isinstance(schedule, str) or not CRON.fullmatch(schedule)):
        bad("schedule", "a cron expression of five fields, e.g. 0 * * * *, or null")
    if not isinstance(data.get("enabled"), bool):
        bad("enabled", "true or false")
    _check_mapping(data.get("mapping"), bad)
    _check_defaults(data.get("defaults"), bad)
    if errors:
        raise ValidationError("the connector has invalid fields: " + ", ".join(sorted(errors)), errors=errors)


def _url_problem(url: Any) -> str | None:
    if not isinstance(url, str) or not 1 <= len(url) <= 2000:
        return "an http:// or https:// URL of at most 2000 characters"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.hostname  # noqa: B018 - a bracketed host that is no IP address raises here, or in urlsplit
    except ValueError:
        return "an http:// or https:// URL with a valid host"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "an http:// or https:// URL with a host"
    if parts.username is not None or parts.password is not None:
        return "no credentials in the URL: name an environment variable in auth_env instead"
    return None


def _check_mapping(mapping: Any, bad) -> None:
    if not isinstance(mapping, Mapping):
        bad("mapping", "an object {offer field: path in an upstream item}")
        return
    for field in REQUIRED_MAPPING:
        if field not in mapping:
            bad(f"mapping.{field}", "required: every offer needs one")
    for field, path in mapping.items():
        if field not in MAPPABLE and not _TREATMENT_KEY.fullmatch(str(field)):
            bad(f"mapping.{field}", f"not an offer field; use {', '.join(sorted(MAPPABLE))} or treatments.<channel>.<field>")
        elif not isinstance(path, str) or not PATH.fullmatch(path):
            bad(f"mapping.{field}", "a dotted path in an upstream item, e.g. title or pricing.value")


def _check_defaults(defaults: Any, bad) -> None:
    if not isinstance(defaults, Mapping):
        bad("defaults", "an object {offer field: value}")
        return
    for field in defaults:
        if field not in MAPPABLE or field in NOT_DEFAULTABLE:
            bad(f"defaults.{field}", "not an offer field a default can give")
    try:
        # The same checks as a synced offer gets, field by field: a typo shows now, not at every sync.
        OfferInSchema(partial=True).load({k: v for k, v in defaults.items() if k in MAPPABLE and k not in NOT_DEFAULTABLE})
    except ma.ValidationError as exc:
        for field, messages in exc.normalized_messages().items():
            bad(f"defaults.{field}", "; ".join(map(str, messages if isinstance(messages, list) else [messages])))


def get(session: Session, name: str) -> dict[str, Any]:
    """Return one connector as a dict; raise NotFound."""
    row = session.execute(sa.select(_c).where(_c.c.name == name)).first()
    if row is None:
        message = f"no catalog connector named {name!r}"
        raise NotFound(message, code="connector_not_found", errors={"name": [message]})
    return dict(row._mapping)


def listing(session: Session) -> list[dict[str, Any]]:
    """Return every connector in name order."""
    return [dict(r._mapping) for r in session.execute(sa.select(_c).order_by(_c.c.name))]


def create(session: Session, data: Mapping[str, Any], *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Add a connector after checking it; raise Conflict when its name is taken."""
    values = {**DEFAULTS, **data}
    check(values)
    if session.execute(sa.select(_c.c.id).where(_c.c.name == values["name"])).first():
        message = f"a connector named {values['name']!r} exists"
        raise Conflict(message, code="connector_exists", errors={"name": [message]})
    now = now or utcnow()
    session.execute(sa.insert(_c).values(**values, created_at=now, updated_at=now))
    return get(session, values["name"])


def update(session: Session, name: str, changes: Mapping[str, Any], *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Change some fields of a connector; the result is checked as a whole."""
    current = get(session, name)
    if changes.get("name", name) != name:
        message = "cannot be changed: it is the external_system of the offers this connector owns"
        raise ValidationError(f"name {message}", errors={"name": [message]})
    merged = {**current, **changes}
    check(merged)
    if any(current[k] != v for k, v in changes.items()):
        session.execute(sa.update(_c).where(_c.c.name == name).values(**changes, updated_at=now or utcnow()))
    return get(session, name)


def delete(session: Session, name: str) -> None:
    """Delete a connector; its offers stay as they are (retire them, or sync them from a new one)."""
    get(session, name)
    session.execute(sa.delete(_c).where(_c.c.name == name))
