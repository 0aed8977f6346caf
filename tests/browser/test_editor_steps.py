"""A marketer adds a step in a real browser, sees it in the list and its preview, looks at
a step's conditions at phone width, and removes the new step after the confirmation
(web/sequences.py over campaigns/editing/step_order.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.browser.conftest import shot_path

REVIEWED_DAY = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
EDIT = "/admin/campaigns/hip_and_back/edit"


def test_a_marketer_adds_a_step_and_removes_it(live, world, staff_context):
    live.clock.current = REVIEWED_DAY
    page = staff_context(1280).new_page()
    page.goto(live.base + EDIT)
    with page.expect_navigation():
        page.click("text=Start a draft from revision 1")
    page.select_option("#n-after", "hip_pain")
    page.fill("#n-key", "hip_questions")
    page.fill("#n-delay", "1d")
    page.fill("#n-template", "hip_questions")
    page.fill("#n-subject-en", "Lesson 1b: questions for your visit")
    page.fill("#n-subject-es", "Clase 1b: preguntas para tu cita")
    with page.expect_navigation() as added:
        page.click("text=Add the step")
    assert added.value.status == 200
    assert "hip_questions" in page.locator("table.steps").inner_text()
    assert page.locator("h2#editor").inner_text() == "Step 4: hip_questions"
    assert "Lesson 1b: questions for your visit" in page.locator("#preview-area").inner_text()
    page.screenshot(path=shot_path("flow-editor-step-added"), full_page=True)

    phone = staff_context(390).new_page()
    phone.goto(live.base + EDIT + "?step=diagnosis_by_text")
    box = phone.locator("#step-form fieldset").nth(2)
    assert "unless opened diagnosis" in box.inner_text()
    assert phone.input_value("#f-unless") == "{opened: diagnosis}"
    box.screenshot(path=shot_path("flow-editor-conditions-phone"))
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone.close()

    with page.expect_navigation():
        page.click("text=Remove step hip_questions…")
    assert "Removes step hip_questions" in page.locator("ul.impact").inner_text()
    with page.expect_navigation():
        page.click("text=Yes, remove step hip_questions")
    assert "hip_questions" not in page.locator("table.steps").inner_text()
    page.close()
