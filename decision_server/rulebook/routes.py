"""HTTP routes for rules: status, revisions, diffs, drafts, publish, rollback, cases and evaluation."""

from __future__ import annotations

from flask import current_app, g
from flask.views import MethodView

from decision_server.auth.roles import Permission, requires
from decision_server.rulebook import schemas, service
from decision_server.schemas import page_response
from decision_server.throttle import expensive
from decision_server.web import Blueprint, transaction

blp = Blueprint("rules", __name__, url_prefix="/rules", description="Rule revisions: validate, publish, roll back, test")


def _rulebook():
    return current_app.extensions["rulebook"]


def _author() -> str:
    return f"key:{g.principal.name}"


def _newest_first(query: dict, fetch, position) -> dict:
    """Fetch one page of a newest-first list after the query's cursor."""
    before = query["cursor"][0] if query.get("cursor") else None
    with transaction() as session:
        rows = fetch(session, limit=query["limit"] + 1, before_id=before)
    return page_response(rows, query["limit"], position=position)


@blp.route("")
class Status(MethodView):
    @requires(Permission.RULES_READ)
    @blp.response(200, schemas.StatusSchema)
    def get(self):
        """Show the revision serving here, the last publication, the rules folder and the rule sets."""
        rulebook = _rulebook()
        return {**rulebook.status(), "rulesets": service.summaries(rulebook.current)}


@blp.route("/revisions")
class Revisions(MethodView):
    @requires(Permission.RULES_READ)
    @blp.arguments(schemas.RevisionPageQuery, location="query")
    @blp.response(200, schemas.RevisionPageSchema)
    def get(self, query):
        """List stored revisions, newest first."""
        return _newest_first(query, service.list_revisions, lambda r: (r.id,))


@blp.route("/revisions/<revision:revision>")
class Revision(MethodView):
    @requires(Permission.RULES_READ)
    @blp.response(200, schemas.RevisionSchema)
    def get(self, revision):
        """Show one revision with the content of its files (a hash or a prefix of 6+ characters)."""
        with transaction() as session:
            return service.find_revision(session, revision)


@blp.route("/revisions/<revision:revision>/diff")
class RevisionDiff(MethodView):
    @requires(Permission.RULES_READ)
    @blp.arguments(schemas.DiffQuerySchema, location="query")
    @blp.response(200, schemas.DiffSchema)
    def get(self, query, revision):
        """Show what changes from `against` (default: the revision serving) to this revision."""
        with transaction() as session:
            return service.diff_revisions(session, _rulebook().current, revision, query.get("against"))


@blp.route("/publications")
class Publications(MethodView):
    @requires(Permission.RULES_READ)
    @blp.arguments(schemas.RevisionPageQuery, location="query")
    @blp.response(200, schemas.PublicationPageSchema)
    def get(self, query):
        """List publications and rollbacks, newest first."""
        return _newest_first(query, service.list_publications, lambda r: (r.publication_id,))


@blp.route("/validate")
class Validate(MethodView):
    @requires(Permission.RULES_READ)
    @expensive
    @blp.arguments(schemas.DraftSchema)
    @blp.response(200, schemas.ValidationResultSchema)
    def post(self, body):
        """Check a draft as a whole (every file, every case, every backend) without publishing it."""
        return service.validate_draft(_rulebook(), service.draft_files(_rulebook().current, body))


@blp.route("/publish")
class Publish(MethodView):
    @requires(Permission.RULES_WRITE)
    @expensive
    @blp.arguments(schemas.PublishSchema)
    @blp.response(200, schemas.PublishResultSchema)
    def post(self, body):
        """Validate and publish a draft; every server serves it within seconds. Refused drafts change nothing."""
        files = service.draft_files(_rulebook().current, body)
        head, changed = _rulebook().publish(files, author=_author(), message=body["message"], source="api")
        return {**vars(head), "changed": changed, "warnings": [p.to_dict() for p in _rulebook().current.warnings]}


@blp.route("/rollback")
class Rollback(MethodView):
    @requires(Permission.RULES_WRITE)
    @expensive
    @blp.arguments(schemas.RollbackSchema)
    @blp.response(200, schemas.PublishResultSchema)
    def post(self, body):
        """Publish an earlier revision again (default: the one before the current)."""
        head, changed = service.rollback(
            _rulebook(), revision=body.get("revision"), author=_author(), message=body["message"], source="api"
        )
        return {**vars(head), "changed": changed, "warnings": []}


@blp.route("/test")
class Test(MethodView):
    @requires(Permission.RULES_READ)
    @expensive
    @blp.response(200, schemas.TestRunSchema)
    def post(self):
        """Run every case of the serving revision on every backend."""
        return service.test_report(_rulebook().current)


@blp.route("/evaluate")
class Evaluate(MethodView):
    @requires(Permission.RULES_READ)
    @blp.arguments(schemas.EvaluateSchema)
    @blp.response(200, schemas.EvaluationSchema)
    def post(self, body):
        """Evaluate one rule set of the serving revision for example inputs, with the explanation."""
        now = body["now"].timestamp() if body.get("now") else None
        return _rulebook().current.evaluate(body["ruleset"], body["inputs"], now=now, backend=body.get("backend")).to_dict()
