"""Editing a sequence in the browser, through the real app on PostgreSQL with sequences in
the database (web/sequences.py over campaigns/editing/drafts.py, step_edits.py and
step_preview.py): a draft of the shipped course, a step's fields edited with the lint
beside them and a live preview, the impact on people enrolled, the clinical review signed
in the draft, publish (new revision, audited, running at once), history and rollback, the
roles, a stale draft, and every bad input answered with a 4xx that keeps what was typed."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from campaigns.clock import FixedClock
from campaigns.content.rendering import Recipient
from campaigns.db import transaction
from campaigns.links import Signer, links_for
from campaigns.models import AuditEntry, SequenceDraft
from campaigns.sequences import store
from campaigns.staff.audit import Actor
from campaigns.staff.roles import ROLES
from tests.helpers import add_and_enroll
from tests.test_admin import BASE, make_app
from tests.test_staff_web import add_staff, csrf_of, signed_in

ROOT = Path(__file__).resolve().parents[1]
KEY = "hip_and_back"
EDIT = f"/admin/campaigns/{KEY}/edit"
# After the shipped course's clinical reviews (2026-11-28/29), within their year.
NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
ORIGIN = {"Origin": BASE}
SUBJECT = "Lesson 1: the hip, up close"


@pytest.fixture
def pg(pg_factory):
    return pg_factory


@pytest.fixture
def clock():
    return FixedClock(NOW)


def editor_app(pg, clock, tmp_path, **overrides):
    app = make_app(
        pg,
        clock,
        tmp_path,
        **{
            "sequences_source": "database",
            "definitions_dir": ROOT / "campaigns" / "definitions",
            "templates_dir": ROOT / "templates",
            **overrides,
        },
    )
    if overrides.get("sequences_source", "database") == "database":
        app.state.registry.refresh()  # seeds revision 1 from the shipped file
    return app


@pytest.fixture
def app(pg, clock, tmp_path):
    app = editor_app(pg, clock, tmp_path)
    for role in ROLES:
        add_staff(pg, clock, f"{role}1", role)
    return app


@pytest.fixture
def marketer(app):
    return signed_in(app, "marketer1")


def post(client, token, url, data=None, **kw):
    return client.post(url, data={"csrf_token": token, **(data or {})}, headers=ORIGIN, **kw)


def fields_of(page: str) -> dict[str, str]:
    """The step form's text fields as the page shows them (name -> value)."""
    form = page[page.index('id="step-form"') : page.index("</form>", page.index('id="step-form"'))]
    out = {}
    for name, value in re.findall(r'<input type="text"[^>]*name="([^"]+)" value="([^"]*)"', form):
        out[name] = value
    for name, value in re.findall(
        r'<textarea[^>]*name="([^"]+)"[^>]*>(.*?)</textarea>', form, re.S
    ):
        out[name] = value
    return out


def step_form(client, step: str) -> dict:
    """What the step's form would post unchanged: its fields, channels and fallback."""
    page = client.get(f"{EDIT}?step={step}").text
    data = {k: html.unescape(v) for k, v in fields_of(page).items()}
    form = page[page.index('id="step-form"') :]
    form = form[: form.index("</form>")]
    data["channels"] = re.findall(r'name="channels" value="(\w+)" checked', form)
    fallback = re.search(r'<option value="(\w*)" selected', form)
    data["fallback"] = fallback[1] if fallback else ""
    return data


def lint_beside(page: str, field: str) -> str:
    found = re.search(rf'data-lint-for="{re.escape(field)}"[^>]*>(.*?)</div>', page, re.S)
    return found[1] if found else ""


def audits(pg, prefix="sequence.") -> list[AuditEntry]:
    with pg() as s:
        return [
            a
            for a in s.scalars(select(AuditEntry).order_by(AuditEntry.id))
            if a.action.startswith(prefix)
        ]


def start(client, token):
    done = post(client, token, f"{EDIT}/start")
    assert done.status_code == 303, done.text


def enroll_three(app, pg, clock):
    rt = app.state.runtime
    for n in range(3):
        add_and_enroll(pg, clock, rt.registry, rt.policy, campaign=KEY, email=f"p{n}@example.com")


