"""The models folder: versions with their cards, which version is active, and the promotion log.

    models_onnx/<name>/<version>/model.onnx   the graph
    models_onnx/<name>/<version>/card.json    what it is, how it was trained, its sha256
    models_onnx/<name>/ACTIVE                 the version that serves (absent: the newest)
    models_onnx/<name>/history.jsonl          every promotion and rollback, appended

Models are files, never database rows: the folder is what ships to every server, and ACTIVE is
replaced atomically (write + rename), so a server polling it sees the old or the new version.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, NoReturn

from decision_server.db import utcnow
from decision_server.errors import NotFound, ValidationError

VERSION = re.compile(r"^\d{8}-\d{6}(-\d+)?$")
MODEL_FILE, CARD_FILE, ACTIVE_FILE, HISTORY_FILE = "model.onnx", "card.json", "ACTIVE", "history.jsonl"


def sha256_of(path: Path) -> str:
    """Return the hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def new_version(models_dir: Path, name: str, now: dt.datetime | None = None) -> str:
    """Return a fresh version id for `name`: the UTC training time, suffixed if taken."""
    base = (now or utcnow()).strftime("%Y%m%d-%H%M%S")
    version, n = base, 1
    while (models_dir / name / version).exists():
        n += 1
        version = f"{base}-{n}"
    return version


def versions(models_dir: Path, name: str) -> list[str]:
    """Return the versions of a model on disk, oldest first."""
    folder = models_dir / name
    if not folder.is_dir():
        return []
    found = [p.name for p in folder.iterdir() if p.is_dir() and VERSION.match(p.name)]
    return sorted(found, key=_version_key)


def _version_key(version: str) -> tuple[str, int]:
    suffix = version[16:]  # "YYYYMMDD-HHMMSS" then an optional "-N"
    return version[:15], int(suffix) if suffix.isdigit() else 1


def read_card(models_dir: Path, name: str, version: str) -> dict[str, Any]:
    """Return a version's card (raises OSError or ValueError when absent or unreadable)."""
    return json.loads((models_dir / name / version / CARD_FILE).read_text(encoding="utf-8"))


def write_atomically(path: Path, text: str) -> None:
    """Replace a file so that readers see the old or the new content, never half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def active_version(models_dir: Path, name: str) -> str | None:
    """Return the version that serves: ACTIVE's, else the newest on disk, else None."""
    chosen = _pointer(models_dir, name)
    if chosen:
        return chosen
    found = versions(models_dir, name)
    return found[-1] if found else None


def _pointer(models_dir: Path, name: str) -> str | None:
    try:
        return (models_dir / name / ACTIVE_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def history(models_dir: Path, name: str) -> list[dict[str, Any]]:
    """Return the promotion log of a model, oldest first."""
    path = models_dir / name / HISTORY_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class ModelNotFound(NotFound):
    code = "model_not_found"


class VersionInvalid(ValidationError):
    code = "model_version_invalid"


def _fail(kind: type[NotFound | ValidationError], field: str, message: str) -> NoReturn:
    raise kind(message, errors={field: [message]})


def promote(
    models_dir: Path, name: str, version: str, *, actor: str, reason: str = "", action: str = "promote"
) -> dict[str, Any]:
    """Make `version` the serving version of `name`, after checking its card and checksum."""
    if not (models_dir / name).is_dir():
        _fail(ModelNotFound, "name", f"no model named {name!r} on this server")
    if version not in versions(models_dir, name):
        _fail(VersionInvalid, "version", f"model {name!r} has no version {version!r}")
    problem = check_files(models_dir, name, version)
    if problem:
        _fail(VersionInvalid, "version", f"model {name} {version} cannot serve: {problem}")
    previous = _pointer(models_dir, name)
    entry = {
        "at": utcnow().isoformat(),
        "action": action,
        "version": version,
        "previous": previous,
        "actor": actor,
        "reason": reason,
    }
    write_atomically(models_dir / name / ACTIVE_FILE, version + "\n")
    with open(models_dir / name / HISTORY_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")
    return entry


def rollback(models_dir: Path, name: str, *, actor: str, reason: str = "") -> dict[str, Any]:
    """Go back to the version that served before the current one (by the promotion log)."""
    current = active_version(models_dir, name)
    if current is None:
        _fail(ModelNotFound, "name", f"no model named {name!r} on this server")
    earlier = [e["previous"] for e in reversed(history(models_dir, name)) if e["version"] == current and e["previous"]]
    if not earlier:
        older = [v for v in versions(models_dir, name) if _version_key(v) < _version_key(current)]
        if not older:
            _fail(VersionInvalid, "name", f"model {name!r} has no version before {current} to roll back to")
        earlier = [older[-1]]
    return promote(models_dir, name, earlier[0], actor=actor, reason=reason or f"rollback from {current}", action="rollback")


def check_files(models_dir: Path, name: str, version: str) -> str | None:
    """Return why a version's files cannot serve (no card, bad card, checksum mismatch), or None."""
    folder = models_dir / name / version
    try:
        card = read_card(models_dir, name, version)
    except (OSError, ValueError) as exc:
        return f"card unreadable: {exc}"
    if not (folder / MODEL_FILE).is_file():
        return "model.onnx is missing"
    actual = sha256_of(folder / MODEL_FILE)
    if actual != card.get("sha256"):
        return f"checksum mismatch: model.onnx is {actual[:12]}…, the card says {str(card.get('sha256'))[:12]}…"
    return None
