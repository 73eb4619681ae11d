"""Helpers for views: the blueprint class and the unit of work of one request."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import flask_smorest
from flask import current_app
from webargs import core
from webargs.flaskparser import FlaskParser, abort
from sqlalchemy.orm import Session

# `\ud800`-`\udfff` escapes: only a body with one can hold a lone surrogate (raw UTF-8 cannot).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


@contextlib.contextmanager
def transaction(*, write: bool = False) -> Iterator[Session]:
    """Open the request's unit of work on the app's database; commit when the block succeeds."""
    with current_app.extensions["database"].session(write=write) as session:
        yield session


def lone_surrogate(value: Any, path: str = "") -> str | None:
    """Return the dotted path of the first string (or key) in a JSON document with a lone surrogate."""
    if isinstance(value, str):
        return (path or "body") if any("\ud800" <= ch <= "\udfff" for ch in value) else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        where = f"{path}.{key}" if path else str(key)
        found = lone_surrogate(key, where) if isinstance(key, str) else None
        found = found or lone_surrogate(item, where)
        if found:
            return found
    return None


class JsonParser(FlaskParser):
    """webargs' parser, refusing a JSON string with a lone surrogate: no database can store one (422)."""

    def _raw_load_json(self, req) -> Any:
        document = super()._raw_load_json(req)
        if document is not core.missing and _SURROGATE_ESCAPE.search(req.get_data(cache=True)):
            where = lone_surrogate(document)
            if where is not None:
                abort(422, messages={"json": {where: ["not valid Unicode: a lone surrogate (\\ud800-\\udfff escape)"]}})
        return document


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint, but every schema decides about unknown fields (we RAISE).

    webargs would otherwise silently drop unknown query parameters, so a misspelt filter would
    return everything instead of an error.
    """

    ARGUMENTS_PARSER = JsonParser(unknown=None)

    def arguments(self, schema, *, location: str = "json", required: bool | None = None, **kwargs):
        """As flask-smorest's, but a body is documented as required only when the schema requires a field.

        A request without a body loads as `{}`, which a schema with no required field accepts.
        """
        if required is None:
            fields = (schema() if isinstance(schema, type) else schema).fields.values()
            required = location != "json" or any(field.required for field in fields)
        return super().arguments(schema, location=location, required=required, **kwargs)
