"""One customer's timeline: purchases, touchpoints, stage and journey moves, tier changes, decisions, newest first.

Built from the 360 view's recent lists (the same service functions as the API's) plus the
journey and tier histories, merged by time. Each source gives its newest `limit` items, so the
merged page is exact for the newest `limit` items overall.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.engine import Connection

from decision_server.db import to_utc
from decision_server.decisions import log as decision_log
from decision_server.journeys import service as journeys
from decision_server.loyalty import tiers

KINDS = ("purchase", "touchpoint", "stage", "journey", "tier", "decision")


def _at(value: Any) -> dt.datetime:
    return to_utc(dt.datetime.fromisoformat(value) if isinstance(value, str) else value)


def _move(kind: str, label: str, t: dict[str, Any]) -> dict[str, Any]:
    """A stage or journey transition as a timeline item (both histories have the same columns)."""
    reason = f": {t['reason']}" if t.get("reason") else ""
    return {
        "kind": kind,
        "at": _at(t["at"]),
        "title": f"{label} {t['from_stage'] or 'none'} → {t['to_stage']}",
        "detail": f"{t['source']}, rule {t.get('rule_id') or '–'}{reason}",
    }


def timeline(conn: Connection, view: dict[str, Any], *, kinds: tuple[str, ...] = KINDS, limit: int = 50) -> list[dict[str, Any]]:
    """Return the customer's events of `kinds` from a 360 `view` (customers.profile.profile), newest first."""
    cid = view["customer"]["id"]
    items: list[dict[str, Any]] = []
    if "purchase" in kinds:
        for t in view["recent_transactions"]:
            refund = t["amount_cents"] < 0
            items.append(
                {
                    "kind": "purchase",
                    "at": _at(t["occurred_at"]),
                    "title": ("Refund " if refund else "Purchase ") + f"{abs(t['amount_cents']) / 100:,.2f}",
                    "detail": " · ".join(str(x) for x in (t.get("product"), t.get("category"), t.get("channel")) if x),
                }
            )
    if "touchpoint" in kinds:
        for t in view["recent_touchpoints"]:
            items.append(
                {"kind": "touchpoint", "at": _at(t["occurred_at"]), "title": f"{t['kind']} on {t['channel']}", "detail": ""}
            )
    if "stage" in kinds:
        items.extend(_move("stage", "Stage", t) for t in view["transitions"])
    if "journey" in kinds:
        items.extend(_move("journey", "Journey", t) for t in journeys.transitions(conn, limit=limit, customer_id=cid)[:limit])
    if "tier" in kinds:
        for t in tiers.tier_history(conn, limit=limit, customer_id=cid)[:limit]:
            items.append(
                {
                    "kind": "tier",
                    "at": _at(t["at"]),
                    "title": f"Tier {t['from_tier'] or 'none'} → {t['to_tier']}",
                    "detail": t["source"] + (f": {t['reason']}" if t.get("reason") else ""),
                }
            )
    if "decision" in kinds:
        decisions = view["recent_decisions"]
        responses = decision_log.responses_of(conn, decisions)
        for d in decisions:
            offers = ", ".join(f"#{a['offer_id']}" for a in d["actions"]) or "no offer"
            answered = ", ".join(r["response"] for r in responses.get(d["decision_id"], []))
            items.append(
                {
                    "kind": "decision",
                    "at": _at(d["decided_at"]),
                    "title": f"Decision on {d['channel']}: {offers}",
                    "detail": f"response: {answered}" if answered else "",
                    "decision_id": d["decision_id"],
                    "revision": d["revision"],  # the rule revision that made it (the 360 links to it)
                }
            )
    items.sort(key=lambda i: i["at"], reverse=True)
    return items[:limit]
