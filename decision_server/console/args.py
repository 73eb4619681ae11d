"""A console page's GET filters, parsed by the API's own query schema: the same rules, the same 422."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import marshmallow as ma

from decision_server.errors import ValidationError


def parse(schema: ma.Schema, args: Mapping[str, str]) -> dict[str, Any]:
    """Load `args` (request.args) with `schema`, dropping empty fields (a cleared input); a bad value is a 422 page."""
    given = {k: v for k, v in args.items() if v != ""}
    try:
        return schema.load(given)
    except ma.ValidationError as exc:
        messages = exc.normalized_messages()
        errors = {field: list(m) if isinstance(m, list) else [str(m)] for field, m in messages.items()}
        raise ValidationError("the filters have invalid values: " + ", ".join(sorted(errors)), errors=errors) from exc
