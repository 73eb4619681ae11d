"""The event path's hook: re-evaluate the customers whose events a request just stored."""

from __future__ import annotations

from collections.abc import Callable

from flask import current_app
from sqlalchemy.orm import Session

from decision_server.lifecycle.service import refresh_customers


def on_events() -> Callable[[Session, list[int]], object]:
    """Return the hook for this app: stage and RFM place of each customer, in the same transaction."""
    rulebook, models = current_app.extensions["rulebook"], current_app.extensions["models"]

    def after(session: Session, customer_ids: list[int]) -> object:
        return refresh_customers(session.connection(), customer_ids, revision=rulebook.current, models=models.current)

    return after