def rendered_subject(app, step="hip_pain") -> str:
    registry = app.state.registry
    campaign = registry.get(KEY)
    links = links_for(BASE, Signer(b"k" * 32), "tok", campaign.step(step).answer_values)
    return app.state.renderer.email(
        campaign, campaign.step(step), Recipient("Ana", "en"), links
    ).subject


# ---------------------------------------------------------------- the editor


def test_a_draft_is_a_copy_of_what_runs_and_starting_it_is_audited(app, marketer, pg):
    client, token = marketer
    page = client.get(EDIT)
    assert page.status_code == 200
    assert "Start a draft from revision 1" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    start(client, token)
    page = client.get(EDIT).text
    assert "Draft from revision 1, no changes yet" in page
    with pg() as s:
        draft = s.get(SequenceDraft, KEY)
        assert draft.definition == store.head(s, KEY).definition
    assert [a.action for a in audits(pg)][-1] == "sequence.draft.open"
    # Opening again is the same draft, no second entry.
    start(client, token)
    assert [a.action for a in audits(pg)].count("sequence.draft.open") == 1


def test_a_delay_edit_keeps_the_file_s_comments_and_its_impact_counts_people_waiting(
    app, marketer, pg, clock
):
    client, token = marketer
    enroll_three(app, pg, clock)
    start(client, token)
    data = step_form(client, "welcome")
    assert data["delay"] == "0m" and data["subject.en"] == "Welcome to your four-week course"
    saved = post(client, token, f"{EDIT}/steps/welcome", {**data, "delay": "1d"})
    assert saved.status_code == 303
    with pg() as s:
        definition = s.get(SequenceDraft, KEY).definition
        running = store.head(s, KEY).definition
    assert "    delay: 1d\n    channels: [email, sms]\n    template: welcome" in definition
    # Only that line changed: every comment and the layout are kept.
    changed = [
        (a, b) for a, b in zip(running.splitlines(), definition.splitlines(), strict=True) if a != b
    ]
    assert changed == [("    delay: 0m", "    delay: 1d")]
    entry = audits(pg)[-1]
    assert entry.action == "sequence.draft.save" and entry.after["step"] == "welcome"
    assert "Welcome to" not in str(entry.after) + str(entry.before)  # ids, never copy
    page = client.get(f"{EDIT}/publish")
    assert page.status_code == 200
    assert "Changes the delay of step welcome (0m -&gt; 1d) for 3 people waiting on this step" in (
        page.text
    )
    assert "+    delay: 1d" in page.text


def test_the_lint_and_preview_follow_the_typed_copy_beside_each_field(app, marketer, pg):
    client, token = marketer
    start(client, token)
    data = step_form(client, "back_pain")
    sms = "body.en/back_pain.sms.txt"
    html_body = "body.en/back_pain.html"
    # Typed, not saved: the check route answers the lint beside each field and the preview.
    typed = {**data, "subject.en": "Lesson 2: the back, up close"}
    typed[sms] = data[sms].replace("'", "\u2019") + " Don\u2019t sit all day."
    answer = post(client, token, f"{EDIT}/steps/back_pain/check", typed)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert "outside GSM-7" in found["findings"][sms] and "sev-error" in found["findings"][sms]
    assert "Lesson 2: the back, up close" in found["preview"]
    assert 'sandbox=""' in found["preview"] and "segment" in found["preview"]
    # A variable no template knows: an error beside the body, and the preview says why.
    typed[html_body] = data[html_body] + "<p>{{ reader_name }}</p>"
    found = post(client, token, f"{EDIT}/steps/back_pain/check", typed).json()
    assert "reader_name" in found["findings"][html_body]
    assert "Cannot render" in found["preview"] and "reader_name" in found["preview"]
    with pg() as s:  # nothing saved by a check
        assert "reader_name" not in str(s.get(SequenceDraft, KEY).templates)
    # Saved (the page without its script): the same errors beside the same fields.
    assert post(client, token, f"{EDIT}/steps/back_pain", typed).status_code == 303
    page = client.get(f"{EDIT}?step=back_pain").text
    assert "outside GSM-7" in lint_beside(page, sms)
    assert "reader_name" in lint_beside(page, html_body)
    assert "Lesson 2: the back, up close" in page
    # Fixed: gone.
    assert post(client, token, f"{EDIT}/steps/back_pain", data).status_code == 303
    page = client.get(f"{EDIT}?step=back_pain").text
    assert "outside GSM-7" not in lint_beside(page, sms) and "reader_name" not in page


