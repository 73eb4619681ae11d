"""Marshmallow fields and schemas shared by every resource: ids, codes, money, times, pages, errors."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Any

import marshmallow as ma
from marshmallow import fields

from decision_server import validation


class _Checked(fields.String):
    """A string checked by one of the validation functions."""

    check = staticmethod(lambda value: None)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        problem = self.check(text)
        if problem:
            raise ma.ValidationError(problem)
        return text


class ExternalId(_Checked):
    """An id that the business owns (customer, transaction, touchpoint)."""

    check = staticmethod(validation.check_external_id)


class Code(_Checked):
    """A lowercase identifier: channel, kind, category."""

    check = staticmethod(validation.check_code)


class Text(fields.String):
    """Free text with a maximum length and no NUL characters."""

    def __init__(self, max_len: int, **kwargs):
        super().__init__(**kwargs)
        self.max_len = max_len
        self.metadata.setdefault("maxLength", max_len)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        problem = validation.check_text(text, self.max_len)
        if problem:
            raise ma.ValidationError(problem)
        return text


class Money(fields.Field):
    """An exact amount with at most two decimals, sent as a string or number, kept as cents."""

    def __init__(self, *, allow_negative: bool = False, **kwargs):
        kwargs.setdefault("metadata", {}).update(
            {"type": "string", "format": "decimal", "example": "19.99"}
        )
        super().__init__(**kwargs)
        self.allow_negative = allow_negative

    def _serialize(self, value, attr, obj, **kwargs):
        decimal = validation.cents_to_decimal(value)
        return None if decimal is None else str(decimal)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ma.ValidationError("must be a number or a decimal string")
        try:
            return validation.parse_money_cents(value, allow_negative=self.allow_negative)
        except ValueError as exc:
            raise ma.ValidationError(str(exc)) from None


class Timestamp(fields.DateTime):
    """An ISO 8601 time between 1970 and 2100; a time without an offset is UTC."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ma.ValidationError("must be an ISO 8601 date-time string")
        try:
            return validation.parse_timestamp(value)
        except ValueError as exc:
            raise ma.ValidationError(str(exc)) from None


class EventTime(Timestamp):
    """When something happened: an ISO 8601 time, not in the future (5 minutes of clock skew allowed)."""

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return validation.parse_event_time(moment)
        except ValueError as exc:
            raise ma.ValidationError(str(exc)) from None


class JsonDocument(fields.Dict):
    """A small free-form JSON object (attributes, payloads)."""

    def _deserialize(self, value, attr, data, **kwargs):
        document = super()._deserialize(value, attr, data, **kwargs)
        problem = validation.check_json_document(document)
        if problem:
            raise ma.ValidationError(problem)
        return document


class StrictBoolean(fields.Boolean):
    """A JSON true or false, nothing that merely looks like one."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise ma.ValidationError("must be true or false")
        return value


class Consent(fields.Dict):
    """Contact consent per channel: {"sms": true, "app": false}."""

    def __init__(self, *, allow_none_values: bool = False, **kwargs):
        super().__init__(keys=Code(), values=StrictBoolean(allow_none=allow_none_values), **kwargs)


def encode_cursor(*position: Any) -> str:
    """Turn the sort position of the last row of a page into an opaque cursor."""
    text = json.dumps([p.isoformat() if isinstance(p, dt.datetime) else p for p in position])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    """Turn a cursor back into the sort position to continue after."""
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(position, list) or not position or len(position) > 3:
            raise ValueError
        last = position[-1]
        if not isinstance(last, int) or isinstance(last, bool) or not 0 <= last < 2**63:
            raise ValueError
        return [dt.datetime.fromisoformat(p) if isinstance(p, str) else p for p in position]
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ma.ValidationError("not a cursor returned by this API") from None


class Cursor(fields.String):
    """The `next_cursor` of a previous page."""

    def _deserialize(self, value, attr, data, **kwargs):
        return decode_cursor(super()._deserialize(value, attr, data, **kwargs))


class PageQuery(ma.Schema):
    """Keyset pagination: `limit` rows after `cursor`; an unknown parameter is an error, not ignored."""

    class Meta:
        unknown = ma.RAISE

    limit = fields.Integer(
        load_default=50, validate=ma.validate.Range(1, 500), metadata={"description": "rows per page"}
    )
    cursor = Cursor(metadata={"description": "next_cursor of the previous page"})


class PageSchema(ma.Schema):
    """A page of items; `next_cursor` is null on the last page."""

    next_cursor = fields.String(allow_none=True)


def page_of(item_schema: type[ma.Schema], name: str) -> type[ma.Schema]:
    """Build the schema of a page of `item_schema` items."""
    return type(name, (PageSchema,), {"items": fields.List(fields.Nested(item_schema))})


class ErrorSchema(ma.Schema):
    """Every error: a stable code, the HTTP status, a message and the offending fields."""

    code = fields.String(metadata={"example": "validation_error"})
    status = fields.Integer(metadata={"example": 422})
    message = fields.String()
    errors = fields.Dict(
        keys=fields.String(),
        metadata={"description": "offending field (dotted path) to its messages"},
    )


def page_response(rows: list[Any], limit: int, position=lambda row: (row["id"],)) -> dict[str, Any]:
    """Shape `rows` (fetched with limit + 1) into a page with the cursor of its last row."""
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": rows, "next_cursor": encode_cursor(*position(rows[-1])) if more and rows else None}
