"""Field rules shared by the API schemas and the bulk importer, so both accept the same data."""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from decision_server.db import UTC, to_utc, utcnow

EXTERNAL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")
EXTERNAL_ID_RULE = "1-64 characters: letters, digits and . _ : @ -, starting with a letter or digit"
CODE_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
CODE_RULE = "lowercase identifier: a-z, 0-9 and _, starting with a letter, at most 32 characters"
# One line of printable text (a rule condition): no control characters (C0, DEL, C1), line or
# paragraph separators, or the non-characters U+FFFE/U+FFFF, all of which the YAML reader under the
# rule language refuses (so does it lone surrogates, which web.JsonParser refuses in any request).
# Spelt with escapes so that the OpenAPI pattern is the same regex.
ONE_LINE_RE = re.compile(r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029\ufffe\uffff]*$")
ONE_LINE_RULE = "one line of printable characters (no control characters or line separators)"

# A single purchase above this is a data error, not a sale (and keeps cents within 64 bits).
MAX_AMOUNT = Decimal("100000000.00")
# An amount sent as a string, exactly as the spec's pattern states it: at most MAX_AMOUNT, two decimals.
MONEY_RE = re.compile(r"^(?:100000000(?:\.0{1,2})?|[0-9]{1,8}(?:\.[0-9]{1,2})?)$")
SIGNED_MONEY_RE = re.compile(r"^-?(?:100000000(?:\.0{1,2})?|[0-9]{1,8}(?:\.[0-9]{1,2})?)$")
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=UTC)
LATEST = dt.datetime(2100, 1, 1, tzinfo=UTC)
# A time over the API, exactly: a real date in the years 1970-2099 (Feb 29 in leap years only),
# optionally a time (seconds and up to 6 decimals optional), optionally an offset. One regex that
# the spec publishes as the field's pattern and the server matches first, so that any string the
# spec allows parses. (The bulk importer reads any ISO 8601 time Python reads, in the same years.)
_YEAR = r"(?:19[7-9][0-9]|20[0-9]{2})"
_LEAP = r"(?:19(?:7[26]|8[048]|9[26])|20(?:[02468][048]|[13579][26]))"
_DATE = (
    rf"(?:{_YEAR}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)"
    rf"|{_LEAP}-02-29)"
)
_TIME = r"[Tt ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?"
TIMESTAMP_RE = re.compile(rf"^{_DATE}(?:{_TIME})?$")
TIMESTAMP_RULE = "an ISO 8601 date or date-time in the years 1970 to 2099, e.g. 2026-03-01T12:30:00Z"
MAX_JSON_DEPTH = 5
MAX_JSON_KEYS = 100


def check_external_id(value: str) -> str | None:
    """Return a message when `value` is not a valid external id."""
    return None if EXTERNAL_ID_RE.fullmatch(value) else f"invalid id: {EXTERNAL_ID_RULE}"


def check_code(value: str) -> str | None:
    """Return a message when `value` is not a valid channel/kind/category code."""
    return None if CODE_RE.fullmatch(value) else f"invalid code: {CODE_RULE}"


def check_text(value: str, max_len: int) -> str | None:
    """Return a message when free text is too long or holds characters a database refuses."""
    if len(value) > max_len:
        return f"at most {max_len} characters"
    if "\x00" in value:
        return "must not contain NUL characters"
    return None


def parse_money_cents(value: Any, *, allow_negative: bool = False) -> int:
    """Parse an amount (string or number) into integer cents; raise ValueError with a reason.

    A negative amount is refused unless `allow_negative` (a transaction's: a refund).
    """
    if isinstance(value, float):
        value = repr(value)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError("not a number") from None
    if not amount.is_finite():
        raise ValueError("not a finite number")
    if amount < 0 and not allow_negative:
        raise ValueError("must not be negative")
    if abs(amount) > MAX_AMOUNT:
        raise ValueError(f"must be at most {MAX_AMOUNT}" + (f" and at least -{MAX_AMOUNT}" if allow_negative else ""))
    if amount != amount.quantize(Decimal("0.01")):
        raise ValueError("at most 2 decimal places")
    return int(amount * 100)


def cents_to_decimal(cents: int | None) -> Decimal | None:
    """Turn integer cents back into an exact Decimal amount."""
    return None if cents is None else (Decimal(cents) / 100).quantize(Decimal("0.01"))


def parse_timestamp(value: Any) -> dt.datetime:
    """Parse an ISO 8601 time (naive means UTC) written in the years 1970-2099; raise ValueError with a reason.

    The year is checked as written, before the offset is applied, so that the spec can state the
    rule as a pattern (TIMESTAMP_YEARS): 2099-12-31T23:00:00-05:00 is in 2100 UTC, and accepted.
    """
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        text = str(value).strip().upper()  # RFC 3339 allows a lower-case t and z
        try:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("not an ISO 8601 date-time, e.g. 2026-03-01T12:30:00Z") from None
    if not EARLIEST.year <= parsed.year < LATEST.year:
        raise ValueError(f"must be in the years {EARLIEST.year} to {LATEST.year - 1}")
    return to_utc(parsed)


# How far ahead of the server's clock an event's time may be (a till whose clock runs fast).
CLOCK_SKEW = dt.timedelta(minutes=5)


def parse_event_time(value: Any) -> dt.datetime:
    """Parse when something happened: as parse_timestamp, and not in the future.

    A future time would count in the customer's state row at once but in no feature as of now,
    and would make "days since the last purchase" negative.
    """
    parsed = parse_timestamp(value)
    if parsed > utcnow() + CLOCK_SKEW:
        raise ValueError(
            f"is in the future; send the time it happened (clocks may differ by up to {CLOCK_SKEW.seconds // 60} minutes)"
        )
    return parsed


def check_json_document(value: Any, *, depth: int = 0) -> str | None:
    """Return a message when a free JSON document is too deep, too wide or holds NUL characters."""
    if depth > MAX_JSON_DEPTH:
        return f"nested deeper than {MAX_JSON_DEPTH} levels"
    if isinstance(value, dict):
        if len(value) > MAX_JSON_KEYS:
            return f"more than {MAX_JSON_KEYS} keys"
        for key, item in value.items():
            if "\x00" in key or len(key) > 100:
                return "keys must be at most 100 characters without NUL characters"
            problem = check_json_document(item, depth=depth + 1)
            if problem:
                return problem
    elif isinstance(value, list):
        if len(value) > MAX_JSON_KEYS:
            return f"lists of more than {MAX_JSON_KEYS} items"
        for item in value:
            problem = check_json_document(item, depth=depth + 1)
            if problem:
                return problem
    elif isinstance(value, str):
        return check_text(value, 2000)
    elif isinstance(value, float) and not math.isfinite(value):
        return "numbers must be finite (no NaN or Infinity)"
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        return "integers beyond +/-2^53 lose precision in JSON"
    return None