def test_publish_needs_the_review_signs_it_runs_at_once_and_rolls_back(app, marketer, pg):
    client, token = marketer
    assert rendered_subject(app) == "Lesson 1: a closer look at the hip"
    start(client, token)
    data = step_form(client, "hip_pain")
    post(client, token, f"{EDIT}/steps/hip_pain", {**data, "subject.en": SUBJECT})
    # The copy changed since its review: publishing is refused whole, and says why.
    refused = post(client, token, f"{EDIT}/publish", {"note": "closer"})
    assert refused.status_code == 409
    assert "Not published" in refused.text and "clinical review" in refused.text
    with pg() as s:
        assert store.head(s, KEY).number == 1
    # The review form refuses a name without a credential, as `drip campaigns review` does.
    bad = post(client, token, f"{EDIT}/sign", {"step": "hip_pain", "scope": "step", "by": "Ana"})
    assert bad.status_code == 400 and "credential" in bad.text
    signed = post(
        client, token, f"{EDIT}/sign", {"step": "hip_pain", "scope": "step", "by": "Ana Ruiz, PT"}
    )
    assert signed.status_code == 303
    page = client.get(f"{EDIT}?step=hip_pain").text
    assert "reviewed by Ana Ruiz, PT on 2026-12-01" in page
    done = post(client, token, f"{EDIT}/publish", {"note": "closer"})
    assert done.status_code == 200 and "Revision 2 of hip_and_back is published" in done.text
    with pg() as s:
        head = store.head(s, KEY)
        assert (head.number, head.source, head.note) == (2, "browser", "closer")
        assert s.get(SequenceDraft, KEY) is None
    assert app.state.registry.running[KEY] == 2
    assert rendered_subject(app) == SUBJECT
    entries = audits(pg)
    assert [a.action for a in entries][-3:] == [
        "sequence.draft.save",
        "sequence.draft.review",
        "sequence.publish",
    ]
    assert entries[-2].after == {"steps": ["hip_pain"], "by": "Ana Ruiz, PT"}
    assert entries[-1].after["revision"] == 2 and entries[-1].actor == "marketer1"
    # History: both revisions, the newest with its diff; rollback shows its impact first.
    history = client.get(f"/admin/campaigns/{KEY}/history")
    assert history.status_code == 200
    assert "runs now" in history.text and SUBJECT in history.text
    preview = client.get(f"/admin/campaigns/{KEY}/history/1/rollback")
    assert preview.status_code == 200 and "hip_pain" in preview.text
    assert SUBJECT in preview.text
    back = post(client, token, f"/admin/campaigns/{KEY}/history/1/rollback")
    assert back.status_code == 200 and "as revision 3" in back.text
    with pg() as s:
        head = store.head(s, KEY)
        assert (head.number, head.source) == (3, "rollback")
        assert head.digest == store.revision(s, KEY, 1).digest
    assert rendered_subject(app) == "Lesson 1: a closer look at the hip"
    assert audits(pg)[-1].after["source"] == "rollback"


def test_a_draft_begun_before_another_publish_is_refused_and_can_restart(app, marketer, pg, clock):
    client, token = marketer
    start(client, token)
    data = step_form(client, "welcome")
    post(client, token, f"{EDIT}/steps/welcome", {**data, "delay": "5m"})
    with transaction(pg) as s:  # someone pushes meanwhile
        bundle = store.bundle_of(store.head(s, KEY))
        store.publish(
            s,
            clock,
            Actor("other", "marketer"),
            bundle.replace(definition=bundle.definition.replace("version: 1", "version: 2")),
            ROOT / "templates",
            source="push",
        )
    page = client.get(EDIT).text
    assert "Revision 2 was published after this draft began" in page
    refused = post(client, token, f"{EDIT}/publish")
    assert refused.status_code == 409 and "start the draft again from revision 2" in refused.text
    with pg() as s:
        assert store.head(s, KEY).number == 2
    assert post(client, token, f"{EDIT}/start", {"restart": "1"}).status_code == 303
    with pg() as s:
        draft = s.get(SequenceDraft, KEY)
        assert draft.base_number == 2 and "delay: 5m" not in draft.definition


