"""One JSON line per request with method, path, status, duration and request id; never the key."""

from __future__ import annotations

import json
import logging

from decision_server.logs import JsonFormatter


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(JsonFormatter())

    def emit(self, record):
        self.lines.append(self.format(record))


def test_each_request_logs_one_json_line_without_the_key(client, auth, keys):
    collect = _Collect()
    logger = logging.getLogger("decision_server.request")
    logger.addHandler(collect)
    try:
        client.get("/api/v1/customers/NOPE", headers={**auth("analyst"), "X-Request-ID": "req-42"})
        client.get("/api/v1/customers")
    finally:
        logger.removeHandler(collect)
    assert len(collect.lines) == 2
    first, second = (json.loads(line) for line in collect.lines)
    assert {k: first[k] for k in ("method", "path", "status", "request_id", "key")} == {
        "method": "GET",
        "path": "/api/v1/customers/NOPE",
        "status": 404,
        "request_id": "req-42",
        "key": "test-analyst",
    }
    assert isinstance(first["duration_ms"], float) and first["level"] == "info"
    assert second["status"] == 401 and second["key"] is None and len(second["request_id"]) == 32
    assert not any(secret in line for secret in keys.values() for line in collect.lines)
