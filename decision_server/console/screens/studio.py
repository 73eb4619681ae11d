"""The rule studio's hub: every rule set, publishing a draft, the history with rollback, revisions, rebasing.

The folder stays the source of truth: a publication from here goes through the same Rulebook.publish
as the API (validated, cases run on every backend, written to the rules folder), and an edit on
disk shows up here as the serving revision (or as a refused edit with its problems).
"""

from __future__ import annotations

from flask import current_app, g, redirect, request, url_for

from decision_server.auth.roles import Permission
from decision_server.console.pages import page, view
from decision_server.console.render import render
from decision_server.errors import ValidationError
from decision_server.rulebook import service as rulebook_service
from decision_server.rules.source import RulesInvalid
from decision_server.schemas import decode_cursor, encode_cursor
from decision_server.studio import cases, catalogue, drafts

HISTORY_PAGE = 25
# Notices a redirect may ask the next page to show (never text from the query string itself).
NOTICES = {
    "published": "Published: the new revision serves now, here and on every server within seconds.",
    "unchanged": "Nothing to publish: the draft is the revision that serves.",
    "rolled_back": "Rolled back: that revision serves again.",
    "rebased": "Your draft is now based on the revision that serves; check the merged files before publishing.",
    "rebased_conflicts": "Your draft is rebased, but some lines were changed on both sides: "
    "the files marked below hold both versions between <<<<<<< and >>>>>>>; keep the right one and save.",
    "discarded": "Your draft was discarded.",
}


def _rulebook():
    return current_app.extensions["rulebook"]


def owner() -> str:
    """The signed-in user as a draft owner and publication author (as the API writes key:NAME)."""
    return f"key:{g.console_user.name}"


def _notice() -> str | None:
    return NOTICES.get(request.args.get("notice", ""))


def _space():
    with _rulebook().database.session() as session:
        return drafts.workspace(session, _rulebook().current, owner())


@page("/rules", title="Rule sets", group="Rules", permission=Permission.RULES_READ, position=10)
def rule_sets():
    """Every rule file: what it decides, its rules and cases, its last change, what it feeds; what serves; my draft."""
    rulebook = _rulebook()
    current = rulebook.current
    with rulebook.database.session() as session:
        space = drafts.workspace(session, current, owner())
        files = catalogue.rule_files(session, current, draft_changes=dict(space.changes))
    return render(
        "console/studio/rule_sets.html",
        title="Rule sets",
        files=files,
        status=rulebook.status(),
        space=space,
        notice=_notice(),
    )


@view("/rules/publish", permission=Permission.RULES_READ)
def publish_page():
    """My draft against what serves: the diff, the cases' result, the latest what-if, and the publish form."""
    return _publish_page()


def _publish_page(*, message: str = "", refused: RulesInvalid | None = None, status: int = 200):
    rulebook = _rulebook()
    space = _space()
    current = rulebook.current
    check = cases.check_draft(rulebook, space.files) if space.changes else None
    if refused is not None and check is not None:
        check = {**check, "valid": False, "problems": [p.to_dict() for p in refused.problems]}
    what_if = _latest_what_if(check["revision"]) if check else None
    files = [
        {
            "file": name,
            "old": current.files.get(name, ""),
            "new": space.files.get(name, ""),
            "diff_lines": rulebook_service.diff_files(
                {name: current.files[name]} if name in current.files else {},
                {name: space.files[name]} if name in space.files else {},
                old_label=current.short_id,
                new_label="draft",
            ).splitlines(),
        }
        for name in sorted(set(space.changes) | set(current.files) | set(space.files))
        if current.files.get(name) != space.files.get(name)
    ]
    blocked = _blocked(space, check)
    return render(
        "console/studio/publish.html",
        title="Publish",
        space=space,
        check=check,
        what_if=what_if,
        files=files,
        blocked=blocked,
        message=message,
        serving=current.id,
        notice=_notice(),
    ), status


def _blocked(space, check) -> str | None:
    """Why the draft cannot be published now (None: it can)."""
    if not space.changes:
        return "Your draft changes nothing yet: edit a rule file first."
    if space.stale:
        return "Someone published since your draft was started: rebase it on what serves first."
    if check is None or not check["valid"]:
        return "The draft has errors: fix them first."
    if check["cases"].get("failed"):
        return f"{check['cases']['failed']} case result(s) fail: fix the rules or the cases first."
    return None


def _latest_what_if(revision: str):
    """The latest finished what-if of this draft revision, summarized (None when there is none yet)."""
    try:
        from decision_server.studio import whatif
    except ImportError:  # the what-if screens are not installed
        return None
    run = whatif.latest_for(_rulebook().database, revision)
    return None if run is None else whatif.summary(run)


