"""Console filters: a page's GET query read with the API's own schema, so a bad value is the console's 422 page."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import marshmallow as ma

from decision_server.errors import ValidationError


def parse_query(schema: type[ma.Schema], args: Mapping[str, str]) -> dict[str, Any]:
    """Load the query `args` with `schema` (empty values dropped: a form's "any"); raise ValidationError naming each field."""
    given = {key: value for key, value in args.items() if value != ""}
    try:
        return schema().load(given)
    except ma.ValidationError as exc:
        errors = exc.messages if isinstance(exc.messages, dict) else {"query": exc.messages}
        fields = ", ".join(sorted(errors))
        raise ValidationError(f"check the filters: {fields}", errors=errors, code="filter_invalid") from None
