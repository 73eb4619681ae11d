"""The form view of a rule file: thresholds, switches and validity windows as inputs, saved to the user's draft as YAML."""

from __future__ import annotations

from flask import current_app, g, redirect, request, url_for

from decision_server.auth.roles import Permission
from decision_server.console.pages import view
from decision_server.console.render import render
from decision_server.rulebook.service import validate_draft
from decision_server.studio import drafts
from decision_server.studio.form import Form, FormInvalid, apply, describe

# The editor is another helper's screen; a plain path keeps this one independent of it.
EDITOR_URL = "/console/rules/{file}"


def _workspace(file: str):
    """Return the rulebook, the signed-in user's draft owner name and workspace, after checking the file exists."""
    rulebook = current_app.extensions["rulebook"]
    owner = f"key:{g.console_user.name}"
    with current_app.extensions["database"].session() as session:
        space = drafts.workspace(session, rulebook.current, owner)
    drafts.check_file_name(file, space.files)
    return rulebook, owner, space


def _page(file: str, form: Form | None, space, *, status: int = 200, errors=None, posted=None, result=None, notice=None):
    shown = form.values() if form else {}
    if posted is not None:  # show what was sent, so a mistake can be corrected where it was made
        shown.update({name: posted.getlist(name) for name in shown if name in posted})
    html = render(
        "console/studio/form.html",
        title=f"{file}: form",
        file=file,
        form=form,
        shown=shown,
        errors=errors or {},
        result=result,
        notice=notice,
        in_draft=file in space.changes,
        stale=space.stale,
        editor_url=EDITOR_URL.format(file=file),
    )
    return html, status


@view("/rules/<string:file>/form", permission=Permission.RULES_READ)
def rule_form(file: str):
    """One rule file as a form, from the user's draft (or what serves); after a save, the draft's validation."""
    rulebook, _, space = _workspace(file)
    form = None if file.endswith(".cases.yaml") else describe(file, space.content(file))
    result = validate_draft(rulebook, space.files) if request.args.get("saved") else None
    notice = {"1": "Saved to your draft.", "none": "Nothing changed: your draft already says this."}.get(
        request.args.get("saved", "")
    )
    return _page(file, form, space, result=result, notice=notice)


@view("/rules/<string:file>/form", permission=Permission.RULES_READ, methods=("POST",))
def rule_form_save(file: str):
    """Write the posted fields into the user's draft of the file (as text edits), then show its validation."""
    rulebook, owner, space = _workspace(file)
    if file.endswith(".cases.yaml"):
        return _page(file, None, space, status=422)
    text = space.content(file)
    form = describe(file, text)
    if request.form.get("digest") != form.digest:
        notice = "The file changed since you opened the form (in the editor, or by a publication): here it is now."
        return _page(file, form, space, status=409, notice=notice)
    try:
        new_text = apply(text, form.edits(request.form))
    except FormInvalid as exc:
        return _page(file, form, space, status=422, errors=exc.errors, posted=request.form)
    if new_text != text:
        with current_app.extensions["database"].session(write=True) as session:
            drafts.save_file(session, rulebook.current, owner, file, new_text)
    return redirect(url_for("console.rule_form", file=file, saved="1" if new_text != text else "none"), code=303)
