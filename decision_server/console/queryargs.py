"""Reading a console page's filters from its query string with the API's own schemas (a bad value: a 422 page)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import marshmallow as ma

from decision_server.errors import ValidationError


def parse(schema: type[ma.Schema], args: Mapping[str, str]) -> dict[str, Any]:
    """Load `args` with `schema` (parameters it does not know are left out); raise ValidationError naming each bad one."""
    try:
        return schema(unknown=ma.EXCLUDE).load(dict(args))
    except ma.ValidationError as error:
        messages = error.normalized_messages()
        errors = {f"query.{name}": problems for name, problems in messages.items()}
        raise ValidationError("a filter of this page has a value it cannot use", errors=errors) from None
