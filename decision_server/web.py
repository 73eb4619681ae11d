"""Helpers for views: the blueprint class and the unit of work of one request."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import flask_smorest
from flask import current_app
from webargs.flaskparser import FlaskParser
from sqlalchemy.orm import Session


@contextlib.contextmanager
def transaction(*, write: bool = False) -> Iterator[Session]:
    """Open the request's unit of work on the app's database; commit when the block succeeds."""
    with current_app.extensions["database"].session(write=write) as session:
        yield session


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint, but every schema decides about unknown fields (we RAISE).

    webargs would otherwise silently drop unknown query parameters, so a misspelt filter would
    return everything instead of an error.
    """

    ARGUMENTS_PARSER = FlaskParser(unknown=None)
