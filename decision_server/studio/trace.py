"""Trace one customer under a draft next to the serving revision: profile, decision, "why not offer X?",
and the customer's inputs to any rule set now (the studio's "make a case from this customer").

Both sides read the customer once and evaluate them as the bulk pass would (studio/profiles.py);
each side's profile feeds its own decision (a customer whose value segment changes under the draft
sees the offers that follow), and decisions are tried deterministically (decisions.service.Trial:
the learned mean, no Thompson draw), so the two columns differ only because of the rules.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from decision_server.db import Database, to_utc, utcnow
from decision_server.decisions.service import OPTIONAL_RULESETS, RULESETS, DecisionRequest, Trial
from decision_server.errors import NotFound, ValidationError
from decision_server.rules.engine import build_revision
from decision_server.rules.ir import Type
from decision_server.rules.model import from_epoch
from decision_server.studio import profiles

ACTIONS = 3  # offers a trace shows as made, as the console's "decide now"
# What the profile rows show, in order: field, label.
PROFILE_ROWS = (
    ("stage", "Lifecycle stage"),
    ("value_score", "Value score"),
    ("value_segment", "Value segment"),
    ("journey_stage", "Journey stage"),
    ("rfm_segment", "RFM segment"),
    ("tier", "Tier"),
    ("segments", "Segments"),
)
# The decision's facts the profile feeds (a draft's recomputed stage, segment, ... replace the stored ones).
DECISION_PROFILE = ("stage", "value_segment", "rfm_segment", "journey_stage", "tier")
RULESET_NAMES = {"offers": "offer eligibility", "contact_policy": "the contact policy", "catalog": "the catalog"}
CATALOG_REASONS = {"no_treatment": "no treatment for the channel", "outside_validity": "outside its validity dates"}


@dataclasses.dataclass(frozen=True)
class Side:
    """The customer under one revision: profile, the decision tried, and each offer's fate by code."""

    revision: str
    profile: profiles.Profile
    decision: dict[str, Any]
    candidates: dict[str, dict[str, Any]]  # code -> eligible, removed_by, priority, rank, offered, factors


@dataclasses.dataclass(frozen=True)
class Trace:
    """One customer traced on one channel: the serving side, and the draft's when there is a draft."""

    customer_id: str
    channel: str
    intent: str | None
    at: dt.datetime
    stored: dict[str, Any]
    serving: Side
    draft: Side | None  # None: no draft (or it changes nothing): both sides are the same
    offers: dict[str, str]  # active offers: code -> name, in catalog order

    @property
    def shown(self) -> Side:
        """The side the user asks about: the draft's, else the serving one."""
        return self.draft or self.serving


@contextlib.contextmanager
def draft_revision(files: Mapping[str, str] | None, *, serving: Any, limits: Any = None) -> Iterator[Any]:
    """Build a draft's files as a revision for the trace (None when there is no draft or it is the
    serving revision's); closed afterwards. Raises RulesInvalid with the problems of a draft that does not validate."""
    if not files or dict(files) == dict(serving.files):
        yield None
        return
    built = build_revision(files, backend="python", run_cases=False, limits=limits)
    try:
        yield built
    finally:
        built.close()


def trace(
    database: Database,
    *,
    customer_id: str,
    channel: str,
    intent: str | None,
    serving: Any,
    draft: Any | None,
    models: Any,
    decider: Any,
    margin: Decimal,
    now: dt.datetime | None = None,
) -> Trace:
    """Trace a customer (raise customer_not_found) on `channel` under the serving revision and the draft's."""
    if channel not in decider.channels:
        raise ValidationError(f"unknown channel {channel!r}", errors={"channel": [f"one of: {', '.join(decider.channels)}"]})
    now = to_utc(now) if now is not None else utcnow()
    customer = profiles.read_customer(database, external_id=customer_id, models=models, now=now)
    margin = Decimal(margin)

    def side(revision: Any) -> Side:
        profile = profiles.under(revision, customer, models, now=now, margin=margin)
        decision = decider.trial(
            DecisionRequest(customer_id, channel, {"intent": intent} if intent else {}, ACTIONS),
            Trial(revision, {k: profile.values[k] for k in DECISION_PROFILE}),
            now=now,
        )
        return Side(revision.id, profile, decision, _candidates(decision))

    return Trace(
        customer_id,
        channel,
        intent or None,
        now,
        customer.stored,
        side(serving),
        side(draft) if draft is not None else None,
        {o.code: o.name for o in decider.catalog.offers},
    )


def _candidates(decision: dict[str, Any]) -> dict[str, dict[str, Any]]:
    ranked = {code: rank for rank, code in enumerate(decision["ranked"], start=1)}
    out = {}
    for c in decision["explanation"]:
        rank = ranked.get(c["code"])
        out[c["code"]] = {**c, "rank": rank, "offered": rank is not None and rank <= ACTIONS}
    return out


