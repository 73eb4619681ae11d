"""HTTP routes: models (status, cards, versions, promote, rollback) and a customer's scores."""

from __future__ import annotations

import re
from typing import Any

import marshmallow as ma
from flask import current_app, g
from flask.views import MethodView
from marshmallow import fields

from decision_server.auth.roles import Permission, requires
from decision_server.customers.service import get_customer
from decision_server.db import utcnow
from decision_server.errors import NotFound
from decision_server.features import online
from decision_server.features.definition import as_dict
from decision_server.schemas import JsonDocument, Pattern, Text
from decision_server.scoring import store
from decision_server.scoring.specs import BY_NAME, MODELS
from decision_server.throttle import expensive
from decision_server.web import Blueprint, transaction

blp = Blueprint("models", __name__, url_prefix="/models", description="ML models: cards, versions, promote, roll back")
scores = Blueprint(
    "scores",
    __name__,
    url_prefix="/customers",
    description="A customer's model scores, with the versions or fallbacks that made them",
)

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class ModelStatusSchema(ma.Schema):
    """One model as this server runs it."""

    name = fields.String()
    score = fields.String(metadata={"description": "Name of its score in decisions and rule inputs"})
    task = fields.String()
    description = fields.String()
    version = fields.String(allow_none=True, metadata={"description": "Active version (null when none is trained)"})
    fallback = fields.Boolean(metadata={"description": "true: the rule-based fallback scores instead of the model"})
    reason = fields.String(allow_none=True, metadata={"description": "Why the model falls back"})
    fallback_rule = fields.String()
    metrics = JsonDocument(allow_none=True, metadata={"description": "Holdout metrics from the card"})


class ModelListSchema(ma.Schema):
    items = fields.List(fields.Nested(ModelStatusSchema))
    loaded_at = fields.DateTime()


class ModelVersionSchema(ma.Schema):
    version = fields.String()
    active = fields.Boolean()
    created_at = fields.String(allow_none=True)
    problem = fields.String(allow_none=True, metadata={"description": "Why this version could not serve, if it could not"})


class ModelDetailSchema(ModelStatusSchema):
    card = JsonDocument(allow_none=True, metadata={"description": "The active version's card"})
    versions = fields.List(fields.Nested(ModelVersionSchema))
    history = fields.List(JsonDocument(), metadata={"description": "Promotions and rollbacks, newest first"})


class ModelPromoteSchema(ma.Schema):
    version = fields.String(required=True, validate=Pattern(store.VERSION, error="a version looks like 20261121-231500"))
    reason = Text(500, load_default="")


class ModelRollbackSchema(ma.Schema):
    reason = Text(500, load_default="")


class ModelChangeSchema(ma.Schema):
    action = fields.String()
    version = fields.String()
    previous = fields.String(allow_none=True)
    actor = fields.String()
    reason = fields.String()
    at = fields.String()
    model = fields.Nested(ModelStatusSchema)


class ScoresSchema(ma.Schema):
    """A customer's scores from every model, the versions that made them, and the features read."""

    customer_id = fields.String()
    as_of = fields.DateTime()
    scores = JsonDocument(
        metadata={
            "example": {
                "churn_risk": 0.12,
                "propensity_to_buy": 0.4,
                "ltv": 530.0,
                "engagement_score": 61.0,
                "nbo": {"data_bundle": 0.5},
            }
        }
    )
    models = JsonDocument(metadata={"description": "Model name → {version, fallback, reason}"})
    features = JsonDocument()


def _runtime():
    return current_app.extensions["models"]


def _models_dir():
    return current_app.extensions["config"].models_dir


def _status(name: str) -> dict[str, Any]:
    spec = BY_NAME[name]
    status = _runtime().current.statuses[name]
    card = status.card or {}
    return {
        "name": name,
        "score": spec.score,
        "task": spec.task,
        "description": spec.description,
        "version": status.version,
        "fallback": status.fallback,
        "reason": status.reason,
        "fallback_rule": spec.fallback_rule,
        "metrics": card.get("metrics"),
    }


def _known(name: str) -> None:
    if not _NAME.match(name) or name not in BY_NAME:
        message = f"no model named {name!r}; the models are {', '.join(BY_NAME)}"
        raise NotFound(message, code="model_not_found", errors={"name": [message]})


@blp.route("")
class Models(MethodView):
    @requires(Permission.MODELS_READ)
    @blp.response(200, ModelListSchema)
    def get(self):
        """List every model: the version serving here, or the fallback and why, with holdout metrics."""
        return {"items": [_status(spec.name) for spec in MODELS], "loaded_at": _runtime().current.loaded_at}


@blp.route("/<string:name>")
class Model(MethodView):
    @requires(Permission.MODELS_READ)
    @blp.response(200, ModelDetailSchema)
    def get(self, name):
        """Show a model: its active card, every version on disk and the promotion history."""
        _known(name)
        directory = _models_dir()
        active = store.active_version(directory, name)
        versions = []
        for version in reversed(store.versions(directory, name)):
            try:
                created = store.read_card(directory, name, version).get("created_at")
            except (OSError, ValueError):
                created = None
            versions.append(
                {
                    "version": version,
                    "active": version == active,
                    "created_at": created,
                    "problem": store.check_files(directory, name, version),
                }
            )
        return {
            **_status(name),
            "card": _runtime().current.statuses[name].card,
            "versions": versions,
            "history": list(reversed(store.history(directory, name))),
        }


def _changed(entry: dict[str, Any], name: str) -> dict[str, Any]:
    _runtime().sync()
    return {**entry, "model": _status(name)}


@blp.route("/<string:name>/promote")
class Promote(MethodView):
    @requires(Permission.MODELS_WRITE)
    @expensive
    @blp.arguments(ModelPromoteSchema)
    @blp.response(200, ModelChangeSchema)
    def post(self, body, name):
        """Make a version the one that serves (checked first: card, checksum); every server follows within seconds."""
        _known(name)
        entry = store.promote(_models_dir(), name, body["version"], actor=f"key:{g.principal.name}", reason=body["reason"])
        return _changed(entry, name)


@blp.route("/<string:name>/rollback")
class Rollback(MethodView):
    @requires(Permission.MODELS_WRITE)
    @expensive
    @blp.arguments(ModelRollbackSchema)
    @blp.response(200, ModelChangeSchema)
    def post(self, body, name):
        """Go back to the version that served before the current one."""
        _known(name)
        entry = store.rollback(_models_dir(), name, actor=f"key:{g.principal.name}", reason=body["reason"])
        return _changed(entry, name)


@scores.route("/<string:customer_id>/scores")
class CustomerScores(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @scores.response(200, ScoresSchema)
    def get(self, customer_id):
        """Score a customer with every model now, from their state row; says which model or fallback made each score."""
        now = utcnow()
        with transaction() as session:
            found = online.read(session.connection(), external_id=customer_id, as_of=now)
            if found is None:
                get_customer(session, external_id=customer_id)  # raises customer_not_found
        result = _runtime().current.score(found.values)
        return {"customer_id": customer_id, "as_of": now, **result.to_dict(), "features": as_dict(found.values[0])}
