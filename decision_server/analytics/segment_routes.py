"""HTTP routes for segments: definitions, members, sizes over time, recompute."""

from __future__ import annotations

import marshmallow as ma
import sqlalchemy as sa
from flask import current_app, g
from flask.views import MethodView
from marshmallow import fields

from decision_server.analytics import segments
from decision_server.analytics.records import (
    SegmentCountRecord,
    SegmentMemberRecord,
    SegmentRecord,
)
from decision_server.auth.roles import Permission, requires
from decision_server.customers.records import CustomerRecord
from decision_server.db import utcnow
from decision_server.errors import Conflict, NotFound
from decision_server.jobs import passes
from decision_server.schemas import (
    JsonDocument,
    PageQuery,
    Pattern,
    StrictBoolean,
    Text,
    page_of,
    page_response,
)
from decision_server.throttle import expensive
from decision_server.validation import ONE_LINE_RE, ONE_LINE_RULE
from decision_server.web import Blueprint, transaction

blp = Blueprint(
    "segments",
    __name__,
    url_prefix="/segments",
    description="Segments defined by a rule condition: members, sizes over time, recompute",
)

_s = SegmentRecord.__table__
_m = SegmentMemberRecord.__table__
_n = SegmentCountRecord.__table__
_c = CustomerRecord.__table__
_NAME_RULE = Pattern(segments.NAME, error="lower-case letters, digits and _, starting with a letter, at most 64")
# In the schema as well as in compile_condition, so that the OpenAPI spec states it.
_CONDITION_RULE = [ma.validate.Length(min=1), Pattern(ONE_LINE_RE, error=f"must be {ONE_LINE_RULE}")]


class SegmentInSchema(ma.Schema):
    name = fields.String(required=True, validate=_NAME_RULE, metadata={"example": "growth_at_risk"})
    description = Text(500, load_default="")
    condition = Text(
        2000, required=True, validate=_CONDITION_RULE, metadata={"example": 'stage == "growth" and churn_risk >= 0.6'}
    )


class SegmentPatchSchema(ma.Schema):
    description = Text(500)
    condition = Text(2000, validate=_CONDITION_RULE)
    active = StrictBoolean()


class SegmentSchema(ma.Schema):
    name = fields.String()
    description = fields.String()
    condition = fields.String()
    active = fields.Boolean()
    members = fields.Integer()
    created_by = fields.String()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class SegmentListSchema(ma.Schema):
    items = fields.List(fields.Nested(SegmentSchema))
    inputs = JsonDocument(metadata={"description": "what a condition may read: name → {type, values, description}"})


class MemberSchema(ma.Schema):
    customer_id = fields.String()
    since = fields.DateTime()


MemberPageSchema = page_of(MemberSchema, "SegmentMemberPage")


class CountSchema(ma.Schema):
    at = fields.DateTime()
    members = fields.Integer()


class CountListSchema(ma.Schema):
    items = fields.List(fields.Nested(CountSchema))


class RecomputeSchema(ma.Schema):
    sizes = JsonDocument(metadata={"description": "segment name → members after the recompute"})


def _rules():
    return current_app.extensions["rulebook"].current


def _recompute(only: list[int] | None) -> dict[str, int]:
    return passes.recompute_segments(
        current_app.extensions["database"], _rules(), current_app.extensions["models"].current, only=only
    )


def _find(session, name: str):
    row = session.execute(sa.select(_s).where(_s.c.name == name)).first()
    if row is None:
        message = f"no segment named {name!r}"
        raise NotFound(message, code="segment_not_found", errors={"name": [message]})
    return row


def _with_count(session, row) -> dict:
    members = session.execute(sa.select(sa.func.count()).where(_m.c.segment_id == row.id)).scalar()
    return {**row._mapping, "members": members}


