"""The rule editor: one file of my draft, checked as I type, saved as a draft, with its vocabulary for completions.

Anyone who may read the rules (analysts too) may keep a draft: it is theirs and serves nobody;
only publishing it needs RULES_WRITE. The page works without JavaScript (a textarea posted as a
form, the problems listed after saving); static/editor.js turns it into CodeMirror with problem
markers, completions and a diff against the draft's base.
"""

from __future__ import annotations

from flask import current_app, redirect, request, url_for

from decision_server.auth.roles import Permission
from decision_server.console.pages import view
from decision_server.console.render import render
from decision_server.console.screens.studio import owner
from decision_server.errors import DecisionServerError, NotFound, ValidationError
from decision_server.rulebook.schemas import MAX_FILE_CHARS
from decision_server.rules.engine import CASES_SUFFIX
from decision_server.studio import drafts, validation
from decision_server.studio.vocabulary import vocabulary

NOTICES = {
    "saved": "Draft saved. It serves nobody until it is published.",
    "unchanged": "Saved: the file is back to its base text, so your draft no longer changes it.",
    "discarded": "Your changes to this file were discarded; it shows its base text again.",
}


def _rulebook():
    return current_app.extensions["rulebook"]


def _space():
    with _rulebook().database.session() as session:
        return drafts.workspace(session, _rulebook().current, owner())


def _known(space: drafts.Workspace, file: str) -> str:
    """The draft's text of `file`; the 404 page when the draft has no such rule file."""
    text = space.content(file)
    if text is None:
        raise NotFound(f"there is no rule file {file}", code="rule_file_not_found")
    return text


def _ruleset_name(file: str) -> str:
    """The rule set a file is (a rule file) or tests (a cases file, by the convention name.cases.yaml)."""
    return file.removesuffix(CASES_SUFFIX).removesuffix(".yaml")


def summary(report: validation.Report, ruleset: str) -> dict[str, str]:
    """The status line of a check, as the editor writes it ("2 problems · 6 cases pass"), and its tone."""
    passed, failed = report.cases_of(ruleset)
    errors = sum(p.severity != "warning" for p in report.problems)
    warnings = len(report.problems) - errors

    def count(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 else 's'}"

    parts = [count(errors, "problem") if errors else "No problems"]
    if warnings:
        parts.append(count(warnings, "warning"))
    if failed:
        parts.append("1 case fails" if failed == 1 else f"{failed} cases fail")
    elif passed:
        parts.append("1 case passes" if passed == 1 else f"{passed} cases pass")
    tone = "bad" if errors or failed else "warn" if warnings else "good"
    return {"text": " · ".join(parts), "tone": tone}


@view("/rules/<string:file>", permission=Permission.RULES_READ)
def rule_editor(file: str):
    """Edit one file of my draft (what serves when I have no draft), with its problems and its state."""
    space = _space()
    text = _known(space, file)
    rulebook = _rulebook()
    report = validation.check_draft(rulebook, space.files)  # shown without JS; also warms the per-file memo
    name = _ruleset_name(file)
    ruleset = rulebook.current.rulesets.get(name)
    rules_file = f"{name}.yaml"
    return render(
        "console/studio/editor.html",
        title=f"Edit {file}",
        file=file,
        text=text,
        base_text=space.base_files.get(file, ""),
        space=space,
        changed=file in space.changes,
        report=report,
        status=summary(report, name),
        ruleset=ruleset,
        is_cases=file.endswith(CASES_SUFFIX),
        rules_file=rules_file,
        cases_file=f"{name}{CASES_SUFFIX}",
        has_cases=f"{name}{CASES_SUFFIX}" in space.files,
        notice=NOTICES.get(request.args.get("notice", "")),
        active_page="console.rule_sets",
    )


@view("/rules/<string:file>", permission=Permission.RULES_READ, methods=("POST",))
def save_rule_file(file: str):
    """Save the posted text as my draft of `file`, then show the file again with its problems."""
    content = request.form.get("content")
    if content is None:
        raise ValidationError("send the file's text", errors={"content": ["required"]})
    rulebook = _rulebook()
    with rulebook.database.session(write=True) as session:
        before = drafts.workspace(session, rulebook.current, owner())
        _known(before, file)
        space = drafts.save_file(session, rulebook.current, owner(), file, content)
    notice = "saved" if file in space.changes else "unchanged"
    return redirect(url_for("console.rule_editor", file=file, notice=notice))


@view("/rules/<string:file>/discard", permission=Permission.RULES_READ, methods=("POST",))
def discard_rule_file(file: str):
    """Drop my draft's change to `file` (the rest of the draft stays)."""
    rulebook = _rulebook()
    with rulebook.database.session(write=True) as session:
        _known(drafts.workspace(session, rulebook.current, owner()), file)
        drafts.discard(session, owner(), file)
    return redirect(url_for("console.rule_editor", file=file, notice="discarded"))


def _json_error(error: DecisionServerError):
    return error.to_dict(), error.status


@view("/rules/<string:file>/validate", permission=Permission.RULES_READ, methods=("POST",))
def validate_rule_file(file: str):
    """Check my draft with `file` replaced by the posted {content}, as publishing would; nothing is saved.

    The cases run on every backend the server runs (as at publication): each file's result is
    remembered by its text, so a check re-does only the file typed in (1-15 ms on the shipped
    files; bench/studio_bench.py).
    """
    try:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ValidationError("send a JSON object {content}", errors={"body": ["not a JSON object"]}, code="bad_json")
        content = body.get("content")
        if not isinstance(content, str):
            raise ValidationError("send the file's text as content", errors={"content": ["required, as text"]})
        if len(content) > MAX_FILE_CHARS:
            raise ValidationError("the file is too large", errors={"content": [f"at most {MAX_FILE_CHARS:,} characters"]})
        space = _space()
        _known(space, file)
        report = validation.check_draft(_rulebook(), {**space.files, file: content.replace("\r\n", "\n")})
    except DecisionServerError as error:
        return _json_error(error)
    return report.to_dict(_ruleset_name(file))


@view("/rules/<string:file>/vocabulary", permission=Permission.RULES_READ)
def rule_vocabulary(file: str):
    """What the editor completes in `file`: its rule set's inputs (with their values), outputs, functions, keys, keywords."""
    try:
        space = _space()
        _known(space, file)
    except DecisionServerError as error:
        return _json_error(error)
    name = _ruleset_name(file)
    rulebook = _rulebook()
    # The draft's declarations when its rule file checks (an input just added completes at once), else what serves.
    ruleset = validation.ruleset_of(f"{name}.yaml", space.files.get(f"{name}.yaml"), rulebook.limits)
    return vocabulary(file, ruleset or rulebook.current.rulesets.get(name))
