"""Which rule sets the analytics steps need, and a clear refusal when the serving rules lack them."""

from __future__ import annotations

from typing import Any

from decision_server.errors import DecisionServerError

NEEDED = {
    "rfm": ("rfm",),
    "stages": ("lifecycle", "value", "value_weights", "journey"),
    "segments": (),
    "offers": ("offers",),
}


class RulesMissing(DecisionServerError):
    """The serving rule revision has no rule set a calculation needs (a folder from an older version)."""

    status = 409
    code = "rules_missing"


def missing(revision: Any, *names: str) -> list[str]:
    """Return the rule sets among `names` that the revision does not have."""
    return [n for n in names if n not in revision.rulesets]


def require(revision: Any, *names: str) -> None:
    """Raise RulesMissing naming the absent rule sets and how to add them."""
    absent = missing(revision, *names)
    if absent:
        message = (
            f"the rules serving (revision {revision.id[:12]}) have no {', '.join(absent)} rule set; "
            "add the shipped files with `decision-server rules add-missing` (a running server publishes them)"
        )
        raise RulesMissing(message, errors={"rules": [f"missing: {', '.join(absent)}"]})
