"""Expensive requests: at most a few at once per process; past that, 429 with Retry-After."""

from __future__ import annotations

import threading

from decision_server.errors import Busy

RETRY_AFTER_SECONDS = 2


def expensive(view):
    """Mark a view method as expensive: it runs only while one of the process's slots is free."""
    view.expensive = True
    # Documented on the operation like the auth failures (flask-smorest reads `_apidoc`).
    doc = getattr(view, "_apidoc", None)
    if doc is None:
        doc = view._apidoc = {}
    doc.setdefault("manual_doc", {}).setdefault("responses", {})["429"] = {
        "description": "as many expensive requests as this server runs at once are running (`too_many_requests`); "
        "retry after the seconds in Retry-After",
        "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    return view


class Slots:
    """The expensive requests one process may run at once (EXPENSIVE_CONCURRENCY); 0 = no limit."""

    def __init__(self, size: int):
        self.size = size
        self._semaphore = threading.BoundedSemaphore(size) if size else None

    def acquire(self) -> None:
        """Take a slot without waiting, or raise Busy: a request never queues behind an expensive one."""
        if self._semaphore is not None and not self._semaphore.acquire(blocking=False):
            raise Busy(
                f"{self.size} expensive request(s) are running in this server; retry in {RETRY_AFTER_SECONDS} s",
                retry_after=RETRY_AFTER_SECONDS,
            )

    def release(self) -> None:
        """Give back a slot taken by acquire()."""
        if self._semaphore is not None:
            self._semaphore.release()