def profile_rows(found: Trace) -> list[dict[str, Any]]:
    """The profile as rows: label, stored value, each side's value and deciding rule, whether the draft changes it."""
    rows = []
    for field, label in PROFILE_ROWS:
        serving = found.serving.profile
        draft = found.draft.profile if found.draft else None
        row = {
            "field": field,
            "label": label,
            "stored": found.stored.get(field),
            "serving": serving.values.get(field),
            "serving_rule": serving.rules.get(field),
            "draft": draft.values.get(field) if draft else None,
            "draft_rule": draft.rules.get(field) if draft else None,
        }
        if field == "tier":
            row["serving_note"] = _qualifies(serving)
            row["draft_note"] = _qualifies(draft) if draft else None
        if field == "rfm_segment":
            row["serving_note"] = serving.values.get("rfm")
            row["draft_note"] = draft.values.get("rfm") if draft else None
        row["changed"] = draft is not None and (row["draft"] != row["serving"] or row["draft_rule"] != row["serving_rule"])
        row["drift"] = field in found.stored and row["stored"] != row["serving"]  # the next pass would change it
        rows.append(row)
    return rows


def _qualifies(profile: profiles.Profile) -> str | None:
    qualifies = profile.values.get("tier_qualifies")
    return f"qualifies for {qualifies}" if qualifies and qualifies != profile.values.get("tier") else None


def offer_rows(found: Trace) -> list[dict[str, Any]]:
    """Every active offer: each side's candidate, whether the draft changes its fate; offered first, by rank."""
    rows = []
    for code, name in found.offers.items():
        serving = found.serving.candidates.get(code)
        draft = found.draft.candidates.get(code) if found.draft else None
        changed = draft is not None and serving is not None and _fate(draft) != _fate(serving)
        rows.append({"code": code, "name": name, "serving": serving, "draft": draft, "changed": changed})
    shown = (lambda r: r["draft"]) if found.draft else (lambda r: r["serving"])
    rows.sort(key=lambda r: (shown(r) is None, (shown(r) or {}).get("rank") or 1_000_000))
    return rows


def _fate(candidate: dict[str, Any]) -> tuple:
    return (candidate["eligible"], candidate["rank"], tuple(r["rule"] for r in candidate["removed_by"]))


def why_not(found: Trace, offer_code: str) -> str:
    """Say in one line why the traced customer is not offered `offer_code` (or that they are)."""
    code = (offer_code or "").strip()
    side = found.shown
    where = "Under your draft" if found.draft else f"Under the serving rules ({found.serving.revision[:12]})"
    candidate = side.candidates.get(code)
    if candidate is None:
        return f"{code or 'That'} is not an active offer."
    answer = f"{where}, {code} {_fate_line(candidate, side, found.channel)}"
    if found.draft:
        before = found.serving.candidates.get(code)
        if before is not None and _fate(before)[:2] != _fate(candidate)[:2]:
            answer += f"; under the serving rules it {_fate_line(before, found.serving, found.channel, short=True)}"
    return answer + "."


def _fate_line(candidate: dict[str, Any], side: Side, channel: str, *, short: bool = False) -> str:
    if not candidate["eligible"]:
        first, *more = candidate["removed_by"]
        also = f"also removed by {', '.join(r['rule'] for r in more)}" if more and not short else ""
        if first["ruleset"] == "catalog":
            what = CATALOG_REASONS.get(first["rule"], first.get("reason") or first["rule"])
            return f"is not offered on {channel} (catalog: {what}{'; ' + also if also else ''})"
        line = f"is removed by rule {first['rule']} of {RULESET_NAMES.get(first['ruleset'], first['ruleset'])}"
        if first.get("reason") and not short:
            line += f": {first['reason'].rstrip('.')}"
        return line + (f" ({also})" if also else "")
    rank, priority = candidate["rank"], candidate["priority"]
    if candidate["offered"]:
        return f"is offered: it ranks {_ordinal(rank)} (priority {priority:.4g})"
    last = side.candidates[side.decision["ranked"][ACTIONS - 1]]
    line = f"is eligible but ranks {_ordinal(rank)} (priority {priority:.4g}"
    return line + ("" if short else f"; the {_ordinal(ACTIONS)} has {last['priority']:.4g}") + ")"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# --- make a case from this customer ------------------------------------------------------------


def needs_offer(revision: Any, ruleset: str) -> bool:
    """Tell whether a rule set is evaluated per offer in a decision (its inputs need a channel and an offer)."""
    inputs = revision.rulesets[ruleset].inputs
    return ruleset in RULESETS + OPTIONAL_RULESETS or any(name.startswith("offer.") for name in inputs)


