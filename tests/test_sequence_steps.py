"""A step's conditions and wait, and the steps themselves (add, remove, move), edited in
the browser through the real app on PostgreSQL (web/sequences.py over
campaigns/editing/step_edits.py and step_order.py): each edit changes only its lines of the
draft's YAML, its impact counts the people enrolled, it is audited without copy, and
each bad input is a 4xx that keeps what was typed and changes nothing."""

from __future__ import annotations

import html

from sqlalchemy import select

from campaigns.models import AuditEntry, SequenceDraft
from campaigns.sequences import store
from tests.test_sequence_editor import (  # noqa: F401 (fixtures)
    EDIT,
    KEY,
    app,
    audits,
    clock,
    enroll_three,
    fields_of,
    lint_beside,
    marketer,
    pg,
    post,
    signed_in,
    start,
    step_form,
)


def draft_and_running(sessions) -> tuple[str, str]:
    with sessions() as s:
        return s.get(SequenceDraft, KEY).definition, store.head(s, KEY).definition


def changed_lines(old: str, new: str) -> list[tuple[str, str]]:
    import difflib

    return [
        line
        for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


# ---------------------------------------------------------------- conditions and waits


def test_conditions_and_a_wait_are_edited_as_yaml_with_their_words_beside(
    app,  # noqa: F811
    marketer,  # noqa: F811
    pg,  # noqa: F811
    clock,  # noqa: F811
):
    client, token = marketer
    enroll_three(app, pg, clock)
    start(client, token)
    data = step_form(client, "diagnosis_by_text")
    assert data["if"] == "{has_channel: [email, sms]}"
    assert data["unless"] == "{opened: diagnosis}"
    assert data["wait_for"] == "{event: opened, step: diagnosis, at_most: 2d}"
    assert data["delay"] == ""
    page = client.get(f"{EDIT}?step=diagnosis_by_text").text
    assert "unless opened diagnosis" in page and "up to 2d for an open of diagnosis" in page
    # A condition added to a plain step: one line, in flow style, after its delay.
    data = step_form(client, "treatment")
    saved = post(client, token, f"{EDIT}/steps/treatment", {**data, "if": "{clicked: diagnosis}"})
    assert saved.status_code == 303, saved.text
    draft, running = draft_and_running(pg)
    assert changed_lines(running, draft) == ["+    if: {clicked: diagnosis}"]
    assert "if clicked diagnosis" in client.get(f"{EDIT}?step=treatment").text
    entry = audits(pg)[-1]
    assert entry.action == "sequence.draft.save" and entry.after["step"] == "treatment"
    assert "if" in entry.after["fields"]
    # The wait changed, the unless removed (an empty field): only those lines change.
    data = step_form(client, "diagnosis_by_text")
    saved = post(
        client,
        token,
        f"{EDIT}/steps/diagnosis_by_text",
        {**data, "wait_for": "{event: clicked, step: diagnosis, at_most: 3d}", "unless": ""},
    )
    assert saved.status_code == 303, saved.text
    draft, running = draft_and_running(pg)
    lines = changed_lines(running, draft)
    assert "+    wait_for: {event: clicked, step: diagnosis, at_most: 3d}" in lines
    assert "-    unless: {opened: diagnosis}" in lines and len(lines) == 4  # + treatment's if
    # A wait replaced by a delay, in the wait's place.
    data = step_form(client, "diagnosis_by_text")
    saved = post(
        client, token, f"{EDIT}/steps/diagnosis_by_text", {**data, "wait_for": "", "delay": "2d"}
    )
    assert saved.status_code == 303, saved.text
    draft, _ = draft_and_running(pg)
    assert "  - key: diagnosis_by_text\n    delay: 2d\n    if: {has_channel:" in draft
    publish = client.get(f"{EDIT}/publish").text
    assert "Changes whom step treatment is for" in publish
    assert "Changes the wait of step diagnosis_by_text" in publish


def test_bad_conditions_and_waits_are_refused_beside_their_field_and_kept(app, marketer, pg):  # noqa: F811
    client, token = marketer
    start(client, token)
    before, _ = draft_and_running(pg)
    data = step_form(client, "treatment")
    cases = [
        ({"if": "{opened: [diagnosis"}, "if", "not YAML"),
        ({"if": "opened"}, "if", "a mapping"),
        ({"if": "{smiled: diagnosis}"}, "if", "unknown condition 'smiled'"),
        ({"if": "{opened: prevention}"}, "if", "not an earlier step"),
        ({"unless": "{opened: nosuch}"}, "unless", "not a step of this course"),
        ({"unless": "{locale: fr}"}, "unless", "'fr' is not one of the course's locales"),
        (
            {"wait_for": "{event: opened, step: diagnosis, at_most: 2d}"},
            "wait_for",
            "not both",
        ),
        ({"wait_for": "{event: seen, step: diagnosis, at_most: 2d}", "delay": ""}, "wait_for", ""),
        ({"delay": ""}, "delay", "give a delay"),
    ]
    for typed, field, message in cases:
        bad = post(client, token, f"{EDIT}/steps/treatment", {**data, **typed})
        assert bad.status_code == 400, (typed, bad.text[:300])
        beside = html.unescape(lint_beside(bad.text, field))
        assert message in beside, (typed, beside)
        for name, value in typed.items():
            assert html.unescape(fields_of(bad.text)[name]) == value, name
    assert draft_and_running(pg)[0] == before


# ---------------------------------------------------------------- roles


def test_care_and_ops_cannot_add_remove_or_move_steps(app, marketer, pg):  # noqa: F811
    client, token = marketer
    start(client, token)
    before, _ = draft_and_running(pg)
    for role in ("care", "ops"):
        other, other_token = signed_in(app, f"{role}1")
        for url, data in (
            (f"{EDIT}/steps/add", {"key": "extra", "after": "welcome"}),
            (f"{EDIT}/steps/welcome/remove", {}),
            (f"{EDIT}/steps/welcome/move", {"direction": "down"}),
            (f"{EDIT}/steps/treatment", {"if": "{clicked: diagnosis}"}),
        ):
            assert post(other, other_token, url, data).status_code == 403, (role, url)
        assert other.get(f"{EDIT}/steps/welcome/remove").status_code == 403
    assert draft_and_running(pg)[0] == before
    with pg() as s:
        assert not [a for a in s.scalars(select(AuditEntry)) if a.action == "sequence.draft.save"]
