"""Rule drafts: based on a revision, saved per user, refused when stale, rebased three ways."""

from __future__ import annotations

import pytest

from decision_server.studio import drafts


@pytest.fixture
def rulebook(app):
    return app.extensions["rulebook"]


def _save(rulebook, owner, file, content):
    with rulebook.database.session(write=True) as session:
        return drafts.save_file(session, rulebook.current, owner, file, content)


def _space(rulebook, owner):
    with rulebook.database.session() as session:
        return drafts.workspace(session, rulebook.current, owner)


def test_a_draft_keeps_only_its_changes_and_goes_when_they_are_undone(rulebook):
    original = rulebook.current.files["value.yaml"]
    space = _save(rulebook, "key:ann", "value.yaml", original.replace(">= 70", ">= 75"))
    assert list(space.changes) == ["value.yaml"] and space.base == rulebook.current.id and not space.stale
    assert space.files["lifecycle.yaml"] == rulebook.current.files["lifecycle.yaml"]
    assert _space(rulebook, "key:bob").changes == {}  # drafts are per user
    space = _save(rulebook, "key:ann", "value.yaml", original)
    assert space.changes == {}
    with rulebook.database.session() as session:
        assert drafts.get_record(session, "key:ann") is None


def test_an_unknown_file_is_refused(rulebook):
    from decision_server.errors import NotFound, ValidationError

    with pytest.raises(NotFound):
        _save(rulebook, "key:ann", "nothing.yaml", "x: 1\n")
    with pytest.raises(ValidationError):
        _save(rulebook, "key:ann", "../etc.yaml", "x: 1\n")


def test_publishing_a_stale_draft_is_refused_until_rebased(rulebook):
    original = rulebook.current.files["value.yaml"]
    _save(rulebook, "key:ann", "value.yaml", original.replace(">= 70", ">= 75").replace("< 70", "< 75"))
    bob = original.replace("Value segment from the value score (0–100).", "The very best customers.")
    _save(rulebook, "key:bob", "value.yaml", bob)
    head, changed = drafts.publish(rulebook, "key:bob", "clearer description")
    assert changed and head.revision == rulebook.current.id and head.source == "console"
    assert _space(rulebook, "key:bob").changes == {}
    ann = _space(rulebook, "key:ann")
    assert ann.stale and ann.published_since == ["value.yaml"]
    with pytest.raises(drafts.DraftOutOfDate) as refused:
        drafts.publish(rulebook, "key:ann", "high from 75")
    assert refused.value.status == 409
    with rulebook.database.session(write=True) as session:
        merges = drafts.rebase(session, rulebook.current, "key:ann")
    assert [m.conflicts for m in merges] == [0]
    ann = _space(rulebook, "key:ann")
    assert not ann.stale
    merged = ann.files["value.yaml"]
    assert "The very best customers." in merged and "value_score >= 75" in merged
    drafts.publish(rulebook, "key:ann", "high from 75")
    assert "value_score >= 75" in rulebook.current.files["value.yaml"]
    assert "The very best customers." in rulebook.current.files["value.yaml"]


def test_overlapping_edits_keep_conflict_markers_that_do_not_validate(rulebook):
    from decision_server.rules.source import RulesInvalid

    original = rulebook.current.files["value.yaml"]
    _save(rulebook, "key:ann", "value.yaml", original.replace(">= 70", ">= 75").replace("< 70", "< 75"))
    _save(rulebook, "key:bob", "value.yaml", original.replace(">= 70", ">= 80").replace("< 70", "< 80"))
    drafts.publish(rulebook, "key:bob", "high from 80")
    with rulebook.database.session(write=True) as session:
        merges = drafts.rebase(session, rulebook.current, "key:ann")
    assert merges[0].conflicts >= 1 and drafts.has_conflict_markers(merges[0].merged)
    with pytest.raises(RulesInvalid):
        drafts.publish(rulebook, "key:ann", "high from 75")
    assert "value_score >= 80" in rulebook.current.files["value.yaml"]


def test_a_publication_by_another_process_not_yet_seen_here_still_refuses_a_stale_draft(rulebook):
    from decision_server.rulebook import service

    original = rulebook.current.files["value.yaml"]
    _save(rulebook, "key:ann", "value.yaml", original.replace(">= 70", ">= 75").replace("< 70", "< 75"))
    other = {**rulebook.current.files, "value.yaml": original.replace("Value segment from", "The value segment from")}
    with rulebook.database.session(write=True) as session:  # another server published; this one has not polled yet
        elsewhere, _ = service.publish(session, other, author="key:bob", message="wording", source="api")
    assert not _space(rulebook, "key:ann").stale  # as far as this process knows
    with pytest.raises(drafts.DraftOutOfDate) as refused:
        drafts.publish(rulebook, "key:ann", "high from 75")
    assert refused.value.status == 409 and refused.value.code == "draft_out_of_date"
    with rulebook.database.session() as session:
        assert service.head(session).revision == elsewhere.revision  # nothing was overwritten
