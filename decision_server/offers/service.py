"""The offer catalog: checks beyond the schema, create/change/retire, listing, the demo catalog."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from decision_server.db import dialect_of, utcnow
from decision_server.decisions.records import DecisionActionRecord, OfferDayRecord
from decision_server.errors import Conflict, NotFound, ValidationError
from decision_server.features.definition import CATEGORIES
from decision_server.offers import treatments
from decision_server.offers.records import OfferRecord

_o = OfferRecord.__table__
COLUMNS = tuple(c.name for c in _o.columns)
# Where the catalog's words come from when the serving rules do not list them.
DEFAULT_VOCABULARY = {
    "category": ("welcome", "onboarding", "upsell", "cross_sell", "loyalty", "vip", "win_back", "retention"),
    "target_stages": ("acquisition", "onboarding", "growth", "retention", "win_back", "churn_risk"),
    "target_segments": ("high", "medium", "low"),
}


def vocabulary(revision) -> dict[str, tuple[str, ...]]:
    """Return the words an offer may use, from the offer rule set the revision serves.

    A business user who adds a category to `offers.yaml` can use it in the catalog at once; a
    category the rules do not know could never be targeted or excluded by them.
    """
    words = dict(DEFAULT_VOCABULARY)
    ruleset = revision.rulesets.get("offers") if revision is not None else None
    if ruleset is not None:
        for field in words:
            spec = ruleset.inputs.get(f"offer.{field}")
            if spec is not None and spec.values:
                words[field] = tuple(spec.values)
    words["product_category"] = CATEGORIES
    return words


def check(data: Mapping[str, Any], *, channels: Mapping[str, str], words: Mapping[str, tuple[str, ...]]) -> None:
    """Raise ValidationError listing every problem of a complete offer the schema cannot see."""
    errors: dict[str, list[str]] = {}
    if data.get("category") not in words["category"]:
        errors["category"] = [f"one of {', '.join(words['category'])}"]
    product = data.get("product_category")
    if product is not None and product not in words["product_category"]:
        errors["product_category"] = [f"one of {', '.join(words['product_category'])}, or null"]
    for field in ("target_stages", "target_segments"):
        bad = [v for v in data.get(field) or () if v not in words[field]]
        if bad:
            errors[field] = [f"unknown {', '.join(bad)}; use {', '.join(words[field])}"]
    for channel, treatment in (data.get("treatments") or {}).items():
        kind = channels.get(channel)
        if kind is None:
            errors[f"treatments.{channel}"] = [f"unknown channel; channels: {', '.join(channels)}"]
            continue
        for field, problems in treatments.check(kind, treatment).items():
            errors[f"treatments.{channel}" + (f".{field}" if field else "")] = problems
    start, end = data.get("valid_from"), data.get("valid_to")
    if start is not None and end is not None and end <= start:
        errors["valid_to"] = ["must be after valid_from"]
    if data.get("external_id") is not None and not data.get("external_system"):
        errors["external_system"] = ["required with external_id"]
    if errors:
        raise ValidationError("the offer has invalid fields: " + ", ".join(sorted(errors)), errors=errors)


def get(session: Session, offer_id: int) -> dict[str, Any]:
    """Return one offer as a dict; raise NotFound."""
    row = session.execute(sa.select(_o).where(_o.c.id == offer_id)).first()
    if row is None:
        message = f"no offer with id {offer_id}"
        raise NotFound(message, code="offer_not_found", errors={"id": [message]})
    return dict(row._mapping)


def create(
    session: Session, data: Mapping[str, Any], *, channels: Mapping[str, str], words, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Add an offer after checking it; raise Conflict when its id, code or external id is taken."""
    check(data, channels=channels, words=words)
    now = now or utcnow()
    _refuse_duplicates(session, data, None)
    values = {**data, "created_at": now, "updated_at": now}
    offer_id = session.execute(sa.insert(_o).values(**values).returning(_o.c.id)).scalar_one()
    if "id" in data:
        _advance_sequence(session)
    return get(session, offer_id)


