"""The revision a process serves, kept in step with the rules folder and the database.

Every process polls both every few seconds. A valid edit on disk is published to the database; a
publication in the database (from the API, the CLI or another machine's disk) is loaded and written
to this machine's rules folder. Whichever changed last wins; a revision that does not validate is
refused and the last good one keeps serving.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from decision_server import metrics
from decision_server.db import Database, to_utc
from decision_server.polling import Poller
from decision_server.rulebook import service
from decision_server.rules.engine import Revision, build_revision
from decision_server.rules.source import DEFAULT_LIMITS, Limits, Problem, RulesInvalid, read_rules_dir, revision_id

log = logging.getLogger("decision_server.rules")
UNREADABLE = "unreadable"  # the folder's `refused` when its files cannot even be read as rule files (too large, not UTF-8)


@dataclasses.dataclass
class DiskState:
    """What the rules folder held when last looked at, and whether it was refused."""

    signature: tuple = ()
    revision: str | None = None
    refused: str | None = None
    problems: list[Problem] = dataclasses.field(default_factory=list)


class Rulebook:
    """Holds the serving Revision of one process and converges it on the published one."""

    def __init__(
        self,
        database: Database,
        rules_dir: Path,
        *,
        backend: str = "durable",
        poll_seconds: float = 2.0,
        limits: Limits = DEFAULT_LIMITS,
    ):
        self.database = database
        self.rules_dir = Path(rules_dir)
        self.backend = backend
        self.limits = limits
        self.poll_seconds = poll_seconds
        self._host = None
        if backend == "durable":
            from decision_server.rules.durable_host import DurableHost

            self._host = DurableHost()
        self._current: Revision | None = None
        self._head: service.Head | None = None
        self._disk = DiskState()
        self._lock = threading.RLock()
        self._poller = Poller("rules-watcher", poll_seconds, self.sync, log)

    # -- serving -------------------------------------------------------------------------------

    @property
    def current(self) -> Revision:
        """Return the revision serving now (read once per decision and keep using it)."""
        revision = self._current
        if revision is None:
            raise RuntimeError("the rulebook has not been started")
        return revision

    def build(self, files: Mapping[str, str], *, run_cases: bool = True) -> Revision:
        """Validate and compile a complete set of files (cases included unless run_cases=False); raise RulesInvalid."""
        return build_revision(files, backend=self.backend, durable_host=self._host, run_cases=run_cases, limits=self.limits)

    def _serve(self, revision: Revision) -> None:
        old, self._current = self._current, revision
        if old is not None and old is not revision:
            old.close()  # the durable host frees its rule sets once in-flight evaluations finish
        metrics.rules_serving(revision.id, old.id if old is not None else None)
        log.info("rules revision serving", extra={"revision": revision.short_id, "rulesets": len(revision.compiled)})

    # -- start, poll, stop --------------------------------------------------------------------

    def start(self) -> None:
        """Load what should serve (fail if nothing valid can), then poll in the background."""
        self.sync(initial=True)
        self._poller.start()

    def stop(self) -> None:
        """Stop polling and free the serving revision."""
        self._poller.stop()
        with self._lock:
            if self._current is not None:
                metrics.rules_stopped(self._current.id)
                self._current.close()
                self._current = None

    def sync(self, *, initial: bool = False) -> None:
        """Look at the rules folder and the database once, and converge."""
        with self._lock:
            with self.database.session() as session:
                head = service.head(session)
            disk_files, disk_changed, disk_mtime = self._read_disk()
            disk_newer = disk_files is not None and (
                head is None or (initial and disk_mtime > to_utc(head.published_at).timestamp()) or (not initial and disk_changed)
            )
            if disk_newer and revision_id(disk_files) != (head.revision if head else None):
                if self._publish_disk(disk_files, initial=initial):
                    return
            elif disk_newer:
                self._disk.refused, self._disk.problems = None, []
            if head is None:
                if self._current is None:
                    raise RulesInvalid(self._disk.problems or [Problem(str(self.rules_dir), 1, 1, "no valid rules to serve")])
                return
            if self._current is None or self._current.id != head.revision:
                self._adopt(head, write_disk=disk_files is None or not disk_changed or not disk_newer)
            self._head = head

    def _read_disk(self) -> tuple[dict[str, str] | None, bool, float]:
        """Return the folder's files (None if unreadable), whether they changed, and the newest mtime."""
        try:
            entries = sorted(self.rules_dir.glob("*.yaml"))
            stats = [(p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in entries]
        except OSError:
            return None, False, 0.0
        signature = tuple(stats)
        changed = signature != self._disk.signature
        if not entries:
            return None, changed, 0.0
        try:
            files = read_rules_dir(self.rules_dir, self.limits)
        except RulesInvalid as exc:
            if changed:  # once per edit, not every poll; the folder's problems say why until it changes
                log.error(
                    "rule files refused; the last good revision keeps serving",
                    extra={"problems": [str(p) for p in exc.problems][:20]},
                )
                self._disk = DiskState(signature, self._disk.revision, UNREADABLE, exc.problems)
            return None, changed, 0.0
        except OSError as exc:
            log.error("rules folder unreadable", extra={"error": str(exc)})
            return None, changed, 0.0
        self._disk.signature = signature
        newest = max(mtime for _, mtime, _ in stats) / 1e9
        return files, changed, newest

    def _publish_disk(self, files: dict[str, str], *, initial: bool) -> bool:
        rev = revision_id(files)
        if rev == self._disk.refused:
            return False
        try:
            revision = self.build(files)
        except RulesInvalid as exc:
            self._disk.refused, self._disk.problems = rev, exc.problems
            metrics.rules_refused()
            log.error(
                "rule files refused; the last good revision keeps serving",
                extra={"revision": rev[:12], "problems": [str(p) for p in exc.problems if p.severity == "error"][:20]},
            )
            return False
        message = f"loaded from {self.rules_dir} at start-up" if initial else f"edited in {self.rules_dir}"
        try:
            with self.database.session(write=True) as session:
                head, changed = service.publish(
                    session, files, author="rules folder", source="startup" if initial else "file", message=message
                )
        except BaseException:
            revision.close()  # never served: free its durable-rules rule sets
            raise
        self._disk = DiskState(self._disk.signature, rev)
        self._head = head
        if changed:
            log.info("rule files published from disk", extra={"revision": rev[:12]})
        self._serve(revision)
        return True

    def _adopt(self, head: service.Head, *, write_disk: bool) -> None:
        with self.database.session() as session:
            files = dict(service.find_revision(session, head.revision).files)
        try:
            revision = self.build(files)
        except RulesInvalid as exc:
            metrics.rules_refused()
            log.error(
                "published rule revision does not validate here; keeping the current one",
                extra={"revision": head.revision[:12], "problems": [str(p) for p in exc.problems][:20]},
            )
            if self._current is None:
                raise
            return
        self._serve(revision)
        if write_disk:
            self._write_disk(files)

    def _write_disk(self, files: Mapping[str, str]) -> None:
        """Make the rules folder hold exactly `files` (atomic per file)."""
        try:
            self.rules_dir.mkdir(parents=True, exist_ok=True)
            for name, text in files.items():
                path = self.rules_dir / name
                if path.exists() and path.read_text(encoding="utf-8") == text:
                    continue
                fd, tmp = tempfile.mkstemp(dir=self.rules_dir, prefix=".tmp-", suffix=".part")
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(text)
                os.replace(tmp, path)
            for path in self.rules_dir.glob("*.yaml"):
                if path.name not in files:
                    path.unlink()
            entries = sorted(self.rules_dir.glob("*.yaml"))
            self._disk = DiskState(tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in entries), revision_id(files))
        except OSError as exc:
            log.warning("could not write the rules folder", extra={"error": str(exc)})

    # -- changes through the API or CLI --------------------------------------------------------

    def publish(
        self,
        files: Mapping[str, str],
        *,
        author: str,
        message: str,
        source: str,
        action: str = "publish",
        expected: str | None = None,
    ) -> tuple[service.Head, bool]:
        """Validate, publish and serve `files` here at once; other processes follow within a poll.

        `expected`: the revision the change was based on; if another publication (from any process)
        has come since, nothing is published and service.PublishedSince is raised.
        """
        with self._lock:
            revision = self.build(files)
            try:
                with self.database.session(write=True) as session:
                    head, changed = service.publish(
                        session, files, author=author, message=message, source=source, action=action, expected=expected
                    )
            except BaseException:
                revision.close()
                raise
            self._head = head
            if self._current is None or self._current.id != revision.id:
                self._serve(revision)
            else:
                revision.close()
            self._write_disk(files)
            return head, changed

    def status(self) -> dict[str, Any]:
        """Describe what serves and what the rules folder holds, for the API and /ready."""
        current = self._current
        head = self._head
        return {
            "revision": current.id if current else None,
            "backend": self.backend,
            "published": None
            if head is None
            else {
                "revision": head.revision,
                "action": head.action,
                "source": head.source,
                "author": head.author,
                "message": head.message,
                "published_at": head.published_at,
            },
            "folder": {
                "path": str(self.rules_dir),
                "revision": self._disk.revision,
                "refused": self._disk.refused,
                "problems": [p.to_dict() for p in self._disk.problems],
            },
            "warnings": [p.to_dict() for p in current.warnings] if current else [],
        }


def shipped_rules_dir() -> Path:
    """Return the folder of the default rule files: inside the installed package, or the checkout's rules/."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "default_rules"
    return installed if installed.is_dir() else package.parent / "rules"


def add_missing_rules(target: Path) -> list[str]:
    """Copy the shipped rule files (and their cases) whose rule set the folder lacks; return their names.

    A folder made by an older version keeps its edits; this only adds what a newer version needs
    (say rfm.yaml for the RFM segments), so an upgrade never overwrites a business user's change.
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    added = []
    for path in sorted(shipped_rules_dir().glob("*.yaml")):
        if not (target / path.name).exists():
            shutil.copyfile(path, target / path.name)
            added.append(path.name)
    return added


def install_default_rules(target: Path) -> int:
    """Copy the default rule files into `target` unless it already holds rule files; return how many were copied."""
    target = Path(target)
    if target.is_dir() and any(target.glob("*.yaml")):
        return 0
    source = shipped_rules_dir()
    target.mkdir(parents=True, exist_ok=True)
    copied = 0
    for path in sorted(source.glob("*.yaml")) + sorted(source.glob("README.md")):
        shutil.copyfile(path, target / path.name)
        copied += 1
    return copied
