"""The one error hierarchy: every error a client can cause has an HTTP status and a stable code."""

from __future__ import annotations

from typing import Any


class DecisionServerError(Exception):
    """Base of every error this project raises on purpose."""

    status = 500
    code = "internal_error"
    retry_after: int | None = None  # seconds, sent as the Retry-After header when set

    def __init__(self, message: str, *, errors: dict[str, Any] | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or {}
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, Any]:
        """Render as the JSON error payload `{code, status, message, errors}`."""
        return {"code": self.code, "status": self.status, "message": self.message, "errors": self.errors}


class ConfigError(DecisionServerError):
    """The server or a command was configured wrongly (not a client error)."""

    code = "config_error"


class ValidationError(DecisionServerError):
    """Input that parses but breaks a rule; `errors` maps each offending field to its messages."""

    status = 422
    code = "validation_error"


class NotFound(DecisionServerError):
    """A resource named in the URL does not exist."""

    status = 404
    code = "not_found"


class Conflict(DecisionServerError):
    """The request contradicts what is stored (a duplicate id with other content)."""

    status = 409
    code = "conflict"


class Unauthorized(DecisionServerError):
    """No API key, or one that is unknown or revoked."""

    status = 401
    code = "unauthorized"


class Forbidden(DecisionServerError):
    """A valid API key whose role may not do this."""

    status = 403
    code = "forbidden"


class ImportFileError(DecisionServerError):
    """A bulk import file that cannot be read at all (missing columns, unknown format)."""

    code = "import_file_invalid"


class Unavailable(DecisionServerError):
    """Something the request needs cannot be reached now (the decision log's database); retry later."""

    status = 503
    code = "unavailable"


class Busy(DecisionServerError):
    """The server runs as many expensive requests as it may at once; retry in `retry_after` seconds."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int, errors: dict[str, Any] | None = None):
        super().__init__(message, errors=errors)
        self.retry_after = retry_after
