"""HTTP routes of segments under /api/v1/segments: definitions, members, sizes over time, recompute."""

from __future__ import annotations

from flask import current_app, g
from flask.views import MethodView

from decision_server.auth.roles import Permission, requires
from decision_server.db import utcnow
from decision_server.jobs import passes
from decision_server.schemas import page_response
from decision_server.segments import schemas, service
from decision_server.throttle import expensive
from decision_server.web import Blueprint, transaction

blp = Blueprint(
    "segments",
    __name__,
    url_prefix="/segments",
    description="Segments defined by a rule condition: members, sizes over time, recompute",
)


def _rules():
    return current_app.extensions["rulebook"].current


def _models():
    return current_app.extensions["models"].current


@blp.route("")
class Segments(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @blp.response(200, schemas.SegmentListSchema)
    def get(self):
        """List the segments with their member counts, and the inputs a condition may read."""
        with transaction() as session:
            return service.list_segments(session, rules=_rules())

    @requires(Permission.ANALYTICS_WRITE)
    @expensive
    @blp.arguments(schemas.SegmentInSchema)
    @blp.response(201, schemas.SegmentSchema)
    def post(self, body):
        """Define a segment; the condition is checked first, then every customer's membership is computed."""
        with transaction(write=True) as session:
            return service.define_segment(
                session, **body, actor=f"key:{g.principal.name}", rules=_rules(), models=_models(), now=utcnow()
            )


@blp.route("/<string:name>")
class Segment(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @blp.response(200, schemas.SegmentSchema)
    def get(self, name):
        """Show a segment and its member count."""
        with transaction() as session:
            return service.get_segment(session, name=name)

    @requires(Permission.ANALYTICS_WRITE)
    @expensive
    @blp.arguments(schemas.SegmentPatchSchema)
    @blp.response(200, schemas.SegmentSchema)
    def patch(self, body, name):
        """Change a segment's description, condition or active flag; members are recomputed when it matters."""
        with transaction(write=True) as session:
            return service.change_segment(session, name=name, changes=body, rules=_rules(), models=_models(), now=utcnow())

    @requires(Permission.ANALYTICS_WRITE)
    @blp.response(204)
    def delete(self, name):
        """Delete a segment, its members and its size history."""
        with transaction(write=True) as session:
            service.delete_segment(session, name=name)


@blp.route("/<string:name>/members")
class Members(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @blp.arguments(schemas.MemberQuerySchema, location="query")
    @blp.response(200, schemas.MemberPageSchema)
    def get(self, query, name):
        """List a segment's members (customer ids), in customer id order, with when they joined; filter by stage, value segment, id or name."""
        after = query["cursor"][0] if query.get("cursor") else None
        filters = {k: query[k] for k in service.MEMBER_FILTERS if k in query}
        service.check_member_filters(_rules(), **{k: v for k, v in filters.items() if k != "q"})
        with transaction() as session:
            items = service.members(session, name=name, limit=query["limit"] + 1, after_id=after, **filters)
        return page_response(items, query["limit"], position=lambda item: (item["cid"],))


@blp.route("/<string:name>/counts")
class Counts(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @blp.response(200, schemas.CountListSchema)
    def get(self, name):
        """A segment's size after each full recompute, oldest first (at most the last 1,000)."""
        with transaction() as session:
            return {"items": service.sizes(session, name=name)}


@blp.route("/recompute")
class Recompute(MethodView):
    @requires(Permission.ANALYTICS_WRITE)
    @expensive
    @blp.response(200, schemas.RecomputeSchema)
    def post(self):
        """Recompute every customer's membership of every active segment, and record the sizes."""
        return {"sizes": passes.recompute_segments(current_app.extensions["database"], _rules(), _models())}
