"""Prometheus metrics: every metric of the server defined once, the small calls that count, and the scrape.

Labels are bounded: route templates (never paths), configured channels, rule set, model, job and
connector names, and fixed outcome words. No customer id, decision id or offer code is ever a label.

Several worker processes serve one port (`decision-server serve --workers`), so a scrape must add
up all of them: with PROMETHEUS_MULTIPROC_DIR set before prometheus_client is first imported, each
process writes its values to files there and `render` merges them (prometheus_client's multiprocess
mode). Without it (tests, one process) the default in-memory registry is scraped.
"""

from __future__ import annotations

import atexit
import multiprocessing.util
import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,  # noqa: F401 (app.py's /metrics answers with it)
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
_MS = 0.001
# Fine below a millisecond: a decision's p50 is ~0.5 ms, and a coarse first bucket would hide it.
DECISION_BUCKETS = (
    0.1 * _MS,
    0.2 * _MS,
    0.3 * _MS,
    0.4 * _MS,
    0.5 * _MS,
    0.75 * _MS,
    1 * _MS,
    2 * _MS,
    5 * _MS,
    10 * _MS,
    25 * _MS,
    50 * _MS,
    100 * _MS,
    250 * _MS,
    1.0,
)
INFERENCE_BUCKETS = (
    0.02 * _MS,
    0.05 * _MS,
    0.1 * _MS,
    0.2 * _MS,
    0.3 * _MS,
    0.5 * _MS,
    1 * _MS,
    2 * _MS,
    5 * _MS,
    10 * _MS,
    50 * _MS,
)
HTTP_BUCKETS = (
    0.5 * _MS,
    1 * _MS,
    2.5 * _MS,
    5 * _MS,
    10 * _MS,
    25 * _MS,
    50 * _MS,
    100 * _MS,
    250 * _MS,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
JOB_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0)

HTTP_REQUEST_SECONDS = Histogram(
    "decision_server_http_request_duration_seconds",
    "HTTP requests by route template, method and status, and how long they took.",
    ["route", "method", "status"],
    buckets=HTTP_BUCKETS,
)
# One histogram, not a counter beside it: its _count is the decisions by channel and result, and
# each operation on the hot path costs a few microseconds.
DECISION_SECONDS = Histogram(
    "decision_server_decision_duration_seconds",
    "Decisions by channel and result (offer: one action or more, no_offer, "
    "error), and the time each took, its log write included; _count is the number of decisions.",
    ["channel", "result"],
    buckets=DECISION_BUCKETS,
)
OFFERS_SELECTED = Counter(
    "decision_server_offers_selected", "Actions given in decisions (ranked offers), by channel.", ["channel"]
)
OFFERS_REMOVED = Counter(
    "decision_server_offers_removed",
    "Candidate offers removed from decisions, by the rule set that removed them "
    "(catalog, offers, contact_policy); one candidate removed by two rule sets counts in both.",
    ["ruleset"],
)
RESPONSES = Counter(
    "decision_server_responses",
    "Responses to decisions recorded (retries of the same response not counted), by response.",
    ["response"],
)
DECISION_LOG_WRITES = Counter(
    "decision_server_decision_log_writes",
    "Decision log writes, by result: ok, or failed (the decision answered 503).",
    ["result"],
)
MODEL_FALLBACK = Gauge(
    "decision_server_model_fallback",
    "1 while a model serves its rule-based fallback (missing, broken, stale), 0 while it "
    "serves itself; the highest of the live workers.",
    ["model"],
    multiprocess_mode="livemax",
)
MODEL_INFERENCE_SECONDS = Histogram(
    "decision_server_model_inference_seconds",
    "Time to score one customer with every model (onnxruntime and fallbacks).",
    buckets=INFERENCE_BUCKETS,
)
RULES_REVISION = Gauge(
    "decision_server_rules_revision_info",
    "1 for the rule revision (first 12 hex digits) a live worker serves, 0 for one no longer served.",
    ["revision"],
    multiprocess_mode="livemax",
)
RULES_RELOADS = Counter(
    "decision_server_rules_reloads",
    "Rule revisions this server tried to load (at start-up, on a change, at each poll "
    "while a published one does not validate here), by result: loaded, or refused (the last good one keeps serving).",
    ["result"],
)
JOB_SECONDS = Histogram(
    "decision_server_job_duration_seconds",
    "Bulk job runs (reevaluate, what-if, retrain, catalog) by status (succeeded, "
    "failed, lost: another runner took the run over), and how long each took in this process.",
    ["job", "status"],
    buckets=JOB_BUCKETS,
)
JOB_LAST_SUCCESS = Gauge(
    "decision_server_job_last_success_timestamp_seconds",
    "When a bulk job's run last succeeded (Unix time).",
    ["job"],
    multiprocess_mode="mostrecent",
)
JOB_RECORDS = Counter(
    "decision_server_job_records",
    "Customers re-evaluated by bulk job runs that succeeded (a resumed run counts its whole pass).",
    ["job"],
)
CATALOG_SYNCS = Counter(
    "decision_server_catalog_syncs",
    "Catalog sync runs by connector and status (succeeded, partial, failed).",
    ["connector", "status"],
)
CATALOG_SYNC_OFFERS = Counter(
    "decision_server_catalog_sync_offers",
    "Offers a catalog sync created, updated, left unchanged, retired or failed on.",
    ["connector", "change"],
)
LOYALTY_POINTS = Counter(
    "decision_server_loyalty_points",
    "Loyalty points posted to the ledger (absolute), by kind: earn, redeem, expire, adjust, reverse, refund.",
    ["kind"],
)