def test_only_marketers_and_admins_open_the_editor(app, pg, marketer):
    client, token = marketer
    start(client, token)
    for role in ("care", "ops"):
        other, other_token = signed_in(app, f"{role}1")
        for url in (EDIT, f"/admin/campaigns/{KEY}/history", "/admin/sequences"):
            assert other.get(url).status_code == 403, (role, url)
        refused = post(other, other_token, f"{EDIT}/steps/welcome", {"delay": "17d"})
        assert refused.status_code == 403
        assert post(other, other_token, f"{EDIT}/publish").status_code == 403
    admin, admin_token = signed_in(app, "admin1")
    assert admin.get(EDIT).status_code == 200
    with pg() as s:
        assert "delay: 17d" not in s.get(SequenceDraft, KEY).definition


def test_bad_input_gets_a_clear_4xx_and_keeps_what_was_typed(app, marketer, pg):
    client, token = marketer
    assert client.get("/admin/campaigns/nosuch/edit").status_code == 404
    assert post(client, token, "/admin/campaigns/nosuch/edit/start").status_code == 404
    # No draft yet: a save is refused, not a crash.
    assert post(client, token, f"{EDIT}/steps/welcome", {"delay": "1d"}).status_code == 409
    start(client, token)
    with pg() as s:
        before = s.get(SequenceDraft, KEY).definition
    assert client.get(f"{EDIT}?step=nosuch").status_code == 404
    assert post(client, token, f"{EDIT}/steps/nosuch", {"delay": "1d"}).status_code == 404
    data = step_form(client, "welcome")
    typed_subject = "A subject I typed carefully"
    bad = post(
        client, token, f"{EDIT}/steps/welcome", {**data, "delay": "2x", "subject.en": typed_subject}
    )
    assert bad.status_code == 400
    assert "is not like" in lint_beside(bad.text, "delay")
    assert fields_of(bad.text)["delay"] == "2x"
    assert fields_of(bad.text)["subject.en"] == typed_subject
    unknown = post(client, token, f"{EDIT}/steps/welcome", {**data, "subject.fr": "Bonjour"})
    assert unknown.status_code == 400 and "unknown locale" in unknown.text
    big = "x" * 100_001
    huge = post(client, token, f"{EDIT}/steps/welcome", {**data, "body.en/welcome.txt": big})
    assert huge.status_code == 400 and "longer than 100 KB" in huge.text
    assert big in huge.text  # typed text comes back
    odd = post(client, token, f"{EDIT}/steps/welcome", {**data, "colour": "red"})
    assert odd.status_code == 400 and "unknown field" in odd.text
    nul = post(client, token, f"{EDIT}/steps/welcome", {**data, "subject.en": "a\x00b"})
    assert nul.status_code == 400 and "control character" in nul.text
    none = post(client, token, f"{EDIT}/steps/welcome", {**data, "channels": []})
    assert none.status_code == 400
    upload = client.post(
        f"{EDIT}/steps/welcome",
        data={"csrf_token": token},
        files={"delay": ("d.txt", b"1d")},
        headers=ORIGIN,
    )
    assert upload.status_code == 400 and "not a text field" in upload.text
    no_token = client.post(f"{EDIT}/steps/welcome", data={**data, "delay": "3d"}, headers=ORIGIN)
    assert no_token.status_code == 403
    window = post(
        client, token, f"{EDIT}/window", {"days": ["mon"], "start": "9am", "end": "17:00"}
    )
    assert window.status_code == 400 and "not a time" in window.text
    late = post(
        client, token, f"{EDIT}/window", {"days": ["mon"], "start": "18:00", "end": "17:00"}
    )
    assert late.status_code == 400 and "later than start" in late.text
    assert post(client, token, f"/admin/campaigns/{KEY}/history/9/rollback").status_code == 404
    assert client.get(f"/admin/campaigns/{KEY}/history/0/rollback").status_code == 422
    with pg() as s:
        assert s.get(SequenceDraft, KEY).definition == before  # nothing half-saved
    assert client.get(EDIT).status_code == 200


def test_with_files_the_editor_is_read_only(pg, clock, tmp_path):
    app = editor_app(pg, clock, tmp_path, sequences_source="files")
    add_staff(pg, clock, "marketer1", "marketer")
    client, token = signed_in(app, "marketer1")
    page = client.get(EDIT)
    assert page.status_code == 200
    assert "edits are made in the files" in page.text.lower()
    assert "<fieldset disabled>" in page.text and "Save and preview" not in page.text
    assert csrf_of(page.text)
    refused = post(client, token, f"{EDIT}/start")
    assert refused.status_code == 409 and "SEQUENCES_SOURCE=files" in refused.text


