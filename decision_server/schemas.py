"""Marshmallow fields and schemas shared by every resource: ids, codes, money, times, pages, errors."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import marshmallow as ma
from marshmallow import fields

from decision_server import validation
from decision_server.db import to_utc


class Pattern(ma.validate.Regexp):
    """marshmallow's Regexp, matched against the whole value as the OpenAPI `pattern` is.

    Python's `$` also matches before a final newline, so `Regexp("^a$")` takes "a\\n" that the
    spec's pattern (an ECMA regex) refuses.
    """

    def __call__(self, value):
        if self.regex.fullmatch(value) is None:
            raise ma.ValidationError(self._format_error(value))
        return value


class _Checked(fields.String):
    """A string checked by one of the validation functions; `pattern` is its rule in the spec."""

    check = staticmethod(lambda value: None)
    pattern: Any = None

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.pattern is not None:
            self.metadata.setdefault("pattern", self.pattern.pattern)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        problem = self.check(text)
        if problem:
            raise ma.ValidationError(problem)
        return text


class ExternalId(_Checked):
    """An id that the business owns (customer, transaction, touchpoint)."""

    check = staticmethod(validation.check_external_id)
    pattern = validation.EXTERNAL_ID_RE


class Code(_Checked):
    """A lowercase identifier: channel, kind, category."""

    check = staticmethod(validation.check_code)
    pattern = validation.CODE_RE


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
        self.pattern = validation.SIGNED_MONEY_RE if allow_negative else validation.MONEY_RE
        kwargs.setdefault("metadata", {}).update({"type": "string", "format": "decimal", "example": "19.99"})
        if not kwargs.get("dump_only"):  # what a client may send; sums and refunds in answers go beyond it
            kwargs["metadata"]["pattern"] = self.pattern.pattern
        super().__init__(**kwargs)
        self.allow_negative = allow_negative

    def _serialize(self, value, attr, obj, **kwargs):
        decimal = validation.cents_to_decimal(value)
        return None if decimal is None else str(decimal)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ma.ValidationError("must be a number or a decimal string")
        if isinstance(value, str) and not self.pattern.fullmatch(value):
            sign = "" if self.allow_negative is False else "an optional - and "
            raise ma.ValidationError(
                f"must be {sign}digits with at most two decimals, at most {validation.MAX_AMOUNT}, e.g. 19.99"
            )
        try:
            return validation.parse_money_cents(value, allow_negative=self.allow_negative)
        except ValueError as exc:
            raise ma.ValidationError(str(exc)) from None


class Timestamp(fields.DateTime):
    """An ISO 8601 time in the years 1970 to 2099; a time without an offset is UTC.

    Documented by its pattern, not `format: date-time`: RFC 3339 wants an offset and seconds that
    this API has never required, and the format cannot state the years.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.metadata.setdefault("pattern", validation.TIMESTAMP_RE.pattern)
        self.metadata.setdefault("x-format", "date-time")

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or not validation.TIMESTAMP_RE.fullmatch(value):
            raise ma.ValidationError(f"must be {validation.TIMESTAMP_RULE}")
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
        self.metadata.setdefault("description", f"channel → true or false; each key is a {validation.CODE_RULE}")


# A cursor is the keyset position of a page's last row, spelt so that the spec's pattern says
# exactly which strings are cursors: an id, or microseconds since 1970 and an id for lists in time
# order. Any string of that form is a position to continue after, whether or not a row has it.
ID_CURSOR = re.compile(r"^[0-9]{1,18}$")
TIMED_CURSOR = re.compile(r"^[0-9]{1,16}\.[0-9]{1,18}$")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def encode_cursor(*position: Any) -> str:
    """Turn the sort position of the last row of a page, (id) or (time, id), into a cursor."""
    *when, last = position
    return ".".join([*(str((to_utc(t) - _EPOCH) // _MICROSECOND) for t in when), str(last)])


def decode_cursor(cursor: str, *, timed: bool = False) -> list[Any]:
    """Turn a cursor back into the sort position to continue after."""
    if not (TIMED_CURSOR if timed else ID_CURSOR).fullmatch(cursor):
        raise ma.ValidationError("not a cursor returned by this API")
    *when, last = cursor.split(".")
    return [*(_EPOCH + int(t) * _MICROSECOND for t in when), int(last)]


class Cursor(fields.String):
    """The `next_cursor` of a previous page; `timed` for the lists in time order."""

    def __init__(self, *, timed: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.timed = timed
        self.metadata.setdefault("pattern", (TIMED_CURSOR if timed else ID_CURSOR).pattern)

    def _deserialize(self, value, attr, data, **kwargs):
        return decode_cursor(super()._deserialize(value, attr, data, **kwargs), timed=self.timed)


class PageQuery(ma.Schema):
    """Keyset pagination: `limit` rows after `cursor`; an unknown parameter is an error, not ignored."""

    class Meta:
        unknown = ma.RAISE

    limit = fields.Integer(load_default=50, validate=ma.validate.Range(1, 500), metadata={"description": "rows per page"})
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
