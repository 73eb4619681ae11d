"""Periods of the statistics endpoints and console screens: defaults, order and the days or weeks they span."""

from __future__ import annotations

import datetime as dt

from decision_server.db import to_utc, utcnow
from decision_server.errors import ValidationError

INTERVALS = ("day", "week")
# A chart of more points than this is unreadable and an unbounded answer: ask for weeks or a shorter period.
MAX_PERIODS = 400


def check_period(since: dt.datetime | None, until: dt.datetime | None) -> None:
    """Refuse a period that ends before it starts (422 naming `since`, code period_invalid, as the journeys' do)."""
    if since is not None and until is not None and since >= until:
        message = "must be before until"
        raise ValidationError(f"since {message}", errors={"since": [message]}, code="period_invalid")


def default_period(since: dt.datetime | None, until: dt.datetime | None, *, days: int) -> tuple[dt.datetime, dt.datetime]:
    """Fill in a period: until defaults to tomorrow 00:00 UTC (today is in), since to `days` days before until."""
    if until is None:
        until = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(days=1)
    since = since or until - dt.timedelta(days=days)
    check_period(since, until)
    return since, until


def period_starts(since: dt.datetime, until: dt.datetime, interval: str = "day") -> list[dt.date]:
    """Return the first day (UTC) of each day or week (Monday) that [since, until) touches; refuse too many."""
    if interval not in INTERVALS:
        message = f"must be one of {', '.join(INTERVALS)}"
        raise ValidationError(f"interval {message}", errors={"interval": [message]})
    check_period(since, until)
    first = to_utc(since).date()
    last = to_utc(until - dt.timedelta(microseconds=1)).date()
    step = 1 if interval == "day" else 7
    if interval == "week":
        first -= dt.timedelta(days=first.weekday())
    count = (last - first).days // step + 1
    if count > MAX_PERIODS:
        message = f"the period spans {count} {interval}s, at most {MAX_PERIODS} are shown: choose a shorter period or weeks"
        raise ValidationError(message, errors={"until": [message]}, code="period_too_long")
    return [first + dt.timedelta(days=i * step) for i in range(count)]