def update(
    session: Session,
    offer_id: int,
    changes: Mapping[str, Any],
    *,
    channels: Mapping[str, str],
    words,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Change some fields of an offer; the result is checked as a whole."""
    current = get(session, offer_id)
    merged = {**current, **changes}
    check(merged, channels=channels, words=words)
    _refuse_duplicates(session, merged, offer_id)
    if any(current[k] != v for k, v in changes.items()):
        session.execute(sa.update(_o).where(_o.c.id == offer_id).values(**changes, updated_at=now or utcnow()))
    return get(session, offer_id)


def delete(session: Session, offer_id: int) -> None:
    """Delete an offer never made to anyone; one with decisions behind it can only be retired."""
    get(session, offer_id)
    used = session.execute(
        sa.select(DecisionActionRecord.offer_id).where(DecisionActionRecord.offer_id == offer_id).limit(1)
    ).first()
    # Or made in decisions retention has removed since: their statistics still name the offer.
    used = used or session.execute(sa.select(OfferDayRecord.offer_id).where(OfferDayRecord.offer_id == offer_id).limit(1)).first()
    if used:
        message = f"offer {offer_id} was made in decisions; retire it (status: retired) so their log stays readable"
        raise Conflict(message, code="offer_in_use", errors={"id": [message]})
    session.execute(sa.delete(_o).where(_o.c.id == offer_id))


def listing(
    session: Session,
    *,
    limit: int,
    after: int | None = None,
    status: str | None = None,
    category: str | None = None,
    stage: str | None = None,
    segment: str | None = None,
    external_system: str | None = None,
) -> list[dict[str, Any]]:
    """Return up to limit + 1 offers in id order after `after`, filtered."""
    select = sa.select(_o).order_by(_o.c.id)
    if after is not None:
        select = select.where(_o.c.id > after)
    for column, value in ((_o.c.status, status), (_o.c.category, category), (_o.c.external_system, external_system)):
        if value is not None:
            select = select.where(column == value)
    rows = [dict(r._mapping) for r in session.execute(select).all()]
    # Target lists are JSON: filtered here, not in SQL, so SQLite and PostgreSQL agree exactly.
    if stage is not None:
        rows = [r for r in rows if not r["target_stages"] or stage in r["target_stages"]]
    if segment is not None:
        rows = [r for r in rows if not r["target_segments"] or segment in r["target_segments"]]
    return rows[: limit + 1]


def _refuse_duplicates(session: Session, data: Mapping[str, Any], own_id: int | None) -> None:
    checks = [("code", _o.c.code == data["code"])]
    if data.get("id") is not None and own_id is None:
        checks.append(("id", _o.c.id == data["id"]))
    if data.get("external_id") is not None:
        checks.append(
            ("external_id", sa.and_(_o.c.external_system == data.get("external_system"), _o.c.external_id == data["external_id"]))
        )
    for field, condition in checks:
        clash = session.execute(sa.select(_o.c.id).where(condition, _o.c.id != (own_id if own_id is not None else -1))).first()
        if clash:
            message = f"offer {clash.id} already has this {field}"
            raise Conflict(message, code="offer_exists", errors={field: [message]})


def _advance_sequence(session: Session) -> None:
    """After an insert with an explicit id, move PostgreSQL's id sequence past it (SQLite does this itself)."""
    if dialect_of(session) == "postgresql":
        top = session.execute(sa.select(sa.func.max(_o.c.id))).scalar_one()
        # setval(n, true): the next id is n + 1; setval(1, false): the next id is 1 (only id 0 is taken).
        session.execute(
            sa.text("SELECT setval(pg_get_serial_sequence('offers', 'id'), :n, :called)"), {"n": max(top, 1), "called": top >= 1}
        )


def _card(title: str, body: str, link: str) -> dict[str, str]:
    return {
        "title": title,
        "body": body,
        "image_url": f"https://cdn.example.com/offers/{link}.png",
        "deep_link": f"myapp://offers/{link}",
    }


# The demo catalog (ids 0-7, one per offer category, across the lifecycle stages), from the seeds'
# "default offers (0-7) for NBO predictions"; a real deployment edits or syncs its own.
DEMO_CATALOG: tuple[dict[str, Any], ...] = (
    {
        "id": 0,
        "code": "WELCOME10",
        "name": "10% off your first bundle",
        "category": "welcome",
        "description": "A first-purchase discount for people who have not bought yet.",
        "product_category": "data_bundle",
        "target_stages": ["acquisition"],
        "business_value": 4.0,
        "treatments": {
            "sms": {
                "text": "Hi {first_name}, welcome! Take 10% off your first bundle with code WELCOME10. Reply STOP to opt out."
            },
            "app": _card("Welcome! 10% off", "Hi {first_name}, take 10% off your first data bundle.", "welcome10"),
            "call_centre": {"script": "Welcome {first_name} and offer 10% off the first bundle (code WELCOME10)."},
        },
    },
    {
        "id": 1,
        "code": "STARTER_BOOST",
        "name": "Starter data boost",
        "category": "onboarding",
        "description": "Double data for a month on the next bundle, to settle new customers in.",
        "product_category": "data_bundle",
        "target_stages": ["onboarding"],
        "business_value": 6.0,
        "treatments": {
            "sms": {"text": "{first_name}, your next data bundle comes with double data for a month. Open the app to add it."},
            "app": _card(
                "Double data for a month", "Your next data bundle comes with double data, {first_name}.", "starter-boost"
            ),
            "call_centre": {"script": "Tell {first_name} their next data bundle has double data for a month."},
        },
    },
    {
        "id": 2,
        "code": "UPSELL_UNLIMITED",
        "name": "Upgrade to Unlimited Data",
        "category": "upsell",
        "description": "Move a regular data buyer to the unlimited weekly plan.",
        "product_category": "data_bundle",
        "target_stages": ["growth", "retention"],
        "business_value": 15.0,
        "treatments": {
            "sms": {"text": "{first_name}, go unlimited: Unlimited Data Week at a member price. Upgrade in the app."},
            "app": _card("Go unlimited", "Never run out: upgrade to Unlimited Data Week, {first_name}.", "unlimited"),
            "call_centre": {"script": "Offer {first_name} the Unlimited Data Week upgrade at the member price."},
        },
    },
    {
        "id": 3,
        "code": "STREAMING_PASS",
        "name": "Add a streaming pass",
        "category": "cross_sell",
        "description": "Cross-sell a music or video pass to active customers.",
        "product_category": "streaming",
        "target_stages": ["growth", "retention"],
        "business_value": 8.0,
        "treatments": {
            "sms": {"text": "{first_name}, add Music Plus or Video Pass for a month free. Open the app to start."},
            "app": _card(
                "A month of streaming on us", "Add Music Plus or Video Pass free for a month, {first_name}.", "streaming"
            ),
            "call_centre": {"script": "Offer {first_name} a free month of Music Plus or Video Pass."},
        },
    },
    {
        "id": 4,
        "code": "DOUBLE_POINTS",
        "name": "Double points this month",
        "category": "loyalty",
        "description": "Double loyalty points on every purchase this month.",
        "product_category": None,
        "target_stages": ["growth", "retention"],
        "business_value": 5.0,
        "treatments": {
            "sms": {"text": "{first_name}, you earn double points on every purchase this month. Thank you for staying with us!"},
            "app": _card("Double points", "Every purchase this month earns double points, {first_name}.", "double-points"),
            "call_centre": {"script": "Thank {first_name} for their loyalty: double points on every purchase this month."},
        },
    },
    {
        "id": 5,
        "code": "VIP_EARLY_ACCESS",
        "name": "VIP early access to new phones",
        "category": "vip",
        "description": "Pre-order new devices before launch, for our best customers.",
        "product_category": "device",
        "target_stages": ["growth", "retention"],
        "target_segments": ["high"],
        "business_value": 30.0,
        "treatments": {
            "app": _card("VIP early access", "Pre-order the new Phone X Pro before anyone else, {first_name}.", "vip-early"),
            "call_centre": {"script": "As a VIP, {first_name} can pre-order the new Phone X Pro before launch."},
        },
    },
    {
        "id": 6,
        "code": "WINBACK20",
        "name": "We miss you: 20% off",
        "category": "win_back",
        "description": "A discount to bring lapsed customers back.",
        "product_category": None,
        "target_stages": ["win_back", "churn_risk"],
        "business_value": 7.0,
        "treatments": {
            "sms": {"text": "We miss you, {first_name}! Come back for 20% off any bundle with code COMEBACK20."},
            "app": _card("We miss you: 20% off", "Come back for 20% off any bundle, {first_name}.", "winback20"),
            "call_centre": {"script": "Tell {first_name} we miss them and offer 20% off any bundle (COMEBACK20)."},
        },
    },
    {
        "id": 7,
        "code": "RETENTION_SAVE",
        "name": "Three months at half price",
        "category": "retention",
        "description": "The agent's save offer for a customer who wants to leave.",
        "product_category": None,
        "target_stages": ["churn_risk", "win_back", "retention"],
        "business_value": 20.0,
        "treatments": {
            "call_centre": {
                "script": "Before {first_name} leaves: offer three months at half price on their plan, then normal price."
            }
        },
    },
)


def is_empty(session: Session) -> bool:
    """Tell whether the catalog has no offer at all (retired ones count)."""
    return session.execute(sa.select(_o.c.id).limit(1)).first() is None


def load_demo_catalog(session: Session, *, channels: Mapping[str, str], words, now: dt.datetime | None = None) -> int:
    """Add the demo catalog's offers that are missing (by code); return how many were added."""
    have = set(session.execute(sa.select(_o.c.code)).scalars())
    taken = set(session.execute(sa.select(_o.c.id)).scalars())
    added = 0
    for offer in DEMO_CATALOG:
        if offer["code"] in have:
            continue
        data = {"description": "", "target_segments": [], "points_cost": 0, "status": "active", **offer}
        if data["id"] in taken:
            del data["id"]
        data["treatments"] = {c: t for c, t in data["treatments"].items() if c in channels}
        create(session, data, channels=channels, words=words, now=now)
        added += 1
    return added
