"""The rule set browser's facts: each rule file with its description, rules, cases, last change and what it feeds."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from decision_server.rulebook.records import RulePublicationRecord, RuleRevisionRecord
from decision_server.rules.cases import run_cases
from decision_server.rules.engine import CASES_SUFFIX

# What each shipped rule set's outcome feeds, in the words of the people who edit it.
FEEDS = {
    "lifecycle": "the customer's lifecycle stage (on each event and in the nightly pass)",
    "value": "the customer's value segment, from the value score",
    "value_weights": "the customer's value score (0–100)",
    "journey": "the customer's journey stage",
    "rfm": "the customer's RFM segment name",
    "segments": "membership of the marketing segments",
    "tiers": "the loyalty tier (tier review)",
    "loyalty_policy": "points pending and expiry, and tier downgrades",
    "earning": "points earned on a purchase",
    "offers": "which offers a decision may make (eligibility)",
    "contact_policy": "which offers a decision may make now (consent, limits, cool-down)",
    "arbitration": "the ranking of eligible offers in a decision (levers)",
    "learning": "how decisions explore and learn from responses",
    "stage_actions": "the recommended actions shown for each lifecycle stage",
}
# Publications looked at for each file's last change (older changes show as "before the last N").
HISTORY_DEPTH = 100


class _CaseCounts:
    """Case results of a revision by rule set, remembered per revision (the cases are a pure function of its files)."""

    def __init__(self, size: int = 8):
        self._size, self._lock, self._entries = size, threading.Lock(), OrderedDict()

    def get(self, revision) -> dict[str, dict[str, int]]:
        with self._lock:
            known = self._entries.get(revision.id)
            if known is not None:
                return known
        counts: dict[str, dict[str, int]] = {}
        for result in run_cases(revision):
            entry = counts.setdefault(result.case.ruleset, {"passed": 0, "failed": 0, "cases": 0})
            entry["passed" if result.passed else "failed"] += 1
        for name, entry in counts.items():
            entry["cases"] = sum(len([c for c in cases if c.ruleset == name]) for cases in revision.cases.values())
        with self._lock:
            self._entries[revision.id] = counts
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return counts


case_counts = _CaseCounts()


def last_changes(session: Session, files: list[str]) -> dict[str, dict[str, Any]]:
    """For each file, the latest publication that changed it: author, time, message, revision."""
    rows = session.execute(
        sa.select(RulePublicationRecord, RuleRevisionRecord.revision, RuleRevisionRecord.files)
        .join(RuleRevisionRecord, RuleRevisionRecord.id == RulePublicationRecord.revision_id)
        .order_by(RulePublicationRecord.id.desc())
        .limit(HISTORY_DEPTH + 1)
    ).all()
    found: dict[str, dict[str, Any]] = {}
    for (pub, revision, content), older in zip(rows, [*rows[1:], None], strict=True):
        before = older[2] if older is not None else None
        for name in files:
            if name in found or name not in content:
                continue
            if before is None or before.get(name) != content.get(name):
                if before is None and len(rows) > HISTORY_DEPTH:
                    continue  # the change is older than the publications looked at
                found[name] = {
                    "author": pub.author,
                    "published_at": pub.published_at,
                    "message": pub.message,
                    "action": pub.action,
                    "source": pub.source,
                    "revision": revision,
                }
    return found


def _newest(*changes: dict[str, Any] | None) -> dict[str, Any] | None:
    known = [c for c in changes if c is not None]
    return max(known, key=lambda c: c["published_at"]) if known else None


def rule_files(session: Session, revision, *, draft_changes: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every rule file of `revision`: rule set, description, rules, cases, last change, feeds, and whether my draft changes it."""
    counts = case_counts.get(revision)
    by_file = {rs.file: rs for rs in revision.rulesets.values()}
    names = sorted(revision.files)
    changes = last_changes(session, names)
    draft_changes = draft_changes or {}
    entries = []
    for name in names:
        if name.endswith(CASES_SUFFIX):
            continue
        rs = by_file.get(name)
        cases_file = name.removesuffix(".yaml") + CASES_SUFFIX
        entries.append(
            {
                "file": name,
                "ruleset": rs.name if rs else None,
                "description": rs.description if rs else "",
                "hit": rs.hit if rs else None,
                "rules": len(rs.rules) if rs else 0,
                "outputs": list(rs.outputs) if rs else [],
                "feeds": FEEDS.get(rs.name if rs else "", ""),
                "cases_file": cases_file if cases_file in revision.files else None,
                "cases": counts.get(rs.name, {"passed": 0, "failed": 0, "cases": 0}) if rs else None,
                "last_change": _newest(changes.get(name), changes.get(cases_file)),
                "in_draft": name in draft_changes or cases_file in draft_changes,
            }
        )
    return entries
