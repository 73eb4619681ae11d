"""A background poller: what rule files and model files use to notice changes on disk."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable


class Poller:
    """Call `tick` every `seconds` on a daemon thread until stopped; 0 seconds means never.

    A failing tick is logged and the next one retries: a poller that dies would leave a server
    serving stale rules or models without anyone noticing.
    """

    def __init__(self, name: str, seconds: float, tick: Callable[[], object], log: logging.Logger):
        self.name, self.seconds, self.tick, self.log = name, seconds, tick, log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start polling (once; does nothing when seconds is 0)."""
        if self.seconds > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling and wait for a tick in progress."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                self.tick()
            except Exception:  # keep polling; the last good state keeps serving
                self.log.exception(f"{self.name} poll failed")
