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


# ---------------------------------------------------------------- adding, removing, moving

NEW = {
    "after": "hip_pain",
    "key": "hip_questions",
    "delay": "1d",
    "channels": ["email"],
    "new_template": "hip_questions",
    "template": "",
    "subject.en": "Lesson 1b: questions for your visit",
    "subject.es": "Clase 1b: preguntas para tu cita",
    "preheader.en": "",
    "preheader.es": "",
}


def test_a_step_is_added_with_starter_copy_then_moved_and_removed(app, marketer, pg, clock):  # noqa: F811
    client, token = marketer
    enroll_three(app, pg, clock)
    start(client, token)
    added = post(client, token, f"{EDIT}/steps/add", NEW)
    assert added.status_code == 303, added.text[:2000]
    draft, running = draft_and_running(pg)
    assert changed_lines(running, draft) == [
        "+  - key: hip_questions",
        "+    delay: 1d",
        "+    channels: [email]",
        "+    template: hip_questions",
        "+    subject: {en: 'Lesson 1b: questions for your visit', es: 'Clase 1b: preguntas "
        "para tu cita'}",
        "+",
    ]
    with pg() as s:
        templates = s.get(SequenceDraft, KEY).templates
    assert templates["en/hip_questions.html"] == templates["en/hip_pain.html"]  # starter copy
    assert "es/hip_questions.txt" in templates and "en/hip_questions.sms.txt" not in templates
    page = client.get(f"{EDIT}?step=hip_questions")
    assert page.status_code == 200 and "Step 4: hip_questions" in page.text
    assert "Lesson 1b: questions for your visit" in page.text  # in the preview too
    entry = audits(pg)[-1]
    assert entry.after["step"] == "hip_questions" and entry.after["change"] == "added"
    assert "questions for your visit" not in str(entry.after)
    publish = client.get(f"{EDIT}/publish").text
    assert "Adds step hip_questions" in publish and "3 people" in publish
    # Moved up: one step's lines go above the other's, the rest stays.
    moved = post(client, token, f"{EDIT}/steps/hip_questions/move", {"direction": "up"})
    assert moved.status_code == 303
    draft, _ = draft_and_running(pg)
    assert draft.index("key: hip_questions") < draft.index("key: hip_pain")
    assert audits(pg)[-1].after == {**audits(pg)[-1].after, "change": "moved up"}
    assert "Adds step hip_questions" in client.get(f"{EDIT}/publish").text
    # Removed, after a confirmation that says whom it moves on.
    confirm = client.get(f"{EDIT}/steps/hip_questions/remove")
    assert confirm.status_code == 200 and "Yes, remove step hip_questions" in confirm.text
    assert "Removes step hip_questions" in confirm.text
    gone = post(client, token, f"{EDIT}/steps/hip_questions/remove")
    assert gone.status_code == 303
    draft, running = draft_and_running(pg)
    assert draft == running  # back to what runs, byte for byte
    with pg() as s:
        assert "en/hip_questions.html" not in s.get(SequenceDraft, KEY).templates
    assert audits(pg)[-1].after["change"] == "removed"


def test_removing_a_step_that_runs_counts_the_people_waiting_on_it(app, marketer, pg, clock):  # noqa: F811
    client, token = marketer
    enroll_three(app, pg, clock)
    start(client, token)
    # Two steps swapped: the three enrolled get them in the new order.
    moved = post(client, token, f"{EDIT}/steps/back_pain/move", {"direction": "up"})
    assert moved.status_code == 303
    assert "Reorders the steps" in client.get(f"{EDIT}/publish").text
    assert "3 people" in client.get(f"{EDIT}/publish").text
    post(client, token, f"{EDIT}/steps/back_pain/move", {"direction": "down"})
    assert draft_and_running(pg)[0] == draft_and_running(pg)[1]  # moved back: as it was
    # The three are enrolled at the start: each waits on the welcome.
    confirm = client.get(f"{EDIT}/steps/welcome/remove")
    assert confirm.status_code == 200
    assert "Removes step welcome: 3 people waiting on it move on" in confirm.text
    assert post(client, token, f"{EDIT}/steps/welcome/remove").status_code == 303
    draft, running = draft_and_running(pg)
    lines = changed_lines(running, draft)
    assert lines[0] == "-  - key: welcome" and all(line.startswith("-") for line in lines)
    assert "Removes step welcome: 3 people waiting on it move on" in (
        client.get(f"{EDIT}/publish").text
    )


def test_bad_step_additions_moves_and_removals_are_refused_and_kept(app, marketer, pg):  # noqa: F811
    client, token = marketer
    # No draft yet.
    assert post(client, token, f"{EDIT}/steps/add", NEW).status_code == 409
    start(client, token)
    before, _ = draft_and_running(pg)
    cases = [
        ({"key": "Hip Questions"}, "key", "lower-case"),
        ({"key": "hip_pain"}, "key", "already has a step"),
        ({"delay": "soon"}, "delay", "is not like"),
        ({"channels": []}, "channels", "at least one channel"),
        ({"channels": ["fax"]}, "channels", "unknown channel"),
        ({"new_template": "Bad Name"}, "template", "template name"),
        ({"subject.es": ""}, "subject.es", "needs a subject"),
        ({"subject.fr": "Bonjour"}, None, "unknown locale"),  # in the list at the top
        ({"after": "nosuch"}, "after", "no step"),
    ]
    for typed, field, message in cases:
        bad = post(client, token, f"{EDIT}/steps/add", {**NEW, **typed})
        assert bad.status_code == 400, (typed, bad.text[:500])
        beside = html.unescape(lint_beside(bad.text, f"new.{field}") if field else bad.text)
        assert message in beside, (typed, beside)
        if "key" in typed:
            assert f'value="{html.escape(typed["key"])}"' in bad.text  # typed text kept
    odd = post(client, token, f"{EDIT}/steps/add", {**NEW, "colour": "red"})
    assert odd.status_code == 400 and "unknown field" in odd.text
    # A step another step's condition and wait name: refused with the parser's words.
    refused = post(client, token, f"{EDIT}/steps/diagnosis/remove")
    assert refused.status_code == 409 and "not a step of this course" in refused.text
    assert client.get(f"{EDIT}/steps/diagnosis/remove").status_code == 409
    # Moved below the step that looks back at it: refused the same way.
    below = post(client, token, f"{EDIT}/steps/diagnosis/move", {"direction": "down"})
    assert below.status_code == 400 and "not an earlier step" in html.unescape(below.text)
    first = post(client, token, f"{EDIT}/steps/welcome/move", {"direction": "up"})
    assert first.status_code == 400 and "already the first" in first.text
    sideways = post(client, token, f"{EDIT}/steps/welcome/move", {"direction": "left"})
    assert sideways.status_code == 400
    assert post(client, token, f"{EDIT}/steps/nosuch/move", {"direction": "up"}).status_code == 404
    assert post(client, token, f"{EDIT}/steps/nosuch/remove").status_code == 404
    no_token = client.post(f"{EDIT}/steps/add", data=NEW, headers={"Origin": "http://testserver"})
    assert no_token.status_code == 403
    assert draft_and_running(pg)[0] == before
