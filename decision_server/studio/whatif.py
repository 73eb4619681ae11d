"""What-ifs in the studio: the runs that tried a draft on the whole base, summed up for people, side by side.

A what-if is a dry run of the re-evaluation (jobs/whatif.py starts one; its row is a `bulk_runs`
row of job "what-if" whose `rule_revision` is the id of the draft revision it tried). `summary`
turns a run's raw result into the figures the console and the publish page show; its shape is a
contract (documented on `summary`), so pages may rely on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from decision_server.db import Database
from decision_server.errors import NotFound
from decision_server.jobs import reevaluation
from decision_server.jobs.records import BulkRunRecord

_runs = BulkRunRecord.__table__
# The distributions a what-if counts (before and after), and where their values are declared.
FIELDS = {
    "stage": ("lifecycle", "stage"),
    "value_segment": ("value", "value_segment"),
    "journey_stage": ("journey", "journey_stage"),
    "rfm_segment": ("rfm", "rfm_segment"),
}
NONE = "none"  # a customer without the value (not evaluated yet, or no RFM segment: never bought)


def recent(database: Database, *, limit: int = 20) -> list[dict[str, Any]]:
    """Return the newest what-if runs, newest first, with their rate and time left."""
    query = sa.select(_runs).where(_runs.c.job == reevaluation.WHAT_IF).order_by(_runs.c.id.desc()).limit(limit)
    with database.connection() as conn:
        return [reevaluation.with_rate(dict(r._mapping)) for r in conn.execute(query)]


def get(database: Database, run_id: int) -> dict[str, Any]:
    """Return one what-if run (NotFound when there is no what-if of that id)."""
    with database.connection() as conn:
        row = conn.execute(sa.select(_runs).where(_runs.c.id == run_id, _runs.c.job == reevaluation.WHAT_IF)).first()
    if row is None:
        raise NotFound(f"there is no what-if run {run_id}", errors={"id": [str(run_id)]}, code="run_not_found")
    return reevaluation.with_rate(dict(row._mapping))


def running(database: Database) -> dict[str, Any] | None:
    """Return the what-if running now (one at a time: it holds the what-if lease), or None."""
    query = sa.select(_runs).where(_runs.c.job == reevaluation.WHAT_IF, _runs.c.status == "running").limit(1)
    with database.connection() as conn:
        row = conn.execute(query).first()
    return reevaluation.with_rate(dict(row._mapping)) if row is not None else None


def latest_for(database: Database, revision_id: str) -> dict[str, Any] | None:
    """Return the newest succeeded what-if of the draft revision `revision_id` (a run's row), or None."""
    query = (
        sa.select(_runs)
        .where(_runs.c.job == reevaluation.WHAT_IF, _runs.c.rule_revision == revision_id, _runs.c.status == "succeeded")
        .order_by(_runs.c.id.desc())
        .limit(1)
    )
    with database.connection() as conn:
        row = conn.execute(query).first()
    return reevaluation.with_rate(dict(row._mapping)) if row is not None else None


def orders(revision: Any) -> dict[str, list[str]]:
    """The values of each counted field in the order `revision`'s rule sets declare them (for tables and matrices)."""
    out = {}
    for field, (ruleset, output) in FIELDS.items():
        found = revision.rulesets.get(ruleset)
        declared = found.outputs.get(output) if found is not None else None
        out[field] = list(getattr(declared, "values", None) or [])
    return out


def summary(run: Mapping[str, Any] | None, *, order: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any] | None:
    """Sum a what-if run up for people; None for no run.

    The shape (every count is customers, except offers' `gained`/`lost`: customer-offer pairs):
    - `run_id`, `status`, `revision` (the draft's revision id), `steps`, `source`, `started_by`,
      `started_at`, `finished_at`, `error`, `done`, `total`, `headline` (one line), `headlines`
      (a few sentences, most telling first: what changes, the top moves, segments, tiers, offers);
    - `customers` (evaluated), `changed` (whose state the draft would change), `stage_changed`,
      `value_segment_changed`;
    - `stage_moves`, `value_segment_moves`, `journey_stage_moves`: [{from, to, count}], most first
      ("none" for no value before);
    - `distributions`: {stage|value_segment|journey_stage|rfm_segment: [{value, before, after, change}]},
      values in `order`'s order (orders(revision)), then the others by name;
    - `segments`: [{name, before, after, change}] by segment name;
    - `tiers`: {members, changed, moves: [{from, to, count}]}, or None when the tiers step did not run;
    - `offers`: None without the offers step, else {intent, channels: [{channel, customers,
      no_offer_before, no_offer_after, no_offer_change, gained, lost, offers: [{id, code, name,
      before, after, gained, lost, removed_by}]}]} (`removed_by`: the rule that removes the offer
      from most customers under the draft, or None).
    A run that has not succeeded has the run's fields, the headline and empty sections.
    """
    if run is None:
        return None
    result = run.get("result") or {}
    found = result.get("pass") or {}
    before, after = found.get("before") or {}, found.get("after") or {}
    moves = found.get("moves") or {}
    out: dict[str, Any] = {
        "run_id": run["id"],
        "status": run["status"],
        "revision": run.get("rule_revision"),
        "steps": list(run.get("steps") or []),
        "source": run.get("source"),
        "started_by": run.get("started_by"),
        "started_at": run.get("started_at"),
        "finished_at": run.get("finished_at"),
        "error": run.get("error"),
        "done": run.get("done", 0),
        "total": run.get("total", 0),
        "customers": found.get("customers", 0),
        "changed": found.get("written", 0),
        "stage_moves": _moves(found.get("transitions") or []),
        "value_segment_moves": _moves(moves.get("value_segment") or []),
        "journey_stage_moves": _moves(moves.get("journey_stage") or []),
        "distributions": {
            field: _changes(before.get(field) or {}, after.get(field) or {}, (order or {}).get(field, ())) for field in FIELDS
        },
        "segments": [
            {"name": row["value"], "before": row["before"], "after": row["after"], "change": row["change"]}
            for row in _changes(before.get("segments") or {}, after.get("segments") or {}, ())
        ],
        "tiers": _tiers(result.get("tiers")),
        "offers": _offers(found.get("offers")),
    }
    out["stage_changed"] = sum(m["count"] for m in out["stage_moves"])
    out["value_segment_changed"] = sum(m["count"] for m in out["value_segment_moves"])
    out["headline"] = _headline(out)
    out["headlines"] = _headlines(out)
    return out


def compare(run_a: Mapping[str, Any], run_b: Mapping[str, Any], *, order: Mapping[str, Sequence[str]] | None = None) -> dict:
    """Put two what-if runs side by side: each one's summary, and every figure as rows {…, a, b, diff} (diff = b − a).

    Rows: `totals` [{name, a, b, diff}] (customers, changed, stage_changed, value_segment_changed);
    `stage_moves`, `value_segment_moves`, `journey_stage_moves`, `tier_moves` [{from, to, a, b, diff}];
    `segments` [{name, a, b, diff}] (a, b: the size change under each draft); `distributions`
    {field: [{value, a, b, diff}]} (customers under each draft); `offers` [{channel, measure, a, b,
    diff}] (measure: no_offer_after, gained, lost). A figure one run lacks counts 0 there.
    """
    a, b = summary(run_a, order=order), summary(run_b, order=order)
    assert a is not None and b is not None
    tiers_a, tiers_b = (s["tiers"]["moves"] if s["tiers"] else [] for s in (a, b))
    out: dict[str, Any] = {
        "a": a,
        "b": b,
        "same_revision": a["revision"] == b["revision"],
        "totals": [_row({"name": k}, a[k], b[k]) for k in ("customers", "changed", "stage_changed", "value_segment_changed")],
        "tier_moves": _paired(tiers_a, tiers_b),
        "segments": _keyed(a["segments"], b["segments"], "name", "change"),
        "distributions": {
            field: _keyed(a["distributions"][field], b["distributions"][field], "value", "after") for field in FIELDS
        },
        "offers": _paired_offers(a["offers"], b["offers"]),
    }
    for key in ("stage_moves", "value_segment_moves", "journey_stage_moves"):
        out[key] = _paired(a[key], b[key])
    return out


def _headline(s: Mapping[str, Any]) -> str:
    if s["status"] == "running":
        return f"running: {s['done']:,} of {s['total']:,} customers" if s["total"] else "starting"
    if s["status"] != "succeeded":
        first = (s["error"] or "no reason recorded").splitlines()[0]
        return f"{s['status']}: {first[:160]}"
    parts = [f"{s['changed']:,} of {s['customers']:,} customers would change"]
    if s["stage_moves"]:
        parts.append(f"{s['stage_changed']:,} change stage")
    top = s["value_segment_moves"][0] if s["value_segment_moves"] else None
    if top:
        parts.append(f"{top['count']:,} move {top['from']} → {top['to']}")
    none = [c for c in (s["offers"] or {}).get("channels", []) if c["no_offer_change"]]
    if none:
        worst = max(none, key=lambda c: abs(c["no_offer_change"]))
        parts.append(f"{worst['no_offer_change']:+,} with no offer on {worst['channel']}")
    return " · ".join(parts)


def _headlines(s: Mapping[str, Any], top: int = 3) -> list[str]:
    if s["status"] != "succeeded":
        return [s["headline"]]
    lines = [f"{s['changed']:,} of {s['customers']:,} customers would change"]
    for key, what in (
        ("value_segment_moves", "value segment"),
        ("stage_moves", "stage"),
        ("journey_stage_moves", "journey stage"),
    ):
        lines += [f"{m['count']:,} move {what} {m['from']} → {m['to']}" for m in s[key][:top]]
    changed = sorted((r for r in s["segments"] if r["change"]), key=lambda r: -abs(r["change"]))
    lines += [f"segment {r['name']}: {r['before']:,} → {r['after']:,} members" for r in changed[:top]]
    if s["tiers"] and s["tiers"]["changed"]:
        lines.append(f"{s['tiers']['changed']:,} of {s['tiers']['members']:,} members would change tier")
    for c in (s["offers"] or {}).get("channels", []):
        if c["gained"] or c["lost"] or c["no_offer_change"]:
            lines.append(
                f"offers on {c['channel']}: {c['gained']:,} gained, {c['lost']:,} lost; "
                f"{c['no_offer_before']:,} → {c['no_offer_after']:,} customers with no offer"
            )
    return lines


def _moves(moves: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = [{"from": m["from"] or NONE, "to": m["to"] or NONE, "count": int(m["count"])} for m in moves if m["count"]]
    return sorted(rows, key=lambda m: (-m["count"], m["from"], m["to"]))


def _ordered(names: Iterable[str], order: Sequence[str]) -> list[str]:
    names = set(names)
    return [n for n in order if n in names] + sorted(names - set(order))


def _changes(before: Mapping[str, int], after: Mapping[str, int], order: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {"value": v, "before": before.get(v, 0), "after": after.get(v, 0), "change": after.get(v, 0) - before.get(v, 0)}
        for v in _ordered({*before, *after}, order)
    ]


def _tiers(tiers: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not tiers:
        return None
    return {
        "members": tiers.get("members", 0),
        "changed": tiers.get("changed", 0),
        "moves": _moves(tiers.get("transitions") or []),
    }


def _offers(offers: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not offers:
        return None
    channels = []
    for channel in offers.get("channels") or []:
        rows = [
            {
                "id": o["id"],
                "code": o["code"],
                "name": o["name"],
                "before": o["eligible_before"],
                "after": o["eligible_after"],
                "gained": o["became_eligible"],
                "lost": o["became_ineligible"],
                "removed_by": next(iter(o.get("removed_by_after") or {}), None),
            }
            for o in channel["offers"]
        ]
        none = channel["no_eligible_offer"]
        channels.append(
            {
                "channel": channel["channel"],
                "customers": channel["customers"],
                "no_offer_before": none["before"],
                "no_offer_after": none["after"],
                "no_offer_change": none["after"] - none["before"],
                "gained": sum(r["gained"] for r in rows),
                "lost": sum(r["lost"] for r in rows),
                "offers": rows,
            }
        )
    return {"intent": offers.get("intent"), "channels": channels}


def _row(key: dict[str, Any], a: int, b: int) -> dict[str, Any]:
    return {**key, "a": a, "b": b, "diff": b - a}


def _paired(moves_a: Sequence[Mapping[str, Any]], moves_b: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    counts_a = {(m["from"], m["to"]): m["count"] for m in moves_a}
    counts_b = {(m["from"], m["to"]): m["count"] for m in moves_b}
    keys = sorted({*counts_a, *counts_b}, key=lambda k: (-max(counts_a.get(k, 0), counts_b.get(k, 0)), k))
    return [_row({"from": k[0], "to": k[1]}, counts_a.get(k, 0), counts_b.get(k, 0)) for k in keys]


def _keyed(rows_a: Sequence[Mapping], rows_b: Sequence[Mapping], key: str, figure: str) -> list[dict[str, Any]]:
    values_a = {r[key]: r[figure] for r in rows_a}
    values_b = {r[key]: r[figure] for r in rows_b}
    names = [r[key] for r in rows_a] + [r[key] for r in rows_b if r[key] not in values_a]
    return [_row({key: n}, values_a.get(n, 0), values_b.get(n, 0)) for n in names]


def _paired_offers(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    by_a = {c["channel"]: c for c in (a or {}).get("channels", [])}
    by_b = {c["channel"]: c for c in (b or {}).get("channels", [])}
    rows = []
    for channel in [*by_a, *(c for c in by_b if c not in by_a)]:
        for measure in ("no_offer_after", "gained", "lost"):
            rows.append(
                _row(
                    {"channel": channel, "measure": measure},
                    by_a.get(channel, {}).get(measure, 0),
                    by_b.get(channel, {}).get(measure, 0),
                )
            )
    return rows
