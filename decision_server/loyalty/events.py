"""The loyalty part of the event path: a stored purchase earns its points in the same transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import current_app
from sqlalchemy.orm import Session

from decision_server.loyalty.service import earn_for_purchases


def on_purchases() -> Callable[[Session, list[dict[str, Any]]], object]:
    """Return the hook for this app: points (or their reversal) for each new transaction."""
    rulebook, config = current_app.extensions["rulebook"], current_app.extensions["config"]

    def created(session: Session, rows: list[dict[str, Any]]) -> object:
        return earn_for_purchases(session.connection(), rows, revision=rulebook.current, auto_enroll=config.loyalty_auto_enroll)

    return created