@view("/rules/publish", permission=Permission.RULES_WRITE, methods=("POST",))
def publish():
    """Publish my draft with a message; refused while a case fails, an error remains or the draft is stale."""
    message = (request.form.get("message") or "").strip()
    if not message:
        raise ValidationError("say why you publish (the message goes in the history)", errors={"message": ["required"]})
    try:
        _, changed = drafts.publish(_rulebook(), owner(), message)
    except RulesInvalid as refused:
        return _publish_page(message=message, refused=refused, status=422)
    except drafts.DraftOutOfDate:
        return redirect(url_for("console.rebase_page"))
    return redirect(url_for("console.history", notice="published" if changed else "unchanged"))


@view("/rules/discard", permission=Permission.RULES_READ, methods=("POST",))
def discard_draft():
    """Throw my whole draft away."""
    with _rulebook().database.session(write=True) as session:
        drafts.discard(session, owner())
    return redirect(url_for("console.rule_sets", notice="discarded"))


@view("/rules/history", permission=Permission.RULES_READ)
def history():
    """Every publication and rollback, newest first: who, when, why, which revision; roll back to any."""
    cursor = request.args.get("cursor")
    before = decode_cursor(cursor)[0] if cursor else None
    if before is not None and not isinstance(before, int):
        raise ValidationError("bad cursor", errors={"cursor": ["not a cursor of this list"]})
    with _rulebook().database.session() as session:
        rows = rulebook_service.list_publications(session, limit=HISTORY_PAGE + 1, before_id=before)
    more = len(rows) > HISTORY_PAGE
    rows = rows[:HISTORY_PAGE]
    return render(
        "console/studio/history.html",
        title="Rule history",
        rows=rows,
        serving=_rulebook().current.id,
        more=more,
        next_cursor=encode_cursor(rows[-1].publication_id) if more and rows else None,
        first_page=cursor is None,
        notice=_notice(),
    )


@view("/rules/rollback", permission=Permission.RULES_WRITE, methods=("POST",))
def rollback():
    """Publish an earlier revision again, with a message."""
    revision = (request.form.get("revision") or "").strip()
    message = (request.form.get("message") or "").strip() or f"rollback to {revision[:12]}"
    if not revision:
        raise ValidationError("choose the revision to roll back to", errors={"revision": ["required"]})
    rulebook_service.rollback(_rulebook(), revision=revision, author=owner(), message=message, source="console")
    return redirect(url_for("console.history", notice="rolled_back"))


@view("/rules/revisions/<string:revision>", permission=Permission.RULES_READ)
def revision_page(revision: str):
    """One stored revision: when it served, its files, and what it changed against another (default: what serves)."""
    against = request.args.get("against") or None
    rulebook = _rulebook()
    with rulebook.database.session() as session:
        record = rulebook_service.find_revision(session, revision)
        diff = rulebook_service.diff_revisions(session, rulebook.current, record.revision, against)
        publications = [p for p in rulebook_service.list_publications(session, limit=200) if p.revision == record.revision]
    return render(
        "console/studio/revision.html",
        title=f"Revision {record.revision[:12]}",
        record=record,
        diff_lines=diff["diff"].splitlines(),
        against=diff["old"],
        serving=rulebook.current.id,
        publications=publications,
    )


@view("/rules/rebase", permission=Permission.RULES_READ)
def rebase_page():
    """My stale draft three ways: its base, what was published since, my changes, and the merge rebasing would give."""
    space = _space()
    merges = [
        {
            "file": m.file,
            "conflicts": m.conflicts,
            "base": m.base,
            "touched": m.base != m.theirs,
            "theirs_lines": _diff(m.file, m.base, m.theirs, "started", "published"),
            "mine_lines": _diff(m.file, m.base, m.mine, "started", "your draft"),
            "merged_lines": _diff(m.file, m.theirs, m.merged, "published", "rebased"),
        }
        for m in (drafts.three_way(space) if space.stale else [])
    ]
    return render("console/studio/rebase.html", title="Rebase your draft", space=space, merges=merges, notice=_notice())


def _diff(file: str, old: str, new: str, old_label: str, new_label: str) -> list[str]:
    """One file's unified diff, as lines (without the two header lines: the page names the file)."""
    lines = rulebook_service.diff_files({file: old}, {file: new}, old_label=old_label, new_label=new_label).splitlines()
    return lines[2:]


@view("/rules/rebase", permission=Permission.RULES_READ, methods=("POST",))
def rebase():
    """Base my draft on what serves, merging the publications since into it."""
    with _rulebook().database.session(write=True) as session:
        merges = drafts.rebase(session, _rulebook().current, owner())
    conflicted = [m.file for m in merges if m.conflicts]
    if conflicted:
        return redirect(url_for("console.publish_page", notice="rebased_conflicts"))
    return redirect(url_for("console.publish_page", notice="rebased"))
