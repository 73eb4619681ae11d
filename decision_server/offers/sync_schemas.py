"""Marshmallow schemas of the catalog sync API: connectors and sync runs."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from decision_server.offers import connectors
from decision_server.offers.sync import STATUSES
from decision_server.schemas import Cursor, JsonDocument, PageQuery, Pattern, StrictBoolean, page_of

_NAME = Pattern(connectors.NAME, error="lower-case letters, digits and _, starting with a letter, at most 32")
_PATH = Pattern(connectors.PATH, error="a dotted path such as data.items or pricing.value")


class _Common(ma.Schema):
    """The fields a connector is made of; the service checks them again, as a whole, when saved."""

    class Meta:
        unknown = ma.RAISE

    url = fields.String(
        validate=ma.validate.Length(1, 2000),
        metadata={"description": "http(s) URL of the first page", "example": "https://catalog.example.com/v2/offers"},
    )
    auth_header = fields.String(
        allow_none=True, metadata={"description": "header that carries the secret; null: no auth", "example": "Authorization"}
    )
    auth_env = fields.String(
        allow_none=True,
        metadata={
            "description": "NAME of the server's environment variable holding the header's value (e.g. `Bearer abc`); "
            "the secret itself is never stored, logged or returned",
            "example": "CATALOG_TOKEN",
        },
    )
    items_path = fields.String(
        validate=ma.validate.Length(max=200),
        metadata={
            "description": "dotted path of the list of items in a page; empty: the body is the list",
            "example": "data.items",
        },
    )
    next_path = fields.String(
        allow_none=True,
        validate=_PATH,
        metadata={"description": "dotted path of the next page's URL (same site); null: one page", "example": "links.next"},
    )
    mapping = fields.Dict(
        keys=fields.String(),
        values=fields.String(validate=_PATH),
        metadata={
            "description": "offer field (or treatments.<channel>.<field>) → dotted path in an upstream item; "
            "external_id, code and name are required",
            "example": {
                "external_id": "id",
                "code": "sku",
                "name": "title",
                "business_value": "pricing.margin",
                "treatments.sms.text": "sms_text",
            },
        },
    )
    defaults = JsonDocument(
        metadata={
            "description": "offer fields the upstream does not carry",
            "example": {"category": "upsell", "business_value": 5},
        }
    )
    timeout_seconds = fields.Float(
        validate=ma.validate.Range(*connectors.TIMEOUT_SECONDS), allow_nan=False, metadata={"description": "per request"}
    )
    retries = fields.Integer(
        strict=True,
        validate=ma.validate.Range(*connectors.RETRIES),
        metadata={"description": "retries of a timeout, lost connection, 5xx or 429, with backoff"},
    )
    max_retire_fraction = fields.Float(
        validate=ma.validate.Range(0, 1),
        allow_nan=False,
        metadata={"description": "a run that would retire more than this share of the connector's live offers writes nothing"},
    )
    schedule = fields.String(
        allow_none=True, metadata={"description": "cron expression for the scheduler; null: by hand", "example": "0 * * * *"}
    )
    enabled = StrictBoolean(metadata={"description": "false: the connector cannot sync"})


class ConnectorInSchema(_Common):
    """A new connector."""

    name = fields.String(
        required=True,
        validate=_NAME,
        metadata={"description": "also the external_system of the offers it brings in", "example": "acme_catalog"},
    )
    # The same descriptions and examples as _Common's, so that a client (and the spec's example request) has them.
    url = fields.String(required=True, validate=ma.validate.Length(1, 2000), metadata=_Common._declared_fields["url"].metadata)
    mapping = fields.Dict(
        keys=fields.String(),
        values=fields.String(validate=_PATH),
        required=True,
        metadata=_Common._declared_fields["mapping"].metadata,
    )


class ConnectorPatchSchema(_Common):
    """Fields to change; the name cannot change (it is the external_system of the connector's offers)."""


class ConnectorSchema(ma.Schema):
    name = fields.String()
    url = fields.String()
    auth_header = fields.String(allow_none=True)
    auth_env = fields.String(allow_none=True)
    items_path = fields.String()
    next_path = fields.String(allow_none=True)
    mapping = fields.Dict()
    defaults = fields.Dict()
    timeout_seconds = fields.Float()
    retries = fields.Integer()
    max_retire_fraction = fields.Float()
    schedule = fields.String(allow_none=True)
    enabled = fields.Boolean()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class SyncFailureSchema(ma.Schema):
    external_id = fields.String(allow_none=True)
    reason = fields.String()


class SyncRunSchema(ma.Schema):
    id = fields.Integer()
    connector = fields.String()
    status = fields.String(
        metadata={
            "description": "succeeded; partial: some items failed, the others were written; "
            "failed: nothing was written (see error)"
        }
    )
    started_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    created = fields.Integer()
    updated = fields.Integer()
    unchanged = fields.Integer()
    retired = fields.Integer(metadata={"description": "offers the upstream no longer lists (status set to retired)"})
    failed = fields.Integer(metadata={"description": "items not written; `failures` says why (the first 500)"})
    failures = fields.List(fields.Nested(SyncFailureSchema))
    error = fields.String(allow_none=True, metadata={"description": "why a failed run wrote nothing"})
    attempts = fields.Integer(metadata={"description": "HTTP requests made, retries included"})
    actor = fields.String(allow_none=True)


SyncRunPageSchema = page_of(SyncRunSchema, "SyncRunPage")


class SyncRunQuery(PageQuery):
    cursor = Cursor(timed=True, metadata={"description": "next_cursor of the previous page"})

    connector = fields.String(validate=_NAME)
    status = fields.String(validate=ma.validate.OneOf(STATUSES))
