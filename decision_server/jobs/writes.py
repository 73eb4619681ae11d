"""The bulk pass's writes: one transaction per chunk that writes only what changed, leaving alone
the customers an event updated after the chunk was read (jobs/bulk_pass.py runs it)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from decision_server import fastsql
from decision_server.customers.records import CustomerStateRecord
from decision_server.customers.state import refresh_state
from decision_server.db import Database, upsert, utcnow
from decision_server.jobs.chunks import Chunk, stamps
from decision_server.jobs.evaluation import WRITTEN, Evaluated, Tally
from decision_server.journeys import service as journeys
from decision_server.lifecycle.records import StageTransitionRecord
from decision_server.lifecycle.service import DEFAULT_RULE
from decision_server.segments.records import SegmentMemberRecord

_st = CustomerStateRecord.__table__
_tr = StageTransitionRecord.__table__
_m = SegmentMemberRecord.__table__


def write_chunk(
    database: Database,
    chunk: Chunk,
    evaluated: Evaluated,
    *,
    revision: Any,
    now: dt.datetime,
    source: str,
    tally: Tally,
    update: Statements,
    commit: Callable[[Connection], None],
) -> None:
    """Write one evaluated chunk in one transaction, with the job's checkpoint (`commit`)."""
    ids, state = chunk.ids, chunk.state
    new, changed, moved, rule_ids, wanted = (
        evaluated.new,
        evaluated.changed,
        evaluated.moved,
        evaluated.rule_ids,
        evaluated.wanted,
    )
    with database.connection(write=True) as conn:
        absent = ids[~chunk.has_row & changed]
        if len(absent):  # customers with no events yet have no state row: make them, so changes have a home
            refresh_state(conn, customer_ids=[int(c) for c in absent])
        # An event that rewrote a state row since the chunk was read is newer than this pass: keep it.
        # The rows are locked until this transaction ends (PostgreSQL; SQLite's writer holds the whole
        # database), so an event for one of these customers waits for the chunk rather than being overwritten.
        seen = chunk.stamps
        locked = fastsql.raw_rows(conn, stamps(ids).with_for_update())
        newer = {cid for cid, stamp in locked if cid in seen and seen[cid] != stamp}
        fresh = ~np.isin(ids, np.fromiter(newer, dtype=np.int64, count=len(newer)))
        tally.skipped += int((changed & ~fresh).sum())
        write = np.flatnonzero(changed & fresh)
        if len(write):
            cursor = conn.connection.driver_connection.cursor()
            update.state.execute_columns(
                cursor,
                {"cid": ids[write].tolist(), "updated_at": utcnow(), **{k: [_plain(v) for v in new[k][write]] for k in WRITTEN}},
            )
            stage_moves = write[moved[write]]
            if len(stage_moves):
                update.transitions.execute_columns(
                    cursor,
                    {
                        "customer_id": ids[stage_moves].tolist(),
                        "from_stage": state["stage"][stage_moves].tolist(),
                        "to_stage": new["stage"][stage_moves].tolist(),
                        "at": now,
                        "rule_revision": revision.id,
                        "rule_id": rule_ids[stage_moves].tolist() if rule_ids is not None else DEFAULT_RULE,
                        "source": source,
                        "actor": None,
                        "reason": None,
                    },
                )
                pairs, counts = np.unique(
                    np.array(
                        [f"{a}\x00{b}" for a, b in zip(state["stage"][stage_moves], new["stage"][stage_moves], strict=True)]
                    ),
                    return_counts=True,
                )
                for pair, count in zip(pairs, counts, strict=True):
                    before, after = (None if x == "None" else x for x in str(pair).split("\x00"))
                    tally.moves[(before, after)] = tally.moves.get((before, after), 0) + int(count)
            journeys.record_bulk(
                update.journeys,
                cursor,
                customer_ids=ids[write],
                before=state["journey_stage"][write],
                after=new["journey_stage"][write],
                rule_ids=evaluated.journey_rule_ids[write] if evaluated.journey_rule_ids is not None else None,
                at=now,
                rule_revision=revision.id,
                source=source,
            )
        tally.written += len(write)
        for sid, inside in wanted.items():
            current = chunk.members.get(sid, set())
            leave, join = sorted((current - inside) - newer), sorted((inside - current) - newer)
            if leave:
                for start in range(0, len(leave), 900):
                    conn.execute(sa.delete(_m).where(_m.c.segment_id == sid, _m.c.customer_id.in_(leave[start : start + 900])))
            if join:  # an event may have added the same row meanwhile: keep the first
                conn.execute(
                    upsert(conn, _m).on_conflict_do_nothing(), [{"segment_id": sid, "customer_id": c, "since": now} for c in join]
                )
        commit(conn)  # the job's checkpoint commits with the chunk


class Statements:
    """The pass's writes, compiled once and run on the driver: SQLAlchemy's executemany costs
    about three times the UPDATEs themselves here."""

    def __init__(self, database: Database):
        self.state = fastsql.Prepared(
            database.engine,
            sa.update(_st)
            .where(_st.c.customer_id == sa.bindparam("cid"))
            .values(updated_at=sa.bindparam("updated_at"), **{k: sa.bindparam(k) for k in WRITTEN}),
        )
        self.journeys = journeys.bulk_statement(database.engine)
        self.transitions = fastsql.Prepared(
            database.engine,
            sa.insert(_tr).values(
                **{
                    k: sa.bindparam(k)
                    for k in (
                        "customer_id",
                        "from_stage",
                        "to_stage",
                        "at",
                        "rule_id",
                        "rule_revision",
                        "source",
                        "actor",
                        "reason",
                    )
                }
            ),
        )


def _plain(v: Any) -> Any:
    """numpy scalars to Python values for the driver."""
    if isinstance(v, np.generic):
        return v.item()
    return v
