"""Start a what-if: a draft rule set tried on every customer without writing anything (a dry run of
the re-evaluation, jobs/reevaluation.py), for the API (POST /jobs/what-if) and the console alike."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from decision_server.db import Database
from decision_server.errors import ValidationError
from decision_server.jobs import offer_reach, reevaluation


def check_channels(channels: Sequence[str] | None, known: Sequence[str]) -> list[str]:
    """Return the channels to try the offers on (every channel when none are given); refuse unknown ones."""
    chosen = list(channels or known)
    unknown = [c for c in chosen if c not in known]
    if unknown:
        message = f"unknown channel {', '.join(unknown)}; the channels are {', '.join(known)}"
        raise ValidationError(message, errors={"channels": [message]})
    return chosen


def start_what_if(
    database: Database,
    rulebook: Any,
    models: Any,
    config: Any,
    *,
    files: Mapping[str, str],
    steps: Sequence[str] = reevaluation.WHAT_IF_STEPS,
    channels: Sequence[str] | None = None,
    intent: str | None = None,
    source: str = "api",
    started_by: str | None = None,
) -> dict[str, Any]:
    """Build the draft `files` (the complete rule set) and try it on every customer in a background thread.

    Returns the run's row at once (follow it with reevaluation.get). Its `rule_revision` is the
    draft's revision id, its `result` (when it ends) the pass's `before`, `after`, `transitions`
    and `moves`, the tier review's changes and, with the "offers" step, the offer reach on
    `channels` (every channel by default) as decisions with `intent` would see it: now (the serving
    rules) and under the draft.

    Raises RulesInvalid (422, every problem with file, line and reason) when the draft does not
    build, ValidationError for an unknown step or channel, JobRunning (409) while a what-if runs.
    """
    from decision_server.rules.engine import build_revision

    chosen = check_channels(channels, list(config.channels))
    reevaluation.check_steps(steps, dry_run=True)
    draft = build_revision(dict(files), backend="python", run_cases=False, limits=rulebook.limits)
    try:
        trial = offer_reach.trial(database, rulebook.current, channels=chosen, intent=intent) if "offers" in steps else None
        return reevaluation.start(
            database,
            draft,
            models,
            steps=steps,
            dry_run=True,
            source=source,
            started_by=started_by,
            margin=config.default_margin,
            on_end=draft.close,
            dask_address=config.dask_scheduler_address,
            offers=trial,
        )
    except BaseException:
        draft.close()
        raise