def test_copy_that_breaks_at_render_is_an_error_beside_its_field_never_a_500(app, marketer, pg):
    """A subject or body that raises an ordinary Python error as it renders (adding a
    string to a name, a range the sandbox refuses, dividing by zero) is the lint's error
    beside the field; the step's editor and the publish page still open."""
    client, token = marketer
    start(client, token)
    data = step_form(client, "back_pain")
    html_body = "body.en/back_pain.html"
    for subject, error in (
        ("Hi {{ first_name + 1 }}", "TypeError"),
        ("{{ 1 // 0 }}", "ZeroDivisionError"),
        ("{{ range(10**7)|length }}", "OverflowError"),
    ):
        typed = {**data, "subject.en": subject}
        answer = post(client, token, f"{EDIT}/steps/back_pain/check", typed)
        assert answer.status_code == 200, (subject, answer.text[:300])
        beside = answer.json()["findings"][html_body]  # the email it breaks
        assert "sev-error" in beside and f"subject: {error}" in beside, beside
    recursive = data[html_body] + "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}"
    saved = post(client, token, f"{EDIT}/steps/back_pain", {**data, html_body: recursive})
    assert saved.status_code == 303
    page = client.get(f"{EDIT}?step=back_pain")
    assert page.status_code == 200 and "RecursionError" in lint_beside(page.text, html_body)
    assert client.get(f"{EDIT}/publish").status_code == 200
    # A made-up body field (a typo, a path) is refused as none of the step's files.
    stray = post(client, token, f"{EDIT}/steps/back_pain", {**data, "body.en/../../x.htm": "x"})
    assert stray.status_code == 400


def test_delays_are_ascii_and_at_most_a_year(app, marketer, pg):
    client, token = marketer
    start(client, token)
    data = step_form(client, "back_pain")
    for delay, says in (
        ("500000w", "over 366 days"),
        ("99999999999999999999m", "over 366 days"),
        ("\u0663d", "is not like"),
        ("\uff11d", "is not like"),
    ):
        refused = post(client, token, f"{EDIT}/steps/back_pain", {**data, "delay": delay})
        assert refused.status_code == 400, delay
        assert says in html.unescape(refused.text) and f'value="{delay}"' in refused.text
    assert (
        post(client, token, f"{EDIT}/steps/back_pain", {**data, "delay": "52w"}).status_code == 303
    )


def test_what_is_signed_and_published_is_what_the_person_looked_at(app, marketer, pg):
    client, token = marketer
    start(client, token)
    page = client.get(f"{EDIT}?step=hip_pain").text
    seen = re.search(r'name="seen" value="([0-9a-f]{64})"', page).group(1)
    data = step_form(client, "hip_pain")
    # Someone saves new copy after the reviewer opened the page: the signature is refused.
    edited = {**data, "subject.en": "Lesson 1: stop your medicine today"}
    assert post(client, token, f"{EDIT}/steps/hip_pain", edited).status_code == 303
    sign = {"step": "hip_pain", "scope": "step", "by": "Ana Ruiz, PT", "seen": seen}
    refused = post(client, token, f"{EDIT}/sign", sign)
    assert refused.status_code == 400 and "saved since this page was opened" in refused.text
    # Looked at again: signed.
    page = client.get(f"{EDIT}?step=hip_pain").text
    sign["seen"] = re.search(r'name="seen" value="([0-9a-f]{64})"', page).group(1)
    assert post(client, token, f"{EDIT}/sign", sign).status_code == 303
    # The publish page read, then a save: the publish is refused, nothing runs.
    publish_page = client.get(f"{EDIT}/publish").text
    seen = re.search(r'name="seen" value="([0-9a-f]{64})"', publish_page).group(1)
    delayed = {**step_form(client, "hip_pain"), "delay": "9d"}
    assert post(client, token, f"{EDIT}/steps/hip_pain", delayed).status_code == 303
    late = post(client, token, f"{EDIT}/publish", {"note": "x", "seen": seen})
    assert late.status_code == 409 and "saved since this page was opened" in late.text
    with pg() as s:
        assert store.heads(s) == {"hip_and_back": 1, "check_in": 1}
