"""Catalog sync: read a connector's upstream, check every offer, write them all or nothing, record the run."""

from __future__ import annotations

import collections
import copy
import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import marshmallow as ma
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from decision_server import metrics
from decision_server.db import Database, utcnow
from decision_server.errors import Conflict, ValidationError
from decision_server.offers import connectors, service, upstream
from decision_server.offers.records import (
    CatalogConnectorRecord,
    CatalogSyncRunRecord,
    OfferRecord,
)
from decision_server.offers.schemas import OfferInSchema

log = logging.getLogger("decision_server.offers.sync")
_o = OfferRecord.__table__
_c = CatalogConnectorRecord.__table__
_r = CatalogSyncRunRecord.__table__
STATUSES = ("succeeded", "partial", "failed")
# A broken upstream can fail every one of a million items: the count is exact, the reasons are a sample.
MAX_FAILURES_KEPT = 500
_CHUNK = 500  # ids per IN (...): far below SQLite's limit on bound parameters
_ABSENT = object()


class _Refused(Exception):
    """The run must write nothing; the message is the run's error."""


def run_sync(
    database: Database,
    connector_name: str,
    *,
    channels: Mapping[str, str],
    words: Mapping[str, tuple[str, ...]],
    actor: str | None = None,
    now: dt.datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Sync the offers of one connector from its upstream and return the recorded run.

    Raises only for the caller's mistakes (unknown or disabled connector); whatever the upstream
    does ends in a run record with status succeeded, partial (some items failed) or failed.
    """
    clock = (lambda: now) if now is not None else utcnow
    with database.session() as session:
        connector = connectors.get(session, connector_name)
    if not connector["enabled"]:
        message = f"connector {connector_name!r} is disabled; enable it to sync"
        raise Conflict(message, code="connector_disabled", errors={"enabled": [message]})
    run: dict[str, Any] = {
        "connector": connector_name,
        "started_at": clock(),
        "actor": actor[:100] if actor else None,
        "created": 0,
        "updated": 0,
        "unchanged": 0,
        "retired": 0,
        "failed": 0,
        "failures": [],
        "error": None,
        "attempts": 0,
    }
    source, secret = _source(connector)
    try:
        if connector["auth_env"] and not secret:
            raise _Refused(
                f"the environment variable {connector['auth_env']} (auth_env of connector {connector_name}) "
                "is not set on this server; nothing was fetched"
            )
        items = upstream.fetch_items(source, sleep=sleep)
        offers, seen, run["failures"] = _prepare(items, connector, channels, words)
        with database.connection(write=True) as conn:
            run.update(_write(conn, connector, offers, seen, run["failures"], clock()))
        run["status"] = "partial" if run["failures"] else "succeeded"
    except (upstream.FetchError, _Refused) as exc:
        run.update(status="failed", error=str(exc), created=0, updated=0, unchanged=0, retired=0)
    except Exception as exc:  # a database failure mid-write, say: rolled back, and the run must still be recorded
        log.exception("catalog sync failed", extra={"connector": connector_name})
        run.update(
            status="failed",
            created=0,
            updated=0,
            unchanged=0,
            retired=0,
            error=f"the sync failed unexpectedly ({type(exc).__name__}; the server log has the details); nothing was changed",
        )
    run["attempts"], run["finished_at"], run["failed"] = source.attempts, clock(), len(run["failures"])
    run["failures"] = run["failures"][:MAX_FAILURES_KEPT]
    if secret:  # an upstream may echo our request back in an error; its text must not carry the secret
        run["error"] = run["error"] and run["error"].replace(secret, "***")
        run["failures"] = [{**f, "reason": f["reason"].replace(secret, "***")} for f in run["failures"]]
    with database.connection(write=True) as conn:
        run["id"] = conn.execute(sa.insert(_r).values(**run).returning(_r.c.id)).scalar_one()
    metrics.catalog_synced(
        connector_name, run["status"], {k: run[k] for k in ("created", "updated", "unchanged", "retired", "failed")}
    )
    # Not the counts as top-level extras: `created` is a LogRecord attribute of its own.
    log.log(
        logging.WARNING if run["status"] == "failed" else logging.INFO,
        "catalog sync finished",
        extra={
            "connector": connector_name,
            "sync_status": run["status"],
            "error": run["error"],
            "counts": {k: run[k] for k in ("created", "updated", "unchanged", "retired", "failed", "attempts")},
        },
    )
    return run


def runs(
    session: Session, *, limit: int, after: list | None = None, connector: str | None = None, status: str | None = None
) -> list[dict[str, Any]]:
    """Return up to limit + 1 sync runs, newest first, after the (started_at, id) position `after`."""
    select = sa.select(_r).order_by(_r.c.started_at.desc(), _r.c.id.desc()).limit(limit + 1)
    if after is not None:
        if len(after) != 2 or not isinstance(after[0], dt.datetime):
            raise ValidationError("not a cursor of this listing", errors={"cursor": ["not a next_cursor of /catalog/sync-runs"]})
        started, run_id = after
        select = select.where(sa.or_(_r.c.started_at < started, sa.and_(_r.c.started_at == started, _r.c.id < run_id)))
    for column, value in ((_r.c.connector, connector), (_r.c.status, status)):
        if value is not None:
            select = select.where(column == value)
    return [dict(r._mapping) for r in session.execute(select)]


def _source(connector: Mapping[str, Any]) -> tuple[upstream.Source, str | None]:
    """Build the request settings; the secret is read from the environment now and kept nowhere."""
    secret = os.environ.get(connector["auth_env"]) if connector["auth_env"] else None
    headers = {connector["auth_header"]: secret} if secret else {}
    return upstream.Source(
        url=connector["url"],
        items_path=connector["items_path"],
        next_path=connector["next_path"],
        timeout=connector["timeout_seconds"],
        retries=connector["retries"],
        headers=headers,
    ), secret


def _prepare(
    items: list[dict[str, Any]], connector: Mapping[str, Any], channels: Mapping[str, str], words: Mapping[str, tuple[str, ...]]
) -> tuple[dict[str, dict[str, Any]], set[str], list[dict[str, Any]]]:
    """Map and check every item; return the good offers by external id, every external id seen, and failures."""
    id_path = connector["mapping"]["external_id"]
    keys = [_external_id(upstream.resolve(item, id_path, None)) for item in items]
    counts = collections.Counter(k for k in keys if k is not None)
    offers: dict[str, dict[str, Any]] = {}
    failures: list[dict[str, Any]] = []
    for index, (item, key) in enumerate(zip(items, keys, strict=True)):
        if key is None:
            failures.append(
                {"external_id": None, "reason": f"item {index}: no external id (text or whole number) at `{id_path}`"}
            )
        elif counts[key] > 1:
            failures.append(
                {
                    "external_id": key,
                    "reason": f"item {index}: the external id appears {counts[key]} times "
                    "in the catalog; none of them was written",
                }
            )
        else:
            try:
                offers[key] = _offer(item, key, connector, channels, words)
            except ValidationError as exc:
                failures.append({"external_id": key, "reason": f"item {index}: {_reasons(exc.errors)}"})
    return offers, set(counts), failures


def _external_id(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # many APIs number their items
    return value if isinstance(value, str) and 1 <= len(value) <= 100 else None


def _offer(
    item: Mapping[str, Any],
    key: str,
    connector: Mapping[str, Any],
    channels: Mapping[str, str],
    words: Mapping[str, tuple[str, ...]],
) -> dict[str, Any]:
    """Map one upstream item onto the connector's defaults and check it like an offer sent to the API."""
    data = copy.deepcopy(connector["defaults"])
    for field, path in connector["mapping"].items():
        value = upstream.resolve(item, path, _ABSENT)
        if field.startswith("treatments."):
            _, channel, name = field.split(".")
            if value is not _ABSENT and value is not None:  # an item without, say, an SMS text has no SMS treatment
                treatments = data["treatments"] = dict(data.get("treatments") or {})
                treatments[channel] = {**treatments.get(channel, {}), name: value}
        elif value is not _ABSENT:  # an explicit null is a value (no product category); a missing field keeps the default
            data[field] = value
    data.update(external_id=key, external_system=connector["name"])
    try:
        offer = OfferInSchema().load(data)
    except ma.ValidationError as exc:
        raise ValidationError("invalid offer", errors=exc.normalized_messages()) from None
    service.check(offer, channels=channels, words=words)
    offer.setdefault("valid_from", None)
    offer.setdefault("valid_to", None)
    if "status" not in connector["mapping"] and "status" not in connector["defaults"]:
        offer.pop("status")  # the catalog's people decide: see _write
    return offer


def _reasons(errors: Mapping[Any, Any], prefix: str = "") -> str:
    """Render {field: [messages]} (nested the marshmallow way, too) as `field: message, field.sub: message`."""
    parts = []
    for field, messages in sorted(errors.items(), key=lambda kv: str(kv[0])):
        if isinstance(messages, Mapping):
            parts.append(_reasons(messages, f"{prefix}{field}."))
        else:
            parts.append(f"{prefix}{field}: {'; '.join(map(str, messages if isinstance(messages, list) else [messages]))}")
    return ", ".join(parts)


def _write(
    conn: Connection,
    connector: Mapping[str, Any],
    offers: dict[str, dict[str, Any]],
    seen: set[str],
    failures: list[dict[str, Any]],
    now: dt.datetime,
) -> dict[str, int]:
    """Apply one fetch to the offers table in the caller's transaction; raise _Refused to write nothing."""
    name = connector["name"]
    # Two syncs of one connector queue here (PostgreSQL; SQLite's write lock already serializes them).
    if conn.execute(sa.select(_c.c.id).where(_c.c.name == name).with_for_update()).first() is None:
        raise _Refused(f"connector {name!r} was deleted during the sync")
    # An offer someone tagged with this system but no external id is not the upstream's to retire.
    owned = sa.select(_o).where(_o.c.external_system == name, _o.c.external_id.is_not(None))
    existing = {r.external_id: r for r in conn.execute(owned)}
    _drop_code_clashes(conn, name, offers, existing, failures)
    live = [r for r in existing.values() if r.status != "retired"]
    retire = [r.id for r in live if r.external_id not in seen]
    limit = connector["max_retire_fraction"]
    if retire and len(retire) > limit * len(live):
        raise _Refused(
            f"the upstream no longer lists {len(retire)} of the {len(live)} live offers of {name} "
            f"({len(retire) / len(live):.0%}), more than max_retire_fraction {limit:g} allows; it is more "
            "likely broken than emptied, so nothing was changed (raise max_retire_fraction if it is real)"
        )
    counts = {"created": 0, "updated": 0, "unchanged": 0, "retired": len(retire)}
    new, changed, unchanged = [], [], []
    for key, offer in offers.items():
        row = existing.get(key)
        if row is None:
            new.append({"status": "active", **offer, "created_at": now, "updated_at": now, "last_synced_at": now})
            continue
        if "status" not in offer:  # a paused offer stays paused; one that comes back from retirement is live again
            offer["status"] = "active" if row.status == "retired" else row.status
        if any(row._mapping[k] != v for k, v in offer.items()):
            changed.append((row, offer))
        else:
            unchanged.append(row.id)
    # Codes are unique: move changing codes out of the way first, so two offers may swap theirs.
    for row, offer in changed:
        if offer["code"] != row.code:
            conn.execute(sa.update(_o).where(_o.c.id == row.id).values(code=f"~{row.id}"))
    for row, offer in changed:
        conn.execute(sa.update(_o).where(_o.c.id == row.id).values(**offer, updated_at=now, last_synced_at=now))
    if new:
        conn.execute(sa.insert(_o), new)
    for ids in _chunks(unchanged):
        # updated_at says when the offer last changed: a sync that changes nothing must not move it.
        conn.execute(sa.update(_o).where(_o.c.id.in_(ids)).values(last_synced_at=now, updated_at=_o.c.updated_at))
    _retire(conn, retire, now)
    counts.update(created=len(new), updated=len(changed), unchanged=len(unchanged))
    return counts


def _drop_code_clashes(
    conn: Connection, name: str, offers: dict[str, dict[str, Any]], existing: Mapping[str, Any], failures: list[dict[str, Any]]
) -> None:
    """Fail the items whose code another offer keeps, until every remaining code is free."""
    holders = {r.code: r for r in conn.execute(sa.select(_o.c.id, _o.c.code, _o.c.external_system, _o.c.external_id))}
    while True:
        # Offers this sync rewrites give their code up; any other offer keeps its own.
        rewritten = {existing[k].id for k in offers if k in existing}
        claimed: dict[str, str] = {}
        clashes: list[tuple[str, str]] = []
        for key, offer in offers.items():
            code, holder = offer["code"], holders.get(offer["code"])
            own = existing[key].id if key in existing else None
            if code in claimed:
                clashes.append((key, f"code {code} is also the code of external id {claimed[code]} in this catalog"))
            elif holder is not None and holder.id != own and holder.id not in rewritten:
                whose = (
                    f"external id {holder.external_id} of this connector"
                    if holder.external_system == name
                    else f"{holder.external_system or 'the API'}" + (f" {holder.external_id}" if holder.external_id else "")
                )
                clashes.append((key, f"code {code} is taken by offer {holder.id} ({whose})"))
            else:
                claimed[code] = key
        if not clashes:
            return
        for key, reason in clashes:
            offers.pop(key)
            failures.append({"external_id": key, "reason": reason})


def _retire(conn: Connection, ids: list[int], now: dt.datetime) -> None:
    """Retire offers the upstream no longer lists: never deleted, so decisions that made them stay readable."""
    for chunk in _chunks(ids):
        conn.execute(sa.update(_o).where(_o.c.id.in_(chunk)).values(status="retired", updated_at=now))


def _chunks(ids: list[int]) -> list[list[int]]:
    return [ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK)]
