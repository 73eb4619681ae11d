"""The HTTP API: flask-smorest set-up, authentication of every call, and the one error renderer."""

from __future__ import annotations

import logging
from typing import Any

import marshmallow as ma
import swagger_ui_bundle
from flask import Flask, current_app, g, jsonify, request, send_from_directory
from flask_smorest import Api as _SmorestApi
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter, IntegerConverter, UnicodeConverter

from decision_server.auth import service as auth_service
from decision_server.auth.roles import Permission, role_allows
from decision_server.db import MAX_ID
from decision_server.errors import DecisionServerError, Forbidden, Unauthorized
from decision_server.schemas import ErrorSchema, Timestamp
from decision_server.throttle import Slots

API_PREFIX = "/api/v1"
log = logging.getLogger("decision_server.api")

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
}


class IdConverter(IntegerConverter):
    """`<id:name>`: a database id, 1 to 2^63-1; any other number matches no route (404), never a 500.

    flask-smorest documents it from `min` and `max` as an integer parameter with those bounds.
    """

    def __init__(self, map, *args, **kwargs):
        super().__init__(map, min=1, max=MAX_ID)


class StringConverter(UnicodeConverter):
    """`<string:name>` without NUL characters (PostgreSQL cannot compare text with one): a NUL is a 404."""

    def __init__(self, map, *args, **kwargs):
        super().__init__(map, *args, **kwargs)
        self.regex = self.regex.replace("[^/]", "[^/\\x00]")


def _string_parameter(converter: StringConverter) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "pattern": "^[^/\\x00]+$"}


class RevisionConverter(BaseConverter):
    """`<revision:name>`: a rule revision's hash or its first 6 or more hex digits; anything else is a 404."""

    regex = "[0-9a-fA-F]{6,64}"


def _revision_parameter(converter: RevisionConverter) -> dict[str, Any]:
    return {"type": "string", "pattern": f"^{converter.regex}$"}


class Api(_SmorestApi):
    """flask-smorest's Api with our error payload in the spec and in every response."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException):
        """Render werkzeug and webargs errors as `{code, status, message, errors}`."""
        status = error.code or 500
        data = getattr(error, "data", None) or {}
        errors = _flatten(data.get("messages", {})) if "messages" in data else {}
        message = data.get("message") or error.description or "error"
        if status == 422:
            message = "the request has invalid fields: " + ", ".join(sorted(errors)) if errors else message
        elif status == 400 and "JSON" in str(errors):
            return _render(400, "invalid_json", "the request body is not valid JSON", errors)
        # werkzeug's own headers (a 405's `Allow`), but not its text/html content type.
        headers = [(name, value) for name, value in error.get_headers() if name.lower() != "content-type"]
        return _render(status, _HTTP_CODES.get(status, "http_error"), str(message), errors, headers)


def _render(status: int, code: str, message: str, errors: dict[str, Any] | None = None, headers=()):
    response = jsonify({"code": code, "status": status, "message": message, "errors": errors or {}})
    response.status_code = status
    response.headers.extend(headers)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="decision-server"'
    return response


def _flatten(messages: dict[str, Any]) -> dict[str, list[str]]:
    """Turn webargs' {location: {field: {0: {sub: [msg]}}}} into {"field.0.sub": [msg]}."""
    flat: dict[str, list[str]] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                key = "body" if key == "_schema" else str(key)
                walk(f"{prefix}.{key}" if prefix else key, value)
        elif isinstance(node, list) and all(isinstance(m, str) for m in node):
            flat.setdefault(prefix or "body", []).extend(node)
        else:
            flat.setdefault(prefix or "body", []).append(str(node))

    for location, fields in messages.items():
        walk("" if location in ("json", "files", "form") else location, fields)
    return flat


def _handler(app: Flask, endpoint: str | None, method: str):
    """Return the view method that answers `method` on `endpoint`, or None."""
    view = app.view_functions.get(endpoint) if endpoint else None
    view_class = getattr(view, "view_class", None)
    handler = getattr(view_class, method.lower(), None) if view_class else view
    if method == "HEAD" and handler is None and view_class:
        handler = getattr(view_class, "get", None)
    return handler


def required_permission(app: Flask, endpoint: str | None, method: str) -> tuple[bool, Permission | None]:
    """Return (declared, permission) for a route method; undeclared routes are refused."""
    handler = _handler(app, endpoint, method)
    if handler is None or not hasattr(handler, "required_permission"):
        return False, None
    return True, handler.required_permission


def _authenticate() -> None:
    """Check the bearer key and the route's permission before any /api/v1 view runs."""
    if not request.path.startswith(API_PREFIX + "/") or request.method == "OPTIONS":
        return
    if request.endpoint is None or request.endpoint.startswith("api-docs"):
        return  # an unknown URL (404 follows) or the public docs
    declared, permission = required_permission(current_app, request.endpoint, request.method)
    if not declared:
        raise Forbidden("this route declares no permission", code="route_not_protected")
    if permission is None:
        return
    authorize(permission)


