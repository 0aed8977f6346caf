"""A marketer edits the running course in a real browser: a draft, a step's delay and
subject typed with the lint and the preview following as they type (the editor's script),
the clinical review signed, the impact on the people enrolled, publish, the history, and a
rollback, with the app serving sequences from the database (web/sequences.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from playwright.sync_api import expect

from campaigns.content.rendering import Recipient
from campaigns.links import Signer, links_for
from tests.browser.conftest import shot_path

# After the shipped course's clinical reviews (2026-11-28/29), within their year: what
# runs is reviewed, so an edit is refused until it is signed again.
REVIEWED_DAY = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
SUBJECT = "Lesson 1: the hip, up close"
OLD_SUBJECT = "Lesson 1: a closer look at the hip"


def running_subject(live) -> str:
    registry = live.app.state.registry
    campaign = registry.get("hip_and_back")
    step = campaign.step("hip_pain")
    links = links_for(live.base, Signer(b"k" * 32), "tok", step.answer_values)
    return live.app.state.renderer.email(campaign, step, Recipient("Ana", "en"), links).subject


def test_a_marketer_edits_publishes_and_rolls_back_a_step(live, world, staff_context):
    live.clock.current = REVIEWED_DAY
    assert running_subject(live) == OLD_SUBJECT
    page = staff_context(1280).new_page()
    page.goto(live.base + "/admin/sequences")
    with page.expect_navigation():
        page.click("a[href='/admin/campaigns/hip_and_back/edit']")
    with page.expect_navigation():
        page.click("text=Start a draft from revision 1")
    with page.expect_navigation():
        page.click("table.steps a:text-is('hip_pain')")
    assert page.input_value("#f-delay") == "2d"

    # Typed: the review beside the step turns to "changed" and the preview shows the subject.
    review = page.locator("[data-lint-for='review']")
    assert "changed since" not in review.inner_text()
    page.fill("#f-delay", "3d")
    page.fill("#f-subject-en", SUBJECT)
    expect(page.locator("#live-status")).to_contain_text("Checked")
    expect(review).to_contain_text("changed since")
    assert SUBJECT in page.locator("#preview-area").inner_text()
    frame = page.frame_locator("iframe.phone").first
    assert "Hi Maria" in frame.locator("body").inner_text()  # the sandboxed email renders
    # A curly apostrophe in the text message: an error beside that field, gone when fixed.
    sms = page.locator("#f-body-en-hip_pain-sms-txt")
    typed = sms.input_value()
    sms.fill(typed + " Don\u2019t rush.")
    beside = page.locator("[data-lint-for='body.en/hip_pain.sms.txt']")
    expect(beside).to_contain_text("outside GSM-7")
    sms.fill(typed)
    expect(beside).not_to_contain_text("outside GSM-7")
    page.screenshot(path=shot_path("flow-editor-typed"), full_page=True)
    page.locator("#preview-area section").first.screenshot(path=shot_path("flow-editor-preview"))
    page.locator("#step-form fieldset").nth(1).screenshot(path=shot_path("flow-editor-copy-en"))
    phone = staff_context(390).new_page()
    phone.goto(live.base + "/admin/campaigns/hip_and_back/edit?step=hip_pain")
    phone.screenshot(path=shot_path("flow-editor-phone-top"))
    phone.locator("#preview-area section").first.screenshot(
        path=shot_path("flow-editor-phone-preview")
    )
    inside = phone.frame_locator("iframe.phone").first.locator("body")
    assert "Hi Maria" in inside.inner_text()
    phone.close()

    with page.expect_navigation():
        page.click("text=Save and preview")
    assert "Saved" in page.locator("p.done").inner_text()
    assert page.input_value("#f-delay") == "3d"
    page.fill("#f-by", "Ana Ruiz, PT")
    with page.expect_navigation():
        page.click("text=Sign step hip_pain")
    assert "reviewed by Ana Ruiz, PT on 2026-12-01" in page.locator("#review + p").inner_text()

    with page.expect_navigation():
        page.click("text=See the impact and publish")
    impact = page.locator("ul.impact").inner_text()
    waiting = re.search(
        r"Changes the delay of step hip_pain \(2d -> 3d\) for (\d+) people waiting", impact
    )
    assert waiting and int(waiting[1]) > 0, impact
    assert "No errors" in page.content()
    page.screenshot(path=shot_path("flow-editor-publish"), full_page=True)
    page.fill("#note", "a shorter subject")
    with page.expect_navigation() as done:
        page.click("text=Publish revision 2")
    assert done.value.status == 200
    assert "Revision 2 of hip_and_back is published" in page.content()
    assert running_subject(live) == SUBJECT

    page.goto(live.base + "/admin/campaigns/hip_and_back/history")
    rows = page.locator("table tbody tr")
    assert rows.count() == 2 and "runs now" in rows.first.inner_text()
    assert "a shorter subject" in rows.first.inner_text()
    newest = page.locator("#rev-2").locator("xpath=following-sibling::details[1]")
    assert SUBJECT in newest.inner_text()
    page.screenshot(path=shot_path("flow-editor-history"), full_page=True)
    with page.expect_navigation():
        page.click("a[href$='/history/1/rollback']")
    assert "Changes the delay of step hip_pain (3d -> 2d)" in page.locator("ul.impact").inner_text()
    with page.expect_navigation() as back:
        page.click("text=Roll back to revision 1")
    assert back.value.status == 200 and "as revision 3" in page.content()
    assert running_subject(live) == OLD_SUBJECT
    page.close()
