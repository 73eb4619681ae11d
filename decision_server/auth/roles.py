"""Roles and the permissions each one grants; routes declare a permission, never a role."""

from __future__ import annotations

import enum


class Permission(str, enum.Enum):
    """Something an API call does; each route requires exactly one."""

    CUSTOMERS_READ = "customers:read"
    DATA_WRITE = "data:write"
    KEYS_MANAGE = "keys:manage"
    RULES_READ = "rules:read"  # read revisions, diffs and status; validate a draft; run cases
    RULES_WRITE = "rules:write"  # publish and roll back rule revisions
    MODELS_READ = "models:read"  # list models, read cards, versions and promotion history
    ANALYTICS_WRITE = "analytics:write"  # run RFM and lifecycle calculations, set a stage by hand
    MODELS_WRITE = "models:write"  # promote and roll back model versions (admin: it changes every decision)
    OFFERS_READ = "offers:read"  # list and read offers, catalog sync runs
    OFFERS_WRITE = "offers:write"  # create, change, retire offers; run a catalog sync
    CONNECTORS_MANAGE = "connectors:manage"  # set up catalog connectors (URLs, which secret to send)
    DECISIONS_WRITE = "decisions:write"  # ask for a decision, report a response
    DECISIONS_READ = "decisions:read"  # read the decision log and learning statistics
    LOYALTY_READ = "loyalty:read"  # read tiers, members, balances, ledgers, rewards, redemptions
    LOYALTY_WRITE = "loyalty:write"  # enrol a customer, credit points, redeem a reward, cancel a redemption
    LOYALTY_MANAGE = "loyalty:manage"  # define tiers and rewards; run the tier review and points expiry
    LOYALTY_ADJUST = "loyalty:adjust"  # correct a balance by hand (admin: it is money to the customer)
    JOBS_READ = "jobs:read"  # list bulk job runs and follow their progress
    JOBS_RUN = "jobs:run"  # start the re-evaluation of every customer (admin: it writes everyone)
    ANALYTICS_READ = "analytics:read"  # base-wide figures: dashboards, distributions, funnels (not a channel's job)
    METRICS_READ = "metrics:read"  # scrape GET /metrics (Prometheus): counts and timings, no customer data


class Role(str, enum.Enum):
    """What an API key is for."""

    CHANNEL = "channel"  # mobile app, call centre, SMS gateway: decide, respond, read the customer
    ANALYST = "analyst"  # read everything
    EDITOR = "editor"  # analyst + edit rules and offers
    INGEST = "ingest"  # a data feed: write customers, transactions, touchpoints
    ADMIN = "admin"  # everything, including keys


_READ_ALL = {
    Permission.ANALYTICS_READ,
    Permission.CUSTOMERS_READ,
    Permission.RULES_READ,
    Permission.MODELS_READ,
    Permission.OFFERS_READ,
    Permission.DECISIONS_READ,
    Permission.LOYALTY_READ,
    Permission.JOBS_READ,
    Permission.METRICS_READ,
}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.CHANNEL: frozenset(
        {
            Permission.CUSTOMERS_READ,
            Permission.OFFERS_READ,
            Permission.DECISIONS_WRITE,
            Permission.DECISIONS_READ,
            Permission.LOYALTY_READ,
            Permission.LOYALTY_WRITE,
        }
    ),
    Role.ANALYST: frozenset(_READ_ALL),
    Role.EDITOR: frozenset(
        _READ_ALL | {Permission.RULES_WRITE, Permission.ANALYTICS_WRITE, Permission.OFFERS_WRITE, Permission.LOYALTY_MANAGE}
    ),
    Role.INGEST: frozenset({Permission.CUSTOMERS_READ, Permission.DATA_WRITE}),
    Role.ADMIN: frozenset(Permission),
}


def role_allows(role: Role, permission: Permission) -> bool:
    """Tell whether a key of `role` may do `permission`."""
    return permission in ROLE_PERMISSIONS[role]


def requires(permission: Permission):
    """Mark a view method with the permission it needs; the API enforces it before the view runs."""

    def mark(view):
        view.required_permission = permission
        # Document the two auth failures on the operation (flask-smorest reads `_apidoc`).
        doc = getattr(view, "_apidoc", None)
        if doc is None:
            doc = view._apidoc = {}
        doc.setdefault("manual_doc", {}).setdefault("responses", {}).update(
            {
                "401": _error_doc("missing, malformed, unknown or revoked API key"),
                "403": _error_doc(f"the key's role does not grant {permission.value}"),
            }
        )
        return view

    return mark


def _error_doc(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def public(view):
    """Mark a view method as open to anyone (health checks, the API docs)."""
    view.required_permission = None
    return view
