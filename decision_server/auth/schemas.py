"""Request and response schemas for API keys."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from decision_server.auth.roles import Role
from decision_server.schemas import Text


class KeyCreateSchema(ma.Schema):
    """A new key: who it is for and what it may do."""

    name = Text(100, required=True, validate=ma.validate.Length(min=1), metadata={"example": "mobile-app"})
    role = fields.String(required=True, validate=ma.validate.OneOf([r.value for r in Role]))


class KeySchema(ma.Schema):
    """A key as listed: never its secret."""

    id = fields.Integer()
    name = fields.String()
    role = fields.String()
    prefix = fields.String(metadata={"description": "the visible start of the key, ds_<prefix>_..."})
    created_at = fields.DateTime()
    revoked_at = fields.DateTime(allow_none=True)


class NewKeySchema(KeySchema):
    """A created key with its secret, shown this once."""

    key = fields.String(metadata={"description": "send as `Authorization: Bearer <key>`; not shown again"})


class KeyQuerySchema(ma.Schema):
    """Options for listing keys."""

    include_revoked = fields.Boolean(load_default=False)
