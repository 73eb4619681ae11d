"""Offer reach for a what-if: which offers a rule change makes eligible or ineligible, for how many
customers, and who is left with no eligible offer, channel by channel.

Every active offer is tried on every customer of a chunk, for each channel, twice: as decisions
see it now (the serving rules and the customer's current stage and value segment: `before`) and
as it would be (the draft rules and the stage and value segment the pass computes: `after`).
Eligible means what it means in a decision: inside the offer's validity dates, with a treatment
for the channel, and removed by no rule of `offers`. The contact policy is not tried: it reads
the moment's contact history (how often we wrote today), which a bulk what-if has no moment for.

The customer's facts are normalized once per side and the offer's facts are constants
(vector.to_columns, `constants=`), so an offer on a chunk costs a few numpy operations per rule.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from decision_server.db import Database
from decision_server.features.definition import FEATURE_NAMES
from decision_server.jobs.chunks import Chunk
from decision_server.offers.catalog import Offer, active_offers
from decision_server.rules import vector

RULESET = "offers"
SCORES = ("churn_risk", "propensity_to_buy", "engagement_score", "ltv")


@dataclasses.dataclass(frozen=True)
class Trial:
    """What a what-if tries: the serving rules (the `before` side), the active offers, the channels and the intent."""

    baseline: Any
    offers: tuple[Offer, ...]
    channels: tuple[str, ...]
    intent: str | None = None


def trial(database: Database, baseline: Any, *, channels: Sequence[str], intent: str | None = None) -> Trial:
    """Read the active offers now and return the trial of them on `channels` (with `intent`, if any)."""
    with database.connection() as conn:
        return Trial(baseline, active_offers(conn), tuple(channels), intent)


def count(
    trial: Trial,
    revision: Any,
    chunk: Chunk,
    scores: Mapping[str, np.ndarray],
    new: Mapping[str, np.ndarray],
    aggregates: Mapping[str, np.ndarray],
    moment: dt.datetime,
    tally: dict[str, Any],
) -> None:
    """Add one chunk's eligibility before and after to `tally` (JSON: channel -> counts)."""
    n, stamp, state = len(chunk.ids), moment.timestamp(), chunk.state
    common: dict[str, Any] = {name: chunk.features.values[:, i].astype(np.float64) for i, name in enumerate(FEATURE_NAMES)}
    common.update({k: np.asarray(scores[k], dtype=np.float64) for k in SCORES if k in scores})
    common.update(tier=state["tier"], points_balance=state["points_balance"], intent=None)
    before = {
        **common,
        "stage": state["stage"],
        "value_segment": state["value_segment"],
        # decisions read these from the state row (0 purchases when there is none)
        "transaction_count": np.array([v or 0 for v in state["transaction_count"]], dtype=np.float64),
        "last_purchase_at": state["last_purchase_at"],
    }
    bought = aggregates["purchases"] > 0
    after = {
        **common,
        "stage": new["stage"],
        "value_segment": new["value_segment"],
        "transaction_count": aggregates["purchases"].astype(np.float64),
        "last_purchase_at": np.where(bought, aggregates["last_purchase_at"], np.nan),
    }
    sides = [
        (trial.baseline, vector.to_columns(trial.baseline.rulesets[RULESET], before)[0]),
        (revision, vector.to_columns(revision.rulesets[RULESET], after)[0]),
    ]
    rule_ids = [rule.id for rule in revision.rulesets[RULESET].rules]
    for channel in trial.channels:
        counts = tally.setdefault(channel, {"customers": 0, "no_offer_before": 0, "no_offer_after": 0, "offers": {}})
        counts["customers"] += n
        any_before, any_after = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        for offer in trial.offers:
            constants = {**offer.facts, "channel": channel, "intent": trial.intent}
            catalog = _catalog_reasons(offer, channel, stamp)
            (_, was), (fired, now) = (_eligible(rev, columns, constants, stamp, not catalog) for rev, columns in sides)
            any_before |= was
            any_after |= now
            mine = counts["offers"].setdefault(
                str(offer.id), {"before": 0, "after": 0, "became_eligible": 0, "became_ineligible": 0, "removed_by": {}}
            )
            mine["before"] += int(was.sum())
            mine["after"] += int(now.sum())
            mine["became_eligible"] += int((now & ~was).sum())
            mine["became_ineligible"] += int((was & ~now).sum())
            removed = mine["removed_by"]
            for reason in catalog:
                removed[reason] = removed.get(reason, 0) + n
            for rule, times in zip(rule_ids, fired.sum(axis=1), strict=True):
                if times:
                    removed[rule] = removed.get(rule, 0) + int(times)
        counts["no_offer_before"] += int((~any_before).sum())
        counts["no_offer_after"] += int((~any_after).sum())


def _eligible(
    revision: Any, columns: Mapping[str, vector.Column], constants: Mapping[str, Any], stamp: float, listed: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Return which rules removed the offer from which customers, and who may have it."""
    fired = revision.evaluate_columns(RULESET, columns, now=stamp, constants=constants).fired
    n = fired.shape[1]
    return fired, (~fired.any(axis=0) if listed else np.zeros(n, dtype=bool))


def _catalog_reasons(offer: Offer, channel: str, stamp: float) -> list[str]:
    """The catalog's own checks a decision makes before the rules (the same rule names as its explanation)."""
    reasons = []
    if not offer.valid_at(stamp):
        reasons.append("outside_validity")
    if channel not in offer.treatments:
        reasons.append("no_treatment")
    return reasons


def result(trial: Trial, tally: Mapping[str, Any]) -> dict[str, Any]:
    """The what-if's offer section: per channel, each offer's reach before and after, and who has none."""
    channels = []
    for channel in trial.channels:
        counts = tally.get(channel) or {"customers": 0, "no_offer_before": 0, "no_offer_after": 0, "offers": {}}
        offers = []
        for offer in trial.offers:
            mine = counts["offers"].get(str(offer.id)) or {
                "before": 0,
                "after": 0,
                "became_eligible": 0,
                "became_ineligible": 0,
                "removed_by": {},
            }
            offers.append(
                {
                    "id": offer.id,
                    "code": offer.code,
                    "name": offer.name,
                    "category": offer.category,
                    "eligible_before": mine["before"],
                    "eligible_after": mine["after"],
                    "became_eligible": mine["became_eligible"],
                    "became_ineligible": mine["became_ineligible"],
                    "removed_by_after": dict(sorted(mine["removed_by"].items(), key=lambda kv: -kv[1])),
                }
            )
        offers.sort(key=lambda o: (-(o["became_eligible"] + o["became_ineligible"]), o["id"]))
        channels.append(
            {
                "channel": channel,
                "customers": counts["customers"],
                "no_eligible_offer": {"before": counts["no_offer_before"], "after": counts["no_offer_after"]},
                "offers": offers,
            }
        )
    return {
        "intent": trial.intent,
        "offers_tried": len(trial.offers),
        "channels": channels,
        "checks": "validity dates, channel treatment and the offers rules; not the contact policy (it reads the "
        "moment's contact history)",
    }
