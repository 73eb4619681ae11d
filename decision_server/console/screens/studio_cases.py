"""A rule set's cases: the table run on every backend, adding a case, and making one from a real customer."""

from __future__ import annotations

from flask import current_app, redirect, request, url_for

from decision_server.auth.roles import Permission
from decision_server.console.pages import view
from decision_server.console.render import render
from decision_server.console.screens.studio import owner
from decision_server.errors import DecisionServerError, ValidationError
from decision_server.studio import cases, drafts, trace

NOTICES = {"added": "Case added to your draft's cases file; it runs with the others below."}


def _rulebook():
    return current_app.extensions["rulebook"]


def _space():
    with _rulebook().database.session() as session:
        return drafts.workspace(session, _rulebook().current, owner())


def _page(file: str, *, form: dict | None = None, error: DecisionServerError | None = None, customer: dict | None = None):
    space = _space()
    rules_file, cases_file = cases.files_of(file)
    drafts.check_file_name(rules_file, space.files)
    found = cases.table(_rulebook(), space.files, rules_file)
    ruleset = _rulebook().current.rulesets.get(found.ruleset) if found.ruleset else None
    status = error.status if error is not None else 200
    return render(
        "console/studio/cases.html",
        title=f"Cases of {rules_file}",
        table=found,
        space=space,
        file=rules_file,
        cases_file=cases_file,
        in_draft=cases_file in space.changes,
        form=form or {},
        error=error,
        customer=customer,
        needs_offer=bool(ruleset and trace.needs_offer(_rulebook().current, ruleset.name)),
        channels=list(current_app.extensions["decider"].channels),
        offers=[(o.code, o.name) for o in current_app.extensions["catalog"].offers],
        notice=NOTICES.get(request.args.get("notice", "")),
    ), status


@view("/rules/<string:file>/cases", permission=Permission.RULES_READ)
def rule_cases(file: str):
    """The cases of the rule set, inputs → expected, each run on every rules backend under my draft."""
    return _page(file)


@view("/rules/<string:file>/cases", permission=Permission.RULES_READ, methods=("POST",))
def add_case(file: str):
    """Append a case to my draft's cases file (given, expect and fired written in YAML, as in the file)."""
    form = {k: request.form.get(k, "") for k in ("name", "given", "expect", "fired", "now")}
    space = _space()
    rules_file, cases_file = cases.files_of(file)
    drafts.check_file_name(rules_file, space.files)
    ruleset = next((rs for rs in _rulebook().current.rulesets.values() if rs.file == rules_file), None)
    if ruleset is None:
        raise ValidationError(f"{rules_file} holds no rule set the cases could test", errors={"file": ["not a rule set"]})
    try:
        given = cases.parse_value("given", form["given"], mapping=True)
        expect = cases.parse_value("expect", form["expect"])
        fired = cases.parse_value("fired", form["fired"]) if form["fired"].strip() else None
        if fired is not None and (not isinstance(fired, list) or not all(isinstance(f, str) for f in fired)):
            raise ValidationError("fired lists rule ids, like [high_value]", errors={"fired": ["a list of rule ids"]})
        now = form["now"].strip() or None
        item = cases.case_text(name=form["name"], given=given, expect=expect, fired=fired, now=now)
    except ValidationError as exc:
        return _page(file, form=form, error=exc)
    text = cases.append_case(space.files.get(cases_file), ruleset.name, item)
    with _rulebook().database.session(write=True) as session:
        drafts.save_file(session, _rulebook().current, owner(), cases_file, text)
    return redirect(url_for("console.rule_cases", file=rules_file, notice="added") + "#cases")


@view("/rules/<string:file>/cases/from-customer", permission=Permission.RULES_READ, methods=("POST",))
def case_from_customer(file: str):
    """Fill the add-case form with a real customer's inputs now and my draft's outcome for them, to review and add."""
    customer_id = (request.form.get("customer_id") or "").strip()
    channel = request.form.get("channel") or None
    offer = request.form.get("offer") or None
    if not customer_id:
        return _page(file, error=ValidationError("which customer?", errors={"customer_id": ["required"]}))
    space = _space()
    rules_file, _ = cases.files_of(file)
    drafts.check_file_name(rules_file, space.files)
    try:
        made = trace.case_from_customer(current_app, space.files, rules_file, customer_id, channel=channel, offer_code=offer)
    except DecisionServerError as exc:
        return _page(file, error=exc, customer={"customer_id": customer_id, "channel": channel, "offer": offer})
    form = {
        "name": made["name"],
        "given": cases.flow(made["given"]),
        "expect": cases.flow(made["expect"]),
        "fired": cases.flow(made["fired"]),
        "now": made["now"],
    }
    return _page(file, form=form, customer={"customer_id": customer_id, "channel": channel, "offer": offer})