@blp.route("")
class Segments(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @blp.response(200, SegmentListSchema)
    def get(self):
        """List the segments with their member counts, and the inputs a condition may read."""
        with transaction() as session:
            counts = dict(session.execute(sa.select(_m.c.segment_id, sa.func.count()).group_by(_m.c.segment_id)).all())
            rows = session.execute(sa.select(_s).order_by(_s.c.name)).all()
        return {"items": [{**r._mapping, "members": counts.get(r.id, 0)} for r in rows], "inputs": segments.vocabulary(_rules())}

    @requires(Permission.ANALYTICS_WRITE)
    @expensive
    @blp.arguments(SegmentInSchema)
    @blp.response(201, SegmentSchema)
    def post(self, body):
        """Define a segment; the condition is checked first, then every customer's membership is computed."""
        segments.compile_condition(body["name"], body["description"], body["condition"], _rules())
        now = utcnow()
        with transaction(write=True) as session:
            if session.execute(sa.select(_s.c.id).where(_s.c.name == body["name"])).first():
                message = f"a segment named {body['name']!r} exists"
                raise Conflict(message, code="segment_exists", errors={"name": [message]})
            sid = session.execute(
                sa.insert(_s)
                .values(**body, active=True, created_by=f"key:{g.principal.name}", created_at=now, updated_at=now)
                .returning(_s.c.id)
            ).scalar_one()
        _recompute([sid])
        with transaction() as session:
            return _with_count(session, _find(session, body["name"]))


@blp.route("/<string:name>")
class Segment(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @blp.response(200, SegmentSchema)
    def get(self, name):
        """Show a segment and its member count."""
        with transaction() as session:
            return _with_count(session, _find(session, name))

    @requires(Permission.ANALYTICS_WRITE)
    @expensive
    @blp.arguments(SegmentPatchSchema)
    @blp.response(200, SegmentSchema)
    def patch(self, body, name):
        """Change a segment's description, condition or active flag; members are recomputed when it matters."""
        with transaction() as session:
            row = _find(session, name)
        if "condition" in body:
            segments.compile_condition(name, body.get("description", row.description), body["condition"], _rules())
        with transaction(write=True) as session:
            session.execute(sa.update(_s).where(_s.c.id == row.id).values(**body, updated_at=utcnow()))
            if body.get("active") is False:
                session.execute(sa.delete(_m).where(_m.c.segment_id == row.id))
        if "condition" in body or body.get("active") is True:
            _recompute([row.id])
        with transaction() as session:
            return _with_count(session, _find(session, name))

    @requires(Permission.ANALYTICS_WRITE)
    @blp.response(204)
    def delete(self, name):
        """Delete a segment, its members and its size history."""
        with transaction(write=True) as session:
            row = _find(session, name)
            session.execute(sa.delete(_m).where(_m.c.segment_id == row.id))
            session.execute(sa.delete(_n).where(_n.c.segment_id == row.id))
            session.execute(sa.delete(_s).where(_s.c.id == row.id))


@blp.route("/<string:name>/members")
class Members(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @blp.arguments(PageQuery, location="query")
    @blp.response(200, MemberPageSchema)
    def get(self, query, name):
        """List a segment's members (customer ids), in customer id order, with when they joined."""
        with transaction() as session:
            row = _find(session, name)
            select = (
                sa.select(_m.c.customer_id.label("cid"), _c.c.external_id, _m.c.since)
                .join(_c, _c.c.id == _m.c.customer_id)
                .where(_m.c.segment_id == row.id)
            )
            if query.get("cursor"):
                select = select.where(_m.c.customer_id > query["cursor"][0])
            rows = session.execute(select.order_by(_m.c.customer_id).limit(query["limit"] + 1)).all()
        items = [{"customer_id": r.external_id, "since": r.since, "cid": r.cid} for r in rows]
        return page_response(items, query["limit"], position=lambda item: (item["cid"],))


@blp.route("/<string:name>/counts")
class Counts(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @blp.response(200, CountListSchema)
    def get(self, name):
        """A segment's size after each full recompute, oldest first (at most the last 1,000)."""
        with transaction() as session:
            row = _find(session, name)
            rows = session.execute(
                sa.select(_n.c.at, _n.c.members)
                .where(_n.c.segment_id == row.id)
                .order_by(_n.c.at.desc(), _n.c.id.desc())
                .limit(1000)
            ).all()
        return {"items": [dict(r._mapping) for r in reversed(rows)]}


@blp.route("/recompute")
class Recompute(MethodView):
    @requires(Permission.ANALYTICS_WRITE)
    @expensive
    @blp.response(200, RecomputeSchema)
    def post(self):
        """Recompute every customer's membership of every active segment, and record the sizes."""
        return {"sizes": _recompute(None)}
