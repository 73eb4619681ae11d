"""Treatments: how an offer is presented on one channel, checked when saved and rendered per customer.

Texts may hold placeholders such as `{first_name}`. Only plain names from PLACEHOLDERS are
accepted (no attribute access, indexing or format specs), so a treatment can never reach into
Python objects the way a raw format string could. `{{` and `}}` are literal braces.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

# The kinds of treatment and the fields each has: (name, required, max length).
KINDS: dict[str, tuple[tuple[str, bool, int], ...]] = {
    "sms": (("text", True, 160),),
    "card": (("title", True, 80), ("body", True, 500), ("image_url", False, 2000), ("deep_link", False, 2000)),
    "script": (("script", True, 4000),),
}
# Placeholder -> the length it is assumed to take when an SMS text is checked against 160 characters.
PLACEHOLDERS: dict[str, int] = {"first_name": 20, "last_name": 20, "offer_name": 40, "offer_code": 20, "points_cost": 7}
# What a name placeholder becomes when the customer's value is unknown, or too long for an SMS.
FALLBACKS = {"first_name": "there", "last_name": ""}
SMS_LIMIT = 160
_URL_FIELDS = ("image_url", "deep_link")
_formatter = string.Formatter()


def placeholders(text: str) -> list[str]:
    """Return the placeholders in `text`; raise ValueError naming the first bad one."""
    try:
        parsed = list(_formatter.parse(text))
    except ValueError as exc:
        raise ValueError(f"{exc}; write {{{{ and }}}} for literal braces") from None
    names = []
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in PLACEHOLDERS or spec or conversion:
            allowed = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            raise ValueError(f"unknown placeholder {{{field}}}; use one of {allowed}")
        names.append(field)
    return names


def check(kind: str, treatment: Any) -> dict[str, list[str]]:
    """Return {field: [problems]} for one treatment of `kind` (empty when it is valid)."""
    if not isinstance(treatment, Mapping):
        return {"": ["must be an object"]}
    fields = KINDS[kind]
    known = {name for name, _, _ in fields}
    problems: dict[str, list[str]] = {}
    for name in treatment:
        if name not in known:
            problems.setdefault(str(name), []).append(f"unknown field; a {kind} treatment has {', '.join(sorted(known))}")
    for name, required, max_len in fields:
        value = treatment.get(name)
        if value is None:
            if required:
                problems.setdefault(name, []).append("required")
            continue
        if not isinstance(value, str) or not value.strip():
            problems.setdefault(name, []).append("must be non-empty text")
            continue
        if len(value) > max_len or "\x00" in value:
            problems.setdefault(name, []).append(f"at most {max_len} characters, no NUL")
            continue
        if name in _URL_FIELDS:
            if not value.startswith(("https://", "http://")) and "://" not in value:
                problems.setdefault(name, []).append("must be an absolute URL or an app link (scheme://...)")
            continue
        try:
            used = placeholders(value)
        except ValueError as exc:
            problems.setdefault(name, []).append(str(exc))
            continue
        if kind == "sms":
            longest = len(render_text(value, {p: "x" * PLACEHOLDERS[p] for p in used}))
            if longest > SMS_LIMIT:
                problems.setdefault(name, []).append(
                    f"{longest} characters with its placeholders filled in (names counted as "
                    f"{PLACEHOLDERS['first_name']}); an SMS holds {SMS_LIMIT}"
                )
    return problems


def render_text(text: str, values: Mapping[str, str]) -> str:
    """Fill a checked text's placeholders from `values`."""
    return text.format_map(values)


def render(kind: str, treatment: Mapping[str, str], values: Mapping[str, Any]) -> dict[str, str]:
    """Render one checked treatment for one customer; an SMS never exceeds 160 characters."""
    filled = {p: _text(values.get(p)) or FALLBACKS.get(p, "") for p in PLACEHOLDERS}
    out = {}
    for name, value in treatment.items():
        if name in _URL_FIELDS:
            out[name] = value
            continue
        rendered = render_text(value, filled)
        if kind == "sms" and len(rendered) > SMS_LIMIT:
            # A name longer than the text was checked for: greet generically rather than cut.
            rendered = render_text(value, {**filled, **FALLBACKS})[:SMS_LIMIT]
        out[name] = rendered
    return out


def _text(value: Any) -> str:
    return "" if value is None else str(value)
