"""Marshmallow schemas of the offer catalog API (and of the offers a catalog sync brings in)."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from decision_server.schemas import JsonDocument, PageQuery, Pattern, Text, Timestamp, page_of

STATUSES = ("draft", "active", "paused", "retired")
_CODE = Pattern(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", error="letters, digits, _ . -; at most 64, starting with a letter or digit")
_NAME = Pattern(r"^[a-z][a-z0-9_]{0,31}$", error="lower-case letters, digits and _, starting with a letter")


class _Common(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    name = Text(200, validate=ma.validate.Length(min=1), metadata={"example": "Upgrade to Unlimited Data"})
    description = Text(2000)
    category = fields.String(
        validate=_NAME,
        metadata={"description": "marketing kind: one of the offer rule file's `offer.category` values", "example": "upsell"},
    )
    product_category = fields.String(
        allow_none=True,
        validate=_NAME,
        metadata={
            "description": "product category sold (its NBO score is part of the propensity); null: none",
            "example": "data_bundle",
        },
    )
    target_stages = fields.List(
        fields.String(validate=_NAME),
        validate=ma.validate.Length(max=20),
        metadata={"description": "lifecycle stages the offer is for; empty: any"},
    )
    target_segments = fields.List(
        fields.String(validate=_NAME),
        validate=ma.validate.Length(max=20),
        metadata={"description": "value segments the offer is for; empty: any"},
    )
    business_value = fields.Float(
        validate=ma.validate.Range(min=0, max=1e9, min_inclusive=False),
        allow_nan=False,
        metadata={"description": "margin or any positive number the business sets; a factor of the priority", "example": 15},
    )
    points_cost = fields.Integer(validate=ma.validate.Range(0, 10_000_000), strict=True)
    valid_from = Timestamp(allow_none=True)
    valid_to = Timestamp(allow_none=True)
    status = fields.String(validate=ma.validate.OneOf(STATUSES))
    treatments = fields.Dict(
        keys=fields.String(validate=_NAME),
        values=JsonDocument(),
        metadata={
            "description": "channel → treatment: sms {text ≤ 160 with placeholders}, "
            "card {title, body, image_url, deep_link}, script {script}; "
            "placeholders: {first_name} {last_name} {offer_name} {offer_code} {points_cost}"
        },
    )
    external_id = fields.String(allow_none=True, validate=ma.validate.Length(1, 100))
    external_system = fields.String(allow_none=True, validate=_NAME)

    @ma.validates_schema
    def _window(self, data, **kwargs):
        start, end = data.get("valid_from"), data.get("valid_to")
        if start is not None and end is not None and end <= start:
            raise ma.ValidationError("must be after valid_from", field_name="valid_to")


class OfferInSchema(_Common):
    """A new offer; `id` may be given (the demo catalog's 0-7), otherwise the server picks one."""

    id = fields.Integer(strict=True, validate=ma.validate.Range(0, 2**31 - 1))
    code = fields.String(required=True, validate=_CODE, metadata={"example": "UPSELL_UNLIMITED"})
    name = Text(200, required=True, validate=ma.validate.Length(min=1))
    category = fields.String(required=True, validate=_NAME)
    business_value = fields.Float(required=True, validate=ma.validate.Range(min=0, max=1e9, min_inclusive=False), allow_nan=False)
    description = Text(2000, load_default="")
    product_category = fields.String(allow_none=True, validate=_NAME, load_default=None)
    target_stages = fields.List(fields.String(validate=_NAME), validate=ma.validate.Length(max=20), load_default=list)
    target_segments = fields.List(fields.String(validate=_NAME), validate=ma.validate.Length(max=20), load_default=list)
    points_cost = fields.Integer(validate=ma.validate.Range(0, 10_000_000), strict=True, load_default=0)
    status = fields.String(validate=ma.validate.OneOf(STATUSES), load_default="active")
    treatments = fields.Dict(keys=fields.String(validate=_NAME), values=JsonDocument(), load_default=dict)


class OfferPatchSchema(_Common):
    """Fields to change; a field left out keeps its value."""

    code = fields.String(validate=_CODE)


class OfferSchema(ma.Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    description = fields.String()
    category = fields.String()
    product_category = fields.String(allow_none=True)
    target_stages = fields.List(fields.String())
    target_segments = fields.List(fields.String())
    business_value = fields.Float()
    points_cost = fields.Integer()
    valid_from = fields.DateTime(allow_none=True)
    valid_to = fields.DateTime(allow_none=True)
    status = fields.String()
    treatments = fields.Dict()
    external_id = fields.String(allow_none=True)
    external_system = fields.String(allow_none=True)
    last_synced_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


OfferPageSchema = page_of(OfferSchema, "OfferPage")


class OfferQuery(PageQuery):
    status = fields.String(validate=ma.validate.OneOf(STATUSES))
    category = fields.String(validate=_NAME)
    stage = fields.String(validate=_NAME, metadata={"description": "offers for this lifecycle stage (or any stage)"})
    segment = fields.String(validate=_NAME, metadata={"description": "offers for this value segment (or any segment)"})
    external_system = fields.String(validate=_NAME)
