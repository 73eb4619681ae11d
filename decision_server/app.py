"""The application factory: the one place where configuration, database and API are wired."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, current_app, jsonify

from decision_server import metrics, migrate
from decision_server.auth.service import KeyCache
from decision_server.clv.dashboard import SummaryCache
from decision_server.config import Config
from decision_server.db import Database

log = logging.getLogger("decision_server.app")


def create_app(config: Config | Mapping[str, Any] | None = None) -> Flask:
    """Build the WSGI app from `config` (a Config, or overrides on top of the environment)."""
    from decision_server.api import init_api
    from decision_server.console.render import init_console
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
    app.extensions["rulebook"] = _start_rulebook(config, app.extensions["database"])
    app.extensions["models"] = _start_models(config)
    app.extensions["catalog"] = _start_catalog(config, app.extensions["database"])
    app.extensions["decider"] = _decider(config, app)
    app.extensions["clv_summaries"] = SummaryCache()  # the CLV dashboard's figures, per data version
    if config.scheduler:  # each server process competes for the lease; one runs the jobs
        from decision_server.jobs.scheduler import Scheduler

        app.extensions["scheduler"] = Scheduler(app.extensions["database"], config)
        app.extensions["scheduler"].start_thread()

    init_request_logging(app)
    init_api(app, _blueprints(), expensive_concurrency=config.expensive_concurrency)
    init_console(app)
    app.add_url_rule("/health", "health", _health)
    app.add_url_rule("/ready", "ready", _ready)
    app.add_url_rule("/metrics", "metrics", _metrics)
    metrics.init_process()
    log.info("app created", extra={"database": app.extensions["database"].engine.url.render_as_string(hide_password=True)})
    return app


def _start_rulebook(config: Config, database: Database):
    """Load and check every rule file before serving (fail fast), then follow new revisions."""
    from decision_server.errors import ConfigError
    from decision_server.rulebook.runtime import Rulebook

    if config.rules_backend not in ("durable", "python"):
        raise ConfigError(f"RULES_BACKEND must be durable or python, not {config.rules_backend!r}")
    current, head = migrate.current_revision(database.engine), migrate.head_revision(database.engine)
    if current != head:
        raise ConfigError(f"the database is at schema revision {current}, expected {head}: run `decision-server init`")
    rulebook = Rulebook(
        database,
        config.rules_dir,
        backend=config.rules_backend,
        poll_seconds=config.rules_poll_seconds,
        limits=config.rule_limits,
    )
    rulebook.start()
    return rulebook


def _start_models(config: Config):
    """Load and verify every model (a model that cannot serve falls back; it never stops the server)."""
    from decision_server.scoring.serving import ModelRuntime

    runtime = ModelRuntime(config.models_dir, max_age_days=config.model_max_age_days, poll_seconds=config.models_poll_seconds)
    runtime.start()
    return runtime


def _start_catalog(config: Config, database: Database):
    """Load the active offers and follow changes made by other processes."""
    from decision_server.offers.catalog import Catalog

    catalog = Catalog(database, poll_seconds=config.catalog_poll_seconds)
    catalog.start()
    return catalog


def _decider(config: Config, app: Flask):
    """Wire the decision pipeline to this process's rules, models, catalog and learning."""
    from decision_server.decisions.learning import Learning
    from decision_server.decisions.service import Decider

    learning = Learning(app.extensions["database"], enabled=config.adaptive_learning, poll_seconds=config.learning_poll_seconds)
    learning.start()
    return Decider(
        app.extensions["database"],
        rulebook=app.extensions["rulebook"],
        models=app.extensions["models"],
        catalog=app.extensions["catalog"],
        learning=learning,
        channels=config.channels,
    )


def _blueprints() -> list:
    from decision_server.auth.routes import blp as keys
    from decision_server.clv.routes import clv_blp
    from decision_server.customers.profile_routes import per_customer
    from decision_server.customers.routes import blp as customers
    from decision_server.decisions.routes import blp as decisions
    from decision_server.jobs.routes import blp as jobs
    from decision_server.journeys.routes import blp as journeys
    from decision_server.journeys.routes import per_customer as customer_journey
    from decision_server.lifecycle.routes import lifecycle_blp
    from decision_server.loyalty.routes import blp as loyalty
    from decision_server.offers.routes import blp as offers
    from decision_server.offers.sync_routes import blp as catalog_sync
    from decision_server.rfm.routes import rfm_blp
    from decision_server.rulebook.routes import blp as rules
    from decision_server.scoring.routes import blp as models
    from decision_server.scoring.routes import scores
    from decision_server.segments.routes import blp as segments
    from decision_server.touchpoints.routes import blp as touchpoints
    from decision_server.transactions.routes import blp as transactions
    from decision_server.value.routes import value_blp

    return [
        customers,
        scores,
        per_customer,
        transactions,
        touchpoints,
        lifecycle_blp,
        rfm_blp,
        value_blp,
        clv_blp,
        customer_journey,
        journeys,
        segments,
        offers,
        catalog_sync,
        decisions,
        loyalty,
        jobs,
        rules,
        models,
        keys,
    ]


def _health():
    """Answer 200 while the process is up."""
    return jsonify({"status": "ok"})


def _ready():
    """Answer 200 when the database is migrated and rules and models are loaded; 503 with the reasons otherwise."""
    database: Database = current_app.extensions["database"]
    checks: dict[str, str] = {}
    try:
        current = migrate.current_revision(database.engine)
        head = current_app.extensions["schema_head"]
        checks["database"] = "ok" if current == head else f"at revision {current}, expected {head}: run `decision-server init`"
    except Exception as exc:  # any failure to reach the database means "not ready"
        checks["database"] = f"unreachable: {type(exc).__name__}"
    status = current_app.extensions["rulebook"].status()
    checks["rules"] = "ok" if status["revision"] else "no rule revision serving"
    runtime = current_app.extensions["models"]
    # Whether a model set was loaded, not `runtime.current` (which would load one now, on a probe).
    checks["models"] = "ok" if runtime.loaded else "models not loaded"
    models = runtime.current.models if runtime.loaded else {}
    ready = all(value == "ok" for value in checks.values())
    # A model that falls back does not make a server unready either: decisions go on with its rule.
    # A refused edit of the rules folder does not make a server unready: it keeps serving the last
    # good revision, and taking every server out of the load balancer over a typo would be worse.
    rules = {
        "revision": status["revision"],
        "folder_refused": status["folder"]["refused"],
        "folder_problems": status["folder"]["problems"][:5],
    }
    response = jsonify({"status": "ready" if ready else "not_ready", "checks": checks, "rules": rules, "models": models})
    response.status_code = 200 if ready else 503
    return response


def _metrics():
    """Answer the Prometheus scrape (all worker processes) for a key that may read metrics."""
    from decision_server.api import authorize
    from decision_server.auth.roles import Permission

    authorize(Permission.METRICS_READ)
    return Response(metrics.render(), mimetype=None, content_type=metrics.CONTENT_TYPE_LATEST)
