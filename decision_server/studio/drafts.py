"""Rule drafts: a console user's unpublished changes, based on the revision they were started from.

A draft keeps only the files it changes. Its full file set is its base revision's files with those
changes; it is what validation, cases, traces and what-ifs try, and what publishing puts in force.
When someone else publishes in between, the draft is stale: publishing it would overwrite a change
its author never saw, so it is refused until the draft is rebased (a three-way merge of the base,
the serving revision and the draft; overlapping edits stay as conflicts to resolve by hand).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping

import merge3
import sqlalchemy as sa
from sqlalchemy.orm import Session

from decision_server.db import utcnow
from decision_server.errors import NotFound, ValidationError
from decision_server.rulebook import service as rulebook_service
from decision_server.rulebook.schemas import FILE_NAME, MAX_FILE_CHARS
from decision_server.studio.records import RuleDraftRecord

CONFLICT_MARKERS = ("<<<<<<< ", "=======", ">>>>>>> ")


# The draft is based on a revision that no longer serves: rebase it before publishing (409 draft_out_of_date).
DraftOutOfDate = rulebook_service.PublishedSince


@dataclasses.dataclass(frozen=True)
class Workspace:
    """What a user edits: the draft's full files, the base they came from and what serves now."""

    owner: str
    base: str  # the revision the draft is based on (the serving one when there is no draft)
    serving: str
    base_files: Mapping[str, str]
    serving_files: Mapping[str, str]
    changes: Mapping[str, str]  # file -> content the draft gives it (only files that differ from the base)
    updated_at: dt.datetime | None

    @property
    def files(self) -> dict[str, str]:
        """The complete file set the draft would publish."""
        return {**self.base_files, **self.changes}

    @property
    def stale(self) -> bool:
        """True when the draft has changes and someone published since it was based."""
        return bool(self.changes) and self.base != self.serving

    @property
    def published_since(self) -> list[str]:
        """Files the publications since the draft's base changed."""
        names = set(self.base_files) | set(self.serving_files)
        return sorted(n for n in names if self.base_files.get(n) != self.serving_files.get(n))

    def content(self, file: str) -> str | None:
        """The draft's text of one file (None: no such file)."""
        return self.files.get(file)


def check_file_name(file: str, known: Mapping[str, str]) -> str:
    """Refuse a file name that is not a rule file of the revision (404) or not a rule file name at all (422)."""
    if not FILE_NAME.fullmatch(file or ""):
        raise ValidationError(f"{file!r} is not a rule file name", errors={"file": ["lower-case letters, digits and _, .yaml"]})
    if file not in known:
        raise NotFound(f"there is no rule file {file}", code="rule_file_not_found")
    return file


def get_record(session: Session, owner: str, *, lock: bool = False) -> RuleDraftRecord | None:
    query = sa.select(RuleDraftRecord).where(RuleDraftRecord.owner == owner)
    if lock:
        query = query.with_for_update()
    return session.scalars(query).first()


def _files_of(session: Session, revision: str, fallback: Mapping[str, str]) -> dict[str, str]:
    row = session.scalars(
        sa.select(rulebook_service.RuleRevisionRecord).where(rulebook_service.RuleRevisionRecord.revision == revision)
    ).first()
    return dict(row.files) if row is not None else dict(fallback)


def workspace(session: Session, current, owner: str) -> Workspace:
    """Return `owner`'s workspace against the revision `current` (the one serving)."""
    record = get_record(session, owner)
    serving_files = dict(current.files)
    if record is None or not record.files:
        return Workspace(owner, current.id, current.id, serving_files, serving_files, {}, None)
    base_files = serving_files if record.base_revision == current.id else _files_of(session, record.base_revision, serving_files)
    return Workspace(owner, record.base_revision, current.id, base_files, serving_files, dict(record.files), record.updated_at)


