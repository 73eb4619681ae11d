"""Rows of import files checked with the API's field rules and turned into table rows.

A parser is built once per file from its header (which it checks) and called once per row:
`parse(cells, problems)` returns the table row and adds each broken rule to `problems` as
(column, reason). Cells are text in CSV files and typed values in Parquet files; both are
accepted where the API would accept the same value in JSON.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import marshmallow as ma

from decision_server import validation
from decision_server.customers.schemas import CustomerCreateSchema
from decision_server.errors import ImportFileError

Problems = list[tuple[str, str]]
Parser = Callable[[Sequence[Any], Problems], dict[str, Any]]

REQUIRED = {
    "customers": ("external_id",),
    "transactions": ("external_id", "customer_id", "occurred_at", "amount"),
    "touchpoints": ("external_id", "customer_id", "occurred_at", "channel", "kind"),
}
OPTIONAL = {
    "customers": ("first_name", "last_name", "email", "phone", "created_at"),
    "transactions": ("cost", "product", "category", "channel"),
    "touchpoints": ("payload",),
}
CONSENT_PREFIX = "consent_"
_TRUE, _FALSE = frozenset({"true", "1", "yes"}), frozenset({"false", "0", "no"})
_MEMO_LIMIT = 100_000


def row_parser(kind: str, columns: list[str], path: Path) -> Parser:
    """Check a file's header for `kind` rows and return the parser of its rows."""
    if len(set(columns)) != len(columns):
        repeated = sorted({name for name in columns if columns.count(name) > 1})
        raise ImportFileError(f"{path.name}: columns named more than once: {', '.join(repeated)}")
    missing = [name for name in REQUIRED[kind] if name not in columns]
    if missing:
        raise ImportFileError(
            f"{path.name} cannot be imported as {kind}: missing required column(s) "
            f"{', '.join(missing)} (found: {', '.join(columns) or 'none'})"
        )
    # An absent optional column reads the None that ends every row's cells.
    at = {name: columns.index(name) if name in columns else -1 for name in REQUIRED[kind] + OPTIONAL[kind]}
    if kind == "transactions":
        return _transaction_parser(at, Cells())
    if kind == "touchpoints":
        return _touchpoint_parser(at, Cells())
    return _customer_parser(at, columns, Cells(), path)


def _transaction_parser(at: dict[str, int], check: Cells) -> Parser:
    i_id, i_customer, i_time, i_amount = at["external_id"], at["customer_id"], at["occurred_at"], at["amount"]
    i_cost, i_product, i_category, i_channel = at["cost"], at["product"], at["category"], at["channel"]
    external_id, timestamp, money, text, code = check.external_id, check.timestamp, check.money, check.text, check.code

    def parse(cells: Sequence[Any], problems: Problems) -> dict[str, Any]:
        return {
            "external_id": external_id(cells[i_id], "external_id", problems),
            "customer_id": external_id(cells[i_customer], "customer_id", problems),
            "occurred_at": timestamp(cells[i_time], "occurred_at", problems, True),
            "amount_cents": money(cells[i_amount], "amount", problems, True),
            "cost_cents": money(cells[i_cost], "cost", problems, False),
            "product": text(cells[i_product], "product", problems, 100),
            "category": code(cells[i_category], "category", problems, False),
            "channel": code(cells[i_channel], "channel", problems, False),
        }

    return parse


def _touchpoint_parser(at: dict[str, int], check: Cells) -> Parser:
    i_id, i_customer, i_time = at["external_id"], at["customer_id"], at["occurred_at"]
    i_channel, i_kind, i_payload = at["channel"], at["kind"], at["payload"]
    external_id, timestamp, code, document = check.external_id, check.timestamp, check.code, check.document

    def parse(cells: Sequence[Any], problems: Problems) -> dict[str, Any]:
        return {
            "external_id": external_id(cells[i_id], "external_id", problems),
            "customer_id": external_id(cells[i_customer], "customer_id", problems),
            "occurred_at": timestamp(cells[i_time], "occurred_at", problems, True),
            "channel": code(cells[i_channel], "channel", problems, True),
            "kind": code(cells[i_kind], "kind", problems, True),
            "payload": document(cells[i_payload], "payload", problems),
        }

    return parse


def _customer_parser(at: dict[str, int], columns: list[str], check: Cells, path: Path) -> Parser:
    if "" in columns:
        raise ImportFileError(f"{path.name}: column {columns.index('') + 1} has no name")
    known = set(REQUIRED["customers"] + OPTIONAL["customers"])
    consent = [(name, i, name.removeprefix(CONSENT_PREFIX)) for i, name in enumerate(columns) if name.startswith(CONSENT_PREFIX)]
    attributes = [(name, i) for i, name in enumerate(columns) if name not in known and not name.startswith(CONSENT_PREFIX)]
    for name, _, channel in consent:
        problem = validation.check_code(channel)
        if problem:
            raise ImportFileError(f"{path.name}: column {name} does not name a channel: {problem}")
    # The other columns become the keys of attributes: hold them to the rules of attributes.
    problem = validation.check_json_document({name: "" for name, _ in attributes})
    if problem:
        raise ImportFileError(f"{path.name}: the columns that become attributes break a rule: {problem}")
    fields = CustomerCreateSchema().fields  # email and phone: the API schema's own fields
    email, phone = fields["email"], fields["phone"]

    def parse(cells: Sequence[Any], problems: Problems) -> dict[str, Any]:
        row = {
            "external_id": check.external_id(cells[at["external_id"]], "external_id", problems),
            "first_name": check.text(cells[at["first_name"]], "first_name", problems, 100),
            "last_name": check.text(cells[at["last_name"]], "last_name", problems, 100),
            "email": check.with_field(email, cells[at["email"]], "email", problems),
            "phone": check.with_field(phone, cells[at["phone"]], "phone", problems),
            "created_at": check.timestamp(cells[at["created_at"]], "created_at", problems, False),
            "consent": {},
            "attributes": {},
        }
        for name, i, channel in consent:
            value = check.boolean(cells[i], name, problems)
            if value is not None:
                row["consent"][channel] = value
        for name, i in attributes:
            value = check.attribute(cells[i], name, problems)
            if value is not None:
                row["attributes"][name] = value
        return row

    return parse


