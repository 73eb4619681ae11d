"""Helpers for views: the unit of work of one request."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from flask import current_app
from sqlalchemy.orm import Session


@contextlib.contextmanager
def transaction(*, write: bool = False) -> Iterator[Session]:
    """Open the request's unit of work on the app's database; commit when the block succeeds."""
    with current_app.extensions["database"].session(write=write) as session:
        yield session
