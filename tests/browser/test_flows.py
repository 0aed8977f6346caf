"""What a subscriber does reaches the care team and comes back to them, by clicking in a
real browser: a call request lands on the staff queue; an unsubscribe shows on the
preferences page."""

from __future__ import annotations

from tests.browser.conftest import shot_path


def test_a_call_request_sent_from_the_form_is_on_the_staff_queue(
    live, world, subscriber_context, staff_context
):
    sofia = world.person("es")
    page = subscriber_context(390).new_page()
    page.goto(sofia.links.contact)
    page.fill("#when", "por la tarde")
    with page.expect_navigation() as sent:
        page.click("form[method=post] [type=submit]")
    assert sent.value.status == 200
    page.close()

    staff = staff_context(1280).new_page()
    staff.goto(live.base + "/admin/contact-requests")
    row = staff.locator("tr", has_text="Sofía")
    assert row.count() == 1
    assert "12025550144" in "".join(ch for ch in row.inner_text() if ch.isdigit())
    assert "por la tarde" in row.inner_text()
    staff.screenshot(path=shot_path("flow-contact-queue"), full_page=True)
    with staff.expect_navigation():
        row.locator("a[href^='/admin/contact-requests/']").first.click()
    with staff.expect_navigation() as marked:
        staff.locator("button[value=contacted]").click()
    assert marked.value.status == 200
    staff.goto(live.base + "/admin/contact-requests")
    assert "contacted" in staff.locator("tr", has_text="Sofía").inner_text().lower()
    staff.close()


def test_an_unsubscribe_from_email_shows_on_the_preferences_page(live, world, subscriber_context):
    ana = world.person("en")
    page = subscriber_context(390).new_page()
    page.goto(ana.links.preferences)
    assert page.is_checked("input[name=email]") and page.is_checked("input[name=sms]")
    page.goto(ana.links.unsubscribe)
    with page.expect_navigation() as done:
        page.click("form[method=post] [type=submit][value=email]")
    assert done.value.status == 200
    page.goto(ana.links.preferences)
    assert not page.is_checked("input[name=email]") and page.is_checked("input[name=sms]")
    page.screenshot(path=shot_path("flow-unsubscribed-preferences"), full_page=True)
    page.close()