class Cells:
    """The field rules applied to cells; each returns the value to store (None if empty or bad)."""

    def __init__(self) -> None:
        # Codes and amounts repeat row after row: check each spelling once.
        self._codes: dict[str, str | None] = {}
        self._money: dict[str, int | str] = {}

    @staticmethod
    def _text(value: Any, field: str, problems: Problems, required: bool) -> str | None:
        if value is None or value == "":
            if required:
                problems.append((field, "required"))
            return None
        if type(value) is str:
            return value
        if isinstance(value, int) and not isinstance(value, bool):  # Parquet integer ids
            return str(value)
        problems.append((field, "must be text"))
        return None

    def _checked(self, value: Any, field: str, problems: Problems, required: bool, check) -> str | None:
        """Turn a cell into text (or note it missing) and note what `check` says is wrong with it."""
        if type(value) is not str or not value:
            value = self._text(value, field, problems, required)
            if value is None:
                return None
        problem = check(value)
        if problem:
            problems.append((field, problem))
        return value

    def external_id(self, value: Any, field: str, problems: Problems) -> str | None:
        """Check a required id."""
        return self._checked(value, field, problems, True, validation.check_external_id)

    def code(self, value: Any, field: str, problems: Problems, required: bool) -> str | None:
        """Check a lowercase code (channel, kind, category)."""
        return self._checked(value, field, problems, required, self._code_problem)

    def _code_problem(self, value: str) -> str | None:
        # A file repeats a handful of codes a million times: remember each verdict.
        problem = self._codes.get(value, "")
        if problem == "":
            problem = validation.check_code(value)
            if len(self._codes) < _MEMO_LIMIT:
                self._codes[value] = problem
        return problem

    def text(self, value: Any, field: str, problems: Problems, max_len: int) -> str | None:
        """Check optional free text."""
        return self._checked(value, field, problems, False, lambda text: validation.check_text(text, max_len))

    def with_field(self, schema_field: ma.fields.Field, value: Any, field: str, problems: Problems) -> Any:
        """Check optional text with a field of an API schema."""
        value = self._text(value, field, problems, False)
        if value is None:
            return None
        try:
            return schema_field.deserialize(value)
        except ma.ValidationError as exc:
            messages = exc.messages if isinstance(exc.messages, list) else [exc.messages]
            problems.append((field, "; ".join(map(str, messages))))
            return None

    def money(self, value: Any, field: str, problems: Problems, required: bool) -> int | None:
        """Parse an amount into cents."""
        if type(value) is str and value:
            cents = self._money.get(value)
            if cents is None:
                cents = _cents(value)
                if len(self._money) < _MEMO_LIMIT:
                    self._money[value] = cents
        elif value is None or value == "":
            if required:
                problems.append((field, "required"))
            return None
        elif isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
            cents = _cents(value)
        else:
            cents = "must be a number or a decimal string"
        if type(cents) is int:
            return cents
        problems.append((field, cents))
        return None

    @staticmethod
    def timestamp(value: Any, field: str, problems: Problems, required: bool) -> dt.datetime | None:
        """Parse an ISO 8601 time (naive means UTC) of something that happened: never in the future."""
        if value is None or value == "":
            if required:
                problems.append((field, "required"))
            return None
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            value = value.isoformat()
        elif not isinstance(value, (str, dt.datetime)):
            problems.append((field, "must be an ISO 8601 date-time string"))
            return None
        try:
            return validation.parse_event_time(value)
        except ValueError as exc:
            problems.append((field, str(exc)))
            return None

    @staticmethod
    def document(value: Any, field: str, problems: Problems) -> dict[str, Any]:
        """Parse an optional JSON object (text in CSV, text or a struct in Parquet)."""
        if value is None or value == "":
            return {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except (ValueError, RecursionError):
                problems.append((field, "not valid JSON"))
                return {}
        if not isinstance(value, dict):
            problems.append((field, "must be a JSON object"))
            return {}
        problem = validation.check_json_document(value)
        if problem:
            problems.append((field, problem))
        return value

    @staticmethod
    def boolean(value: Any, field: str, problems: Problems) -> bool | None:
        """Parse an optional yes/no cell; empty means unknown."""
        if value is None or value == "" or isinstance(value, bool):
            return value if isinstance(value, bool) else None
        word = str(value).strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        problems.append((field, "must be true/false, 1/0 or yes/no (empty: unknown)"))
        return None

    @staticmethod
    def attribute(value: Any, field: str, problems: Problems) -> str | None:
        """Check an optional attribute value; Parquet numbers, flags and dates become text."""
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (int, float, Decimal)):
            value = str(value)
        elif isinstance(value, dt.date):
            value = value.isoformat()
        elif not isinstance(value, str):
            problems.append((field, "must be text"))
            return None
        problem = validation.check_json_document(value)
        if problem:
            problems.append((field, problem))
            return None
        return value


def _cents(value: Any) -> int | str:
    """Return the amount in cents, or the reason it is not an amount."""
    try:
        return validation.parse_money_cents(value, allow_negative=True)  # transactions only: a refund
    except ValueError as exc:
        return str(exc)
