"""HTTP routes for API keys (admin only)."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from decision_server.auth import schemas, service
from decision_server.auth.roles import Permission, requires
from decision_server.web import Blueprint, transaction

blp = Blueprint("keys", __name__, url_prefix="/keys", description="API keys and their roles")


@blp.route("")
class Keys(MethodView):
    @requires(Permission.KEYS_MANAGE)
    @blp.arguments(schemas.KeyQuerySchema, location="query")
    @blp.response(200, schemas.KeySchema(many=True))
    def get(self, query):
        """List API keys (never their secrets)."""
        with transaction() as session:
            return service.list_keys(session, include_revoked=query["include_revoked"])

    @requires(Permission.KEYS_MANAGE)
    @blp.arguments(schemas.KeyCreateSchema)
    @blp.response(201, schemas.NewKeySchema)
    def post(self, body):
        """Create an API key; its secret is in this response only."""
        with transaction(write=True) as session:
            new = service.create_key(session, name=body["name"], role=body["role"])
        return {**vars(new.record), "key": new.secret}


@blp.route("/<id:key_id>")
class Key(MethodView):
    @requires(Permission.KEYS_MANAGE)
    @blp.response(200, schemas.KeySchema)
    def delete(self, key_id):
        """Revoke an API key; it stops working at once."""
        with transaction(write=True) as session:
            record = service.revoke_key(session, key_id=key_id)
        current_app.extensions["key_cache"].forget(key_id)
        return record
