"""The application factory: the one place where configuration, database and API are wired."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app, jsonify

from decision_server import migrate
from decision_server.auth.service import KeyCache
from decision_server.config import Config
from decision_server.db import Database

log = logging.getLogger("decision_server.app")


def create_app(config: Config | Mapping[str, Any] | None = None) -> Flask:
    """Build the WSGI app from `config` (a Config, or overrides on top of the environment)."""
    from decision_server.api import init_api
    from decision_server.logs import configure_logging, init_request_logging

    if not isinstance(config, Config):
        config = Config.from_env(**dict(config or {}))
    configure_logging(config.log_level)

    app = Flask("decision_server", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = config.max_request_bytes
    app.json.sort_keys = False
    app.extensions["config"] = config
    app.extensions["database"] = Database(config.database_url)
    app.extensions["key_cache"] = KeyCache(config.key_cache_seconds)
    app.extensions["schema_head"] = migrate.head_revision(app.extensions["database"].engine)

    init_request_logging(app)
    init_api(app, _blueprints())
    app.add_url_rule("/health", "health", _health)
    app.add_url_rule("/ready", "ready", _ready)
    log.info("app created", extra={"database": app.extensions["database"].engine.url.render_as_string(hide_password=True)})
    return app


def _blueprints() -> list:
    from decision_server.auth.routes import blp as keys
    from decision_server.customers.routes import blp as customers
    from decision_server.touchpoints.routes import blp as touchpoints
    from decision_server.transactions.routes import blp as transactions

    return [customers, transactions, touchpoints, keys]


def _health():
    """Answer 200 while the process is up."""
    return jsonify({"status": "ok"})


def _ready():
    """Answer 200 when the database is reachable and migrated; 503 with the reasons otherwise."""
    database: Database = current_app.extensions["database"]
    checks: dict[str, str] = {}
    try:
        current = migrate.current_revision(database.engine)
        head = current_app.extensions["schema_head"]
        checks["database"] = "ok" if current == head else f"at revision {current}, expected {head}: run `decision-server init`"
    except Exception as exc:  # any failure to reach the database means "not ready"
        checks["database"] = f"unreachable: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    response = jsonify({"status": "ready" if ready else "not_ready", "checks": checks})
    response.status_code = 200 if ready else 503
    return response