def authorize(permission: Permission) -> None:
    """Check the request's bearer key grants `permission` (raise Unauthorized or Forbidden); remember the key in `g`."""
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("send an API key as `Authorization: Bearer <key>`", code="missing_api_key")
    secret = secret.strip()
    cache: auth_service.KeyCache = current_app.extensions["key_cache"]
    principal = cache.get(secret)
    if principal is None:
        with current_app.extensions["database"].session() as session:
            principal = auth_service.verify_key(session, secret)
        cache.put(secret, principal)
    g.principal = principal
    if not role_allows(principal.role, permission):
        raise Forbidden(f"role {principal.role.value!r} may not do {permission.value!r}", code="forbidden")


def _take_slot() -> None:
    """Run an expensive view (marked @expensive) only while one of the process's slots is free."""
    if not getattr(_handler(current_app, request.endpoint, request.method), "expensive", False):
        return
    current_app.extensions["expensive_slots"].acquire()
    g.expensive_slot = True


def _give_slot(_error: BaseException | None) -> None:
    if g.pop("expensive_slot", False):
        current_app.extensions["expensive_slots"].release()


def check_routes_protected(app: Flask) -> None:
    """Fail at start-up if any /api/v1 route method forgot to declare its permission."""
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API_PREFIX + "/") or rule.endpoint.startswith("api-docs"):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            declared, _ = required_permission(app, rule.endpoint, method)
            if not declared:
                missing.append(f"{method} {rule.rule}")
    if missing:
        raise RuntimeError("routes without a declared permission: " + ", ".join(missing))


def _validator_properties(self, field, ret, **kwargs) -> dict[str, Any]:
    """State what apispec leaves out: a Range's open ends (OpenAPI 3.0 `exclusiveMinimum`), a NoneOf (`not`).

    And that no string holds a NUL (web.JsonParser refuses one anywhere), where no pattern says more.
    """
    found: dict[str, Any] = {}
    if ret.get("type") == "string" and "pattern" not in ret and "enum" not in ret:
        found["pattern"] = "^[^\\x00]*$"
    for validator in field.validators:
        if isinstance(validator, ma.validate.NoneOf):
            found["not"] = {"enum": list(validator.iterable)}
        if isinstance(validator, ma.validate.Range) and ret.get("type") in ("number", "integer"):
            if validator.min is not None and not validator.min_inclusive:
                found["exclusiveMinimum"] = True
            if validator.max is not None and not validator.max_inclusive:
                found["exclusiveMaximum"] = True
    return found


def check_ids_converted(app: Flask) -> None:
    """Fail at start-up if an /api/v1 route takes a number in its path without the `id` converter."""
    loose = [
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(API_PREFIX + "/")
        and any(type(c) is not IdConverter and isinstance(c, IntegerConverter) for c in rule._converters.values())
    ]
    if loose:
        raise RuntimeError("routes with <int:...> instead of <id:...>: " + ", ".join(loose))


def init_api(app: Flask, blueprints: list, *, expensive_concurrency: int = 0) -> Api:
    """Attach flask-smorest, the blueprints, authentication and error rendering to `app`."""
    app.config.update(
        API_TITLE="decision-server",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX=API_PREFIX,
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        # Served from the swagger-ui-bundle package: the docs work with no internet access.
        OPENAPI_SWAGGER_UI_URL=f"{API_PREFIX}/docs-assets/",
        API_SPEC_OPTIONS={
            "security": [{"bearerAuth": []}],
            "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "description": "an API key"}}},
            "info": {
                "description": "Real-time next-best-action decisioning. Every call needs "
                "`Authorization: Bearer <key>`; create keys with `decision-server keys create`."
            },
        },
    )
    app.url_map.converters["id"] = IdConverter  # before the blueprints add their rules
    app.url_map.converters["revision"] = RevisionConverter
    app.url_map.converters["string"] = app.url_map.converters["default"] = StringConverter
    api = Api(app)
    api.register_converter(RevisionConverter, _revision_parameter)
    api.register_converter(StringConverter, _string_parameter)
    api.ma_plugin.converter.add_attribute_function(_validator_properties)
    api.register_field(Timestamp, "string", None)  # its pattern says what it takes (schemas.Timestamp)
    for blueprint in blueprints:
        api.register_blueprint(blueprint, url_prefix=API_PREFIX + blueprint.url_prefix)

    @app.get(f"{API_PREFIX}/docs-assets/<path:filename>", endpoint="api-docs-assets")
    def _docs_assets(filename: str):
        return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename, max_age=86400)

    app.before_request(_authenticate)
    app.extensions["expensive_slots"] = Slots(expensive_concurrency)
    app.before_request(_take_slot)  # after authentication: an unknown key never holds a slot
    app.teardown_request(_give_slot)

    @app.errorhandler(DecisionServerError)
    def _domain_error(error: DecisionServerError):
        if error.status >= 500:
            log.error("server error", extra={"code": error.code, "detail": error.message})
        response = _render(error.status, error.code, error.message, error.errors)
        if error.retry_after is not None:
            response.headers["Retry-After"] = str(error.retry_after)
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        if isinstance(error, HTTPException):
            return api.handle_http_exception(error)
        log.exception("unhandled error", extra={"request_id": g.get("request_id")})
        return _render(500, "internal_error", f"unexpected error; request id {g.get('request_id')}")

    check_routes_protected(app)
    check_ids_converted(app)
    return api
