"""Tier definitions (what a tier is worth: rank, multiplier, benefits), edited over the API, and tier history.

Who qualifies for a tier is `rules/tiers.yaml`, applied by `loyalty.service` and `loyalty.bulk`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from decision_server.customers.records import CustomerRecord
from decision_server.db import utcnow
from decision_server.errors import Conflict, NotFound, ValidationError
from decision_server.loyalty.records import MemberRecord, TierChangeRecord, TierRecord
from decision_server.rulebook.requirements import missing

_m, _t, _h = MemberRecord.__table__, TierRecord.__table__, TierChangeRecord.__table__
_c = CustomerRecord.__table__

# The tiers a fresh database has (migration 0011 writes the same), matching rules/tiers.yaml as shipped.
DEFAULT_TIERS = [
    {
        "name": "bronze",
        "rank": 1,
        "multiplier": 1.0,
        "description": "Every member starts here.",
        "benefits": ["1 point per currency unit spent"],
    },
    {
        "name": "silver",
        "rank": 2,
        "multiplier": 1.25,
        "description": "Regular earners and steady spenders.",
        "benefits": ["1.25 points per currency unit spent", "birthday bonus"],
    },
    {
        "name": "gold",
        "rank": 3,
        "multiplier": 1.5,
        "description": "Strong earners and loyal spenders.",
        "benefits": ["1.5 points per currency unit spent", "priority support line", "free delivery"],
    },
    {
        "name": "platinum",
        "rank": 4,
        "multiplier": 2.0,
        "description": "Our best members.",
        "benefits": ["2 points per currency unit spent", "dedicated agent", "early access to new offers"],
    },
]


def tiers(conn: Connection) -> dict[str, dict[str, Any]]:
    """Return the tier definitions by name, lowest rank first."""
    return {r.name: dict(r._mapping) for r in conn.execute(sa.select(_t).order_by(_t.c.rank))}


def tier_names_in_rules(revision: Any) -> list[str]:
    """The tiers `rules/tiers.yaml` can give (its declared output values)."""
    if missing(revision, "tiers"):
        return []
    return list(revision.rulesets["tiers"].outputs["tier"].values or [])


def create_tier(conn: Connection, body: dict[str, Any], revision: Any) -> dict[str, Any]:
    """Define a tier; name and rank are unique."""
    _check_tier_unique(conn, body)
    now = utcnow()
    tier_id = conn.execute(sa.insert(_t).values(**body, created_at=now, updated_at=now).returning(_t.c.id)).scalar_one()
    return tier_view(conn, tier_id, revision)


def update_tier(conn: Connection, tier_id: int, body: dict[str, Any], revision: Any) -> dict[str, Any]:
    """Change a tier's rank, multiplier, benefits or description (its name is its identity)."""
    current = _tier_row(conn, tier_id)
    if "name" in body and body["name"] != current["name"]:
        message = "a tier's name cannot change (members and the rules refer to it); define a new tier instead"
        raise ValidationError(message, errors={"name": [message]}, code="tier_name_fixed")
    _check_tier_unique(conn, body, tier_id)
    if body:
        conn.execute(sa.update(_t).where(_t.c.id == tier_id).values(**body, updated_at=utcnow()))
    return tier_view(conn, tier_id, revision)


def delete_tier(conn: Connection, tier_id: int, revision: Any) -> None:
    """Delete a tier nobody holds and no rule gives."""
    row = _tier_row(conn, tier_id)
    members = conn.execute(sa.select(sa.func.count()).select_from(_m).where(_m.c.tier == row["name"])).scalar_one()
    if members:
        raise Conflict(f"{members:,} members hold tier {row['name']}; move them first", code="tier_in_use")
    if row["name"] in tier_names_in_rules(revision):
        raise Conflict(
            f"rules/tiers.yaml can still give tier {row['name']}; take it out of the rules first", code="tier_in_rules"
        )
    conn.execute(sa.delete(_t).where(_t.c.id == tier_id))


def tier_view(conn: Connection, tier_id: int, revision: Any) -> dict[str, Any]:
    """A tier with its member count and whether the rules can give it."""
    row = _tier_row(conn, tier_id)
    members = conn.execute(sa.select(sa.func.count()).select_from(_m).where(_m.c.tier == row["name"])).scalar_one()
    return {**row, "members": members, "in_rules": row["name"] in tier_names_in_rules(revision)}


def tier_listing(conn: Connection, revision: Any) -> list[dict[str, Any]]:
    """Every tier, lowest rank first, with member counts."""
    counts = dict(conn.execute(sa.select(_m.c.tier, sa.func.count()).group_by(_m.c.tier)).all())
    given = set(tier_names_in_rules(revision))
    return [{**t, "members": counts.get(name, 0), "in_rules": name in given} for name, t in tiers(conn).items()]


def _tier_row(conn: Connection, tier_id: int) -> dict[str, Any]:
    row = conn.execute(sa.select(_t).where(_t.c.id == tier_id)).first()
    if row is None:
        raise NotFound(f"no tier {tier_id}", code="tier_not_found")
    return dict(row._mapping)


def _check_tier_unique(conn: Connection, body: dict[str, Any], tier_id: int | None = None) -> None:
    for field in ("name", "rank"):
        if field in body:
            taken = conn.execute(sa.select(_t.c.id).where(_t.c[field] == body[field], _t.c.id != (tier_id or -1))).first()
            if taken:
                message = f"another tier has this {field}"
                raise Conflict(message, errors={field: [message]}, code="tier_conflict")


def tier_history(
    conn: Connection,
    *,
    limit: int,
    before: int | None = None,
    customer_id: int | None = None,
    source: str | None = None,
    until: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Tier changes, newest first (keyset on id); `until` keeps those before a time (a timeline's page)."""
    query = sa.select(_h, _c.c.external_id).join(_c, _c.c.id == _h.c.customer_id)
    if until is not None:
        query = query.where(_h.c.at < until)
    if before is not None:
        query = query.where(_h.c.id < before)
    if customer_id is not None:
        query = query.where(_h.c.customer_id == customer_id)
    if source is not None:
        query = query.where(_h.c.source == source)
    return [dict(r._mapping) for r in conn.execute(query.order_by(_h.c.id.desc()).limit(limit + 1))]