def customer_inputs(
    database: Database,
    *,
    revision: Any,
    ruleset: str,
    customer_id: str,
    models: Any,
    decider: Any,
    margin: Decimal,
    channel: str | None = None,
    intent: str | None = None,
    offer_code: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """A real customer's inputs to `ruleset` now, as a case (JSON-ready): given, now, expect, fired.

    Profile-level rule sets read the customer as the bulk pass computes them under `revision`
    (lifecycle reads the stage the customer is in before it decides). Decision-level ones (offers,
    contact policy, arbitration, learning, any with offer.* inputs) need `channel` and `offer_code`:
    their inputs are that offer's row as the decision builds it. `missing` lists the inputs the
    customer has no value for (left out of `given`, as a case leaves out what is missing).
    """
    if ruleset not in revision.rulesets:
        raise NotFound(f"no rule set named '{ruleset}' in revision {revision.id[:12]}", code="ruleset_not_found")
    spec = revision.rulesets[ruleset]
    now = to_utc(now) if now is not None else utcnow()
    now = now.replace(microsecond=0)
    customer = profiles.read_customer(database, external_id=customer_id, models=models, now=now)
    profile = profiles.under(revision, customer, models, now=now, margin=Decimal(margin))
    facts = dict(profile.facts)
    for name in spec.inputs:  # a rule set that decides one of its own inputs reads the value before (lifecycle: stage)
        if name in spec.outputs and name in customer.stored:
            facts[name] = customer.stored[name]
    offer = None
    if needs_offer(revision, ruleset):
        errors = {}
        if channel not in decider.channels:
            errors["channel"] = [f"one of: {', '.join(decider.channels)}"]
        codes = [o.code for o in decider.catalog.offers]
        if offer_code not in codes:
            errors["offer"] = [f"an active offer: {', '.join(codes)}" if codes else "there is no active offer"]
        if errors:
            raise ValidationError(f"rule set '{ruleset}' is evaluated per offer: name a channel and an offer", errors=errors)
        decision = decider.trial(
            DecisionRequest(customer_id, channel, {"intent": intent} if intent else {}, ACTIONS),
            Trial(revision, {k: profile.values[k] for k in DECISION_PROFILE}),
            now=now,
        )
        facts, offer = dict(decision["rows"][offer_code]), offer_code
    given, absent = {}, []
    for name, input_spec in spec.inputs.items():
        value = _case_value(input_spec.type, facts.get(name))
        if value is None:
            absent.append(name)
        else:
            given[name] = value
    result = revision.evaluate(ruleset, given, now=now.timestamp(), backend="python")
    outcome = [dict(o) for o in result.outcome] if isinstance(result.outcome, tuple) else result.outcome
    return {
        "ruleset": ruleset,
        "revision": revision.id,
        "customer_id": customer_id,
        "channel": channel if offer else None,
        "intent": (intent or None) if offer else None,
        "offer": offer,
        "now": _iso(now.timestamp()),
        "given": given,
        "missing": absent,
        "expect": outcome,
        "fired": result.fired_ids,
    }


def _case_value(kind: Type, value: Any) -> Any:
    """An input's value as a case file writes it: ISO text for times, lists for lists, plain numbers."""
    value = profiles.plain(value)
    if value is None:
        return None
    if kind is Type.TIMESTAMP:
        if isinstance(value, dt.datetime):
            return _iso(to_utc(value).timestamp())
        if isinstance(value, (int, float)):
            return _iso(float(value))
        return value
    if kind is Type.LIST:
        return list(value)
    if kind is Type.NUMBER and isinstance(value, (float, Decimal)):
        number = round(float(value), 6)
        return int(number) if number.is_integer() else number
    return value


def _iso(stamp: float) -> str:
    """Epoch seconds as a case's time: 2026-05-25T10:11:12Z (whole seconds)."""
    return from_epoch(float(int(stamp)))


def case_from_customer(
    app: Any,
    files: Mapping[str, str],
    rules_file: str,
    customer_id: str,
    *,
    channel: str | None = None,
    offer_code: str | None = None,
    intent: str | None = None,
) -> dict[str, Any]:
    """The cases page's "make a case from this customer": `customer_inputs` for the rule set of
    `rules_file` under the draft `files` (the app's runtime: rulebook, models, decider), with a case name."""
    ext = app.extensions
    serving = ext["rulebook"].current
    with draft_revision(files, serving=serving, limits=ext["rulebook"].limits) as draft:
        revision = draft or serving
        ruleset = next((rs.name for rs in revision.rulesets.values() if rs.file == rules_file), None)
        if ruleset is None:
            raise NotFound(f"{rules_file} holds no rule set", code="ruleset_not_found")
        made = customer_inputs(
            ext["database"],
            revision=revision,
            ruleset=ruleset,
            customer_id=customer_id,
            models=ext["models"].current,
            decider=ext["decider"],
            margin=ext["config"].default_margin,
            channel=channel,
            intent=intent,
            offer_code=offer_code,
        )
    where = f" on {made['channel']}, {made['offer']}" if made["offer"] else ""
    return {**made, "name": f"customer {customer_id}{where} as of {made['now'][:10]}"}
