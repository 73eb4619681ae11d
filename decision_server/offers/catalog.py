"""The active offers every decision ranks, held in memory and kept in step with the database."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from decision_server.db import Database
from decision_server.offers.records import OfferRecord
from decision_server.polling import Poller

log = logging.getLogger("decision_server.offers")
_o = OfferRecord.__table__
# Changes anywhere (API, sync, another machine) move one of these: no per-decision read.
_STAMP = sa.select(sa.func.count(), sa.func.max(_o.c.updated_at), sa.func.sum(_o.c.id))


@dataclasses.dataclass(frozen=True)
class Offer:
    """An active offer as the decision path needs it."""

    id: int
    code: str
    name: str
    category: str
    product_category: str | None
    business_value: float
    points_cost: int
    valid_from: float | None  # epoch seconds
    valid_to: float | None
    treatments: Mapping[str, Mapping[str, str]]
    facts: Mapping[str, Any]  # the offer.* inputs of the rule files

    def valid_at(self, now: float) -> bool:
        """Tell whether the offer's validity dates hold `now` (epoch seconds)."""
        return (self.valid_from is None or now >= self.valid_from) and (self.valid_to is None or now < self.valid_to)

    def summary(self) -> dict[str, Any]:
        """Return what a decision shows of the offer."""
        return {
            "id": self.id,
            "code": self.code,
            "name": self.name,
            "category": self.category,
            "product_category": self.product_category,
            "business_value": self.business_value,
            "points_cost": self.points_cost,
        }


def to_offer(row: Mapping[str, Any]) -> Offer:
    """Build the decision path's view of one offer row."""
    return Offer(
        row["id"],
        row["code"],
        row["name"],
        row["category"],
        row["product_category"],
        float(row["business_value"]),
        int(row["points_cost"]),
        row["valid_from"].timestamp() if row["valid_from"] else None,
        row["valid_to"].timestamp() if row["valid_to"] else None,
        dict(row["treatments"] or {}),
        {
            "offer.code": row["code"],
            "offer.category": row["category"],
            # An empty target list means "any": missing to the rules, so a `not in` rule cannot fire.
            "offer.target_stages": list(row["target_stages"]) or None,
            "offer.target_segments": list(row["target_segments"]) or None,
            "offer.points_cost": int(row["points_cost"]),
        },
    )


def active_offers(conn: Any) -> tuple[Offer, ...]:
    """Read the active offers, in id order, as decisions see them."""
    rows = conn.execute(sa.select(_o).where(_o.c.status == "active").order_by(_o.c.id)).all()
    return tuple(to_offer(r._mapping) for r in rows)


def value_offers(offers: tuple[Offer, ...], segment: str | None) -> list[dict[str, Any]]:
    """Return the offers made for a value segment (CVM's value-based offers): those that target it by name.

    Offers open to every segment are left out: they are not value-based. None (no segment yet) has none.
    """
    if segment is None:
        return []
    return [offer.summary() for offer in offers if segment in (offer.facts["offer.target_segments"] or ())]


class Catalog:
    """The active offers of one process; reloaded when this process writes or the database changes."""

    def __init__(self, database: Database, *, poll_seconds: float = 2.0):
        self.database = database
        self._offers: tuple[Offer, ...] = ()
        self._stamp: tuple | None = None
        self._lock = threading.Lock()
        self._poller = Poller("catalog-watcher", poll_seconds, self.sync, log)

    @property
    def offers(self) -> tuple[Offer, ...]:
        """Return the active offers in id order (read once per decision and keep using it)."""
        return self._offers

    def start(self) -> None:
        """Load the catalog and start following changes."""
        self.sync(force=True)
        self._poller.start()

    def stop(self) -> None:
        """Stop following changes."""
        self._poller.stop()

    def sync(self, *, force: bool = False) -> bool:
        """Reload when the offers table changed (or `force`); return whether it reloaded."""
        with self._lock, self.database.connection() as conn:
            stamp = tuple(conn.execute(_STAMP).one())
            if not force and stamp == self._stamp:
                return False
            self._offers = active_offers(conn)
            self._stamp = stamp
        log.info("offer catalog loaded", extra={"active_offers": len(self._offers)})
        return True
