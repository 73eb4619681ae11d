"""Who runs a job: this process's runner identity, and whether the process an identity names is gone.

An identity is `host:pid:place` (a process) or `host:pid:place:thread` (a run it started). `place`
is 8 hex characters of the kernel's boot id and the pid namespace, so a pid is only trusted where
it means the same process: on the same host, since its last boot, in the same container. A lease
whose holder is certainly gone is taken over at once; any other holder keeps its lease until it
expires (another host, another container, or an identity written before `place` existed).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import socket
import threading
from collections import Counter
from pathlib import Path

_IDENTITY = re.compile(r"^(?P<host>.+):(?P<pid>\d+):(?P<place>[0-9a-f]{8})(?::\d{1,5})?$")
# /proc/stat's btime is whole seconds, rounded down, so a start time read from /proc may be up to a
# second early (never late); a pid whose process started later than this after the holder last
# proved alive cannot be the holder.
_SLACK = dt.timedelta(seconds=1)
_held: Counter[str] = Counter()  # identities whose runs this process is running now
_lock = threading.Lock()
_place: str | None = None


def place() -> str:
    """Return this process's place: a hash of the kernel's boot id and its pid namespace."""
    global _place
    if _place is None:
        parts = []
        for read in (
            lambda: Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
            lambda: os.readlink("/proc/self/ns/pid"),
        ):
            try:
                parts.append(read())
            except OSError:  # not Linux: pids are still this host's, there is no boot id to tell reboots apart
                parts.append("")
        _place = hashlib.sha256("|".join(parts).encode()).hexdigest()[:8]
    return _place


def runner_name() -> str:
    """Return this process's identity: host, pid and place."""
    return f"{socket.gethostname()}:{os.getpid()}:{place()}"


def hold(identity: str) -> None:
    """Note that a thread of this process runs under `identity` (until `release`)."""
    with _lock:
        _held[identity] += 1


def release(identity: str) -> None:
    """Note that a run under `identity` has ended in this process."""
    with _lock:
        _held[identity] -= 1
        if _held[identity] <= 0:
            del _held[identity]


def gone(identity: str | None, *, alive_at: dt.datetime) -> bool:
    """Say whether the process `identity` names has certainly stopped (False when it cannot be told from here).

    `alive_at` is a moment the holder was known to be running (when it took the lease), so that a
    pid that now names a process started after it is known to be another process.
    """
    match = _IDENTITY.match(identity or "")
    if match is None or match["host"] != socket.gethostname() or match["place"] != place():
        return False
    pid = int(match["pid"])
    if pid == os.getpid():  # this process: gone when none of its threads runs under that identity any more
        with _lock:
            return _held[identity] == 0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # a process of another user has that pid: alive, and maybe the holder
        pass
    stat = _stat(pid)
    if stat is None:
        return False
    state, started = stat
    return state == "Z" or (started is not None and started > alive_at + _SLACK)


def _stat(pid: int) -> tuple[str, dt.datetime | None] | None:
    """The state and start time of process `pid` from /proc (None where there is no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # after the command, which may hold spaces
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
        ticks = int(fields[19])  # field 22, starttime: clock ticks after boot
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return fields[0], dt.datetime.fromtimestamp(btime + ticks / os.sysconf("SC_CLK_TCK"), dt.UTC)
