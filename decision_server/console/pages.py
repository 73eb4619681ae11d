"""The console blueprint and its registry of screens: each declares its URL, title, menu group and permission."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from flask import Blueprint

from decision_server.auth.roles import Permission, Role, role_allows

blp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)


@dataclasses.dataclass(frozen=True)
class Page:
    """A screen in the navigation."""

    endpoint: str
    rule: str
    title: str
    group: str
    permission: Permission
    position: int


# The menu's groups, in order; within a group pages sort by their position.
GROUPS = ("Dashboards", "Customers", "Programme", "Rules", "Operations")
PAGES: list[Page] = []
# A view any signed-in user may use whatever the role (signing out).
SIGNED_IN = "signed-in"


def page(rule: str, *, title: str, group: str, permission: Permission, position: int = 50) -> Callable:
    """Register a navigation screen at `rule` (GET), shown to and opened by roles that have `permission`."""

    if group not in GROUPS:
        raise ValueError(f"unknown menu group {group!r}")

    def register(function: Callable) -> Callable:
        view(rule, permission=permission)(function)
        PAGES.append(Page(f"console.{function.__name__}", rule, title, group, permission, position))
        PAGES.sort(key=lambda p: (GROUPS.index(p.group), p.position))
        return function

    return register


def view(rule: str, *, permission: Permission | str | None, methods: Iterable[str] = ("GET",)) -> Callable:
    """Register a console URL (a page, a partial or a form post) with the permission it needs (None: public, SIGNED_IN: any session)."""

    def register(function: Callable) -> Callable:
        function.required_permission = permission
        blp.add_url_rule(rule, function.__name__, function, methods=list(methods))
        return function

    return register


def navigation(role: Role) -> list[tuple[str, list[Page]]]:
    """Return the menu for `role`: groups in GROUPS order, each with the pages the role may open."""
    groups: dict[str, list[Page]] = {}
    for entry in PAGES:
        if role_allows(role, entry.permission):
            groups.setdefault(entry.group, []).append(entry)
    return list(groups.items())
