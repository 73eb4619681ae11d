"""Whole-base entry points of the bulk pass, one step each: stages, RFM, segments.

The step modules (lifecycle, rfm, segments) compute; the pass (jobs/bulk_pass.py) runs them over
every customer. These are what the API's "for everyone now" calls and the CLI run, so a step
module never calls back into the pass that runs it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from decision_server.db import Database
from decision_server.features import bulk
from decision_server.jobs import bulk_pass
from decision_server.rfm.service import RfmRun


def evaluate_stages(
    database: Database,
    revision: Any,
    models: Any,
    *,
    now: dt.datetime | None = None,
    chunk: int = bulk.CHUNK,
    source: str = "bulk",
) -> dict[str, Any]:
    """Re-evaluate every customer's stage, value and journey stage as of now (or `now`), chunk by chunk.

    The "stages" step of the bulk pass: vectorized rules and batched models; each chunk is one
    transaction that writes only the customers whose stage, value or journey changed, with their
    transitions. RFM scores are read from the state rows. Returns counts: customers, changed
    stages, changed values, and stage changes by (from, to).
    """
    return bulk_pass.run(database, revision, models, steps=("stages",), as_of=now, chunk=chunk, source=source)


def calculate_rfm(database: Database, revision: Any, *, as_of: dt.datetime | None = None, source: str = "bulk") -> RfmRun:
    """Score every buyer as of `as_of` (default now), store the run and the state rows that change (the "rfm" step)."""
    result = bulk_pass.run(database, revision, None, steps=("rfm",), as_of=as_of, source=source)
    out = result["rfm"]
    return RfmRun(out["id"], out["as_of"], out["buyers"], out["cuts"], out["segments"], result["seconds"])


def recompute_segments(
    database: Database,
    rules: Any,
    models: Any,
    *,
    only: Sequence[int] | None = None,
    now: dt.datetime | None = None,
    chunk: int = bulk.CHUNK,
) -> dict[str, int]:
    """Recompute every customer's memberships (of all active segments or `only`), chunk by chunk.

    The "segments" step of the bulk pass: each chunk is one transaction; afterwards each segment's
    size is recorded. Returns sizes by name.
    """
    return bulk_pass.run(database, rules, models, steps=("segments",), as_of=now, chunk=chunk, segment_ids=only)["segments"]
