"""Helpers for views: the blueprint class and the unit of work of one request."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import flask_smorest
from flask import current_app
from sqlalchemy.orm import Session
from webargs import core
from webargs.flaskparser import FlaskParser, abort

# `\ud800`-`\udfff` and `\u0000` escapes: only a body with one can hold a lone surrogate or a NUL
# (raw UTF-8 cannot encode a surrogate, and JSON refuses a raw control character in a string).
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:[dD][89a-fA-F]|0000)")
LONE_SURROGATE = "not valid Unicode: a lone surrogate (\\ud800-\\udfff escape)"
NUL = "must not contain NUL characters"


@contextlib.contextmanager
def transaction(*, write: bool = False) -> Iterator[Session]:
    """Open the request's unit of work on the app's database; commit when the block succeeds."""
    with current_app.extensions["database"].session(write=write) as session:
        yield session


def _problem(text: str) -> str | None:
    if "\x00" in text:
        return NUL  # PostgreSQL cannot store one in text, and no client means one
    return LONE_SURROGATE if any("\ud800" <= ch <= "\udfff" for ch in text) else None


def bad_character(value: Any, path: str = "") -> tuple[str, str] | None:
    """Return (dotted path, reason) of the first string or key in a JSON document with a NUL or a lone surrogate."""
    if isinstance(value, str):
        problem = _problem(value)
        return (path or "body", problem) if problem else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        where = f"{path}.{key}" if path else str(key)
        found = bad_character(key, where) if isinstance(key, str) else None
        found = found or bad_character(item, where)
        if found:
            return found
    return None


class JsonParser(FlaskParser):
    """webargs' parser, refusing a string with a NUL or a lone surrogate in a body or a query (422, naming it).

    No database can store a lone surrogate and PostgreSQL no NUL in text; refusing them here keeps
    every field, checked or not, from reaching the database with one.
    """

    def _raw_load_json(self, req) -> Any:
        document = super()._raw_load_json(req)
        if document is not core.missing and _SUSPECT_ESCAPE.search(req.get_data(cache=True)):
            found = bad_character(document)
            if found is not None:
                abort(422, messages={"json": {found[0]: [found[1]]}})
        return document

    def load_querystring(self, req, schema) -> Any:
        for name, value in req.args.items(multi=True):
            problem = _problem(name) or _problem(value)
            if problem:
                abort(422, messages={"query": {name: [problem]}})
        return super().load_querystring(req, schema)


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
