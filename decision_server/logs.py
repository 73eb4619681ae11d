"""Structured logging: one JSON object per line, and one line per HTTP request."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid

from flask import Flask, g, request

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line with its extra fields at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO") -> None:
    """Send the project's logs to stderr as JSON lines (idempotent: safe to call per app)."""
    logger = logging.getLogger("decision_server")
    logger.setLevel(level.upper())
    if not any(getattr(h, "_decision_server", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._decision_server = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False


def init_request_logging(app: Flask) -> None:
    """Give every request an id (X-Request-ID in and out), log one line and count it when it ends."""
    # Here, not at the top: the CLI imports this module to configure logging before `serve` has set
    # PROMETHEUS_MULTIPROC_DIR, and prometheus_client picks its mode when first imported.
    from decision_server import metrics

    log = logging.getLogger("decision_server.request")

    @app.before_request
    def _start():
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response):
        request_id = g.get("request_id") or uuid.uuid4().hex
        response.headers["X-Request-ID"] = request_id
        started = g.get("started")
        principal = g.get("principal")
        seconds = time.perf_counter() - started if started else None
        if seconds is not None:  # by the route's template, never its path: ids would be unbounded labels
            metrics.request_done(
                request.url_rule.rule if request.url_rule else "unmatched", request.method, response.status_code, seconds
            )
        log.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round(seconds * 1000, 3) if seconds is not None else None,
                "request_id": request_id,
                "key": principal.name if principal else None,
            },
        )
        return response