def save_file(session: Session, current, owner: str, file: str, content: str) -> Workspace:
    """Put `content` in the draft as `file` (a draft is started on the serving revision when there is none).

    A file saved back to its base's text leaves the draft's changes; a draft with no changes left
    is removed, so the next edit starts on whatever serves then.
    """
    if len(content) > MAX_FILE_CHARS:
        raise ValidationError("the file is too large", errors={"content": [f"at most {MAX_FILE_CHARS:,} characters"]})
    content = content.replace("\r\n", "\n")
    record = get_record(session, owner, lock=True)
    if record is None or not record.files:
        base = current.id
        base_files = dict(current.files)
    else:
        base = record.base_revision
        base_files = _files_of(session, base, current.files)
    check_file_name(file, base_files if not file.endswith(".cases.yaml") else {**base_files, file: ""})
    changes = dict(record.files) if record is not None and record.files else {}
    if base_files.get(file) == content:
        changes.pop(file, None)
    else:
        changes[file] = content
    _store(session, record, owner, base, changes)
    return workspace(session, current, owner)


def _store(session: Session, record: RuleDraftRecord | None, owner: str, base: str, changes: dict[str, str]) -> None:
    now = utcnow()
    if not changes:
        if record is not None:
            session.delete(record)
            session.flush()
        return
    if record is None:
        session.add(RuleDraftRecord(owner=owner[:100], base_revision=base, files=changes, created_at=now, updated_at=now))
    else:
        record.base_revision, record.files, record.updated_at = base, changes, now
    session.flush()


def discard(session: Session, owner: str, file: str | None = None) -> None:
    """Drop the draft's change to `file`, or the whole draft."""
    record = get_record(session, owner, lock=True)
    if record is None:
        return
    changes = {} if file is None else {k: v for k, v in record.files.items() if k != file}
    _store(session, record, owner, record.base_revision, changes)


@dataclasses.dataclass(frozen=True)
class FileMerge:
    """One file merged three ways: its text with conflict markers where both sides changed the same lines."""

    file: str
    base: str
    theirs: str  # what serves now
    mine: str  # the draft
    merged: str
    conflicts: int


def three_way(space: Workspace) -> list[FileMerge]:
    """Merge each file the draft changes with what was published since its base."""
    merges = []
    for file, mine in sorted(space.changes.items()):
        base, theirs = space.base_files.get(file, ""), space.serving_files.get(file, "")
        if base == theirs:
            merged, conflicts = mine, 0
        elif mine == theirs:
            merged, conflicts = mine, 0
        else:
            m = merge3.Merge3(base.splitlines(True), mine.splitlines(True), theirs.splitlines(True))
            groups = list(m.merge_groups())
            conflicts = sum(1 for g in groups if g[0] == "conflict")
            merged = "".join(m.merge_lines(name_a="your draft", name_b="published"))
        merges.append(FileMerge(file, base, theirs, mine, merged, conflicts))
    return merges


def rebase(session: Session, current, owner: str) -> list[FileMerge]:
    """Base the draft on the serving revision, merging what was published since into it; return the merges.

    Files where both changed the same lines keep conflict markers, which do not validate, so the
    draft cannot be published until its author has chosen.
    """
    space = workspace(session, current, owner)
    merges = three_way(space)
    changes = {f.file: f.merged for f in merges if f.merged != space.serving_files.get(f.file)}
    _store(session, get_record(session, owner, lock=True), owner, current.id, changes)
    return merges


def publish(rulebook, owner: str, message: str) -> tuple[rulebook_service.Head, bool]:
    """Publish `owner`'s draft as the serving revision, then drop the draft.

    Refused (409 draft_out_of_date) when someone published since the draft's base; refused (422,
    nothing changes) when the draft does not validate or a case fails, as the API refuses it.
    """
    current = rulebook.current
    with rulebook.database.session() as session:
        space = workspace(session, current, owner)
    if not space.changes:
        raise ValidationError("the draft changes nothing", errors={"files": ["edit a rule file first"]})
    if space.stale:
        raise DraftOutOfDate(
            f"the draft is based on revision {space.base[:12]}, but {space.serving[:12]} was published since: "
            "rebase the draft on it first",
            errors={"base": [space.base], "serving": [space.serving]},
        )
    if not message.strip():
        raise ValidationError("say why in a message", errors={"message": ["a message is required"]})
    # The base is checked again under the publication lock: another process may have published
    # since this one's rulebook last polled.
    head, changed = rulebook.publish(
        space.files, author=owner, message=message.strip()[:500], source="console", expected=space.base
    )
    with rulebook.database.session(write=True) as session:
        discard(session, owner)
    return head, changed


def has_conflict_markers(text: str) -> bool:
    """Tell whether a rebased file still holds conflict markers."""
    return any(line.startswith(CONFLICT_MARKERS) for line in text.splitlines())