def multiprocess_dir() -> str | None:
    """Return the directory the worker processes share their values through, or None (one process)."""
    # The mode prometheus_client chose when it was imported, not whatever the environment says since.
    return (os.environ.get(MULTIPROC_DIR_ENV) or None) if getattr(values.ValueClass, "_multiprocess", False) else None


def init_process() -> None:
    """In a worker that shares a multiprocess directory, drop its live gauges when the process exits."""
    if multiprocess_dir() is None:
        return
    pid = os.getpid()
    # granian's workers are multiprocessing children, which skip atexit but run multiprocessing's
    # finalizers; other servers' workers run atexit. Doing it twice is harmless.
    multiprocessing.util.Finalize(None, multiprocess.mark_process_dead, args=(pid,), exitpriority=10)
    atexit.register(multiprocess.mark_process_dead, pid)


def render() -> bytes:
    """Return every metric in the Prometheus text format, summed over the worker processes."""
    if multiprocess_dir() is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


# -- the counting calls: label children are looked up once, the hot path only adds ---------------

_children: dict[tuple, object] = {}


def _child(metric, *labels: str):
    key = (metric, labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


def request_done(route: str, method: str, status: int, seconds: float) -> None:
    """Count one HTTP request by its route template."""
    # A client may send any method word to an unknown URL: it must not become a label.
    _child(HTTP_REQUEST_SECONDS, route, method if method in _METHODS else "other", str(status)).observe(seconds)


class _Channel:
    """One channel's label children, bound once: the hot path only adds."""

    def __init__(self, channel: str):
        self.results = {result: DECISION_SECONDS.labels(channel, result) for result in ("offer", "no_offer", "error")}
        self.selected = OFFERS_SELECTED.labels(channel)
        self.logged = DECISION_LOG_WRITES.labels("ok")


_channels: dict[str, _Channel] = {}


def decided(channel: str, result: str, seconds: float, *, selected: int = 0, removed: dict[str, int] | None = None) -> None:
    """Count one decision: its result and time, the actions selected, the candidates removed by rule set."""
    bound = _channels.get(channel)
    if bound is None:
        bound = _channels[channel] = _Channel(channel)
    bound.results[result].observe(seconds)
    if result == "error":
        return
    bound.logged.inc()  # a decision is given only once its log is written (a failed write is counted where it fails)
    if selected:
        bound.selected.inc(selected)
    if removed:
        for ruleset, n in removed.items():
            _child(OFFERS_REMOVED, ruleset).inc(n)


def decision_log_failed() -> None:
    """Count one decision log write that failed (the decision answered 503)."""
    _child(DECISION_LOG_WRITES, "failed").inc()


def response_recorded(response: str) -> None:
    """Count one new response to a decision."""
    _child(RESPONSES, response).inc()


def models_loaded(fallbacks: dict[str, bool]) -> None:
    """Record which models fall back in the set that now serves."""
    for model, fallback in fallbacks.items():
        _child(MODEL_FALLBACK, model).set(1 if fallback else 0)


def scored(seconds: float) -> None:
    """Count one customer's scoring time."""
    MODEL_INFERENCE_SECONDS.observe(seconds)


def rules_serving(revision: str, previous: str | None) -> None:
    """Record that this process now serves `revision` (a full id) instead of `previous`."""
    if previous is not None and previous != revision:
        _child(RULES_REVISION, previous[:12]).set(0)
    _child(RULES_REVISION, revision[:12]).set(1)
    _child(RULES_RELOADS, "loaded").inc()


def rules_stopped(revision: str) -> None:
    """Record that this process no longer serves `revision`."""
    _child(RULES_REVISION, revision[:12]).set(0)


def rules_refused() -> None:
    """Count a rule revision this process refused to load."""
    _child(RULES_RELOADS, "refused").inc()


def job_ended(job: str, status: str, seconds: float, *, records: int = 0) -> None:
    """Count one bulk job run that ended in this process."""
    _child(JOB_SECONDS, job, status).observe(seconds)
    if status == "succeeded":
        _child(JOB_LAST_SUCCESS, job).set(time.time())
        if records:
            _child(JOB_RECORDS, job).inc(records)


def catalog_synced(connector: str, status: str, changes: dict[str, int]) -> None:
    """Count one catalog sync run and the offers it changed."""
    _child(CATALOG_SYNCS, connector, status).inc()
    for change, n in changes.items():
        if n:
            _child(CATALOG_SYNC_OFFERS, connector, change).inc(n)


def points_posted(kind: str, points: int) -> None:
    """Count loyalty points posted to the ledger (their absolute value)."""
    if points:
        _child(LOYALTY_POINTS, kind).inc(abs(points))
