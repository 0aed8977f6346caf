"""Every page the browser tests visit: one row each, in one table (PAGES).

A row names the page, its kind (pages of one kind may share a title, pages of different
kinds must not), who sees it, how to reach it from a fresh page (a link, or a form filled
and sent by clicking), the HTTP status it answers with, and whether reaching it writes
(a sign-up, a request, an unsubscribe: such a case gets people made for it alone).

KNOWN lists, by page, what is wrong with it today: an axe rule id, or one of this suite's
own checks ("lang", "horizontal-scroll", "title"). A known problem marks that case
xfail(strict): when the page is fixed the case fails until its entry in KNOWN is removed.

To add a page, add a row: e.g. for /admin/people and a person's page,

    Case("admin-people", "people", STAFF, visit(lambda w, lang: "/admin/people"), langs=EN),
    Case("admin-person", "person", STAFF,
         visit(lambda w, lang: f"/admin/people/{w.person('es').subscriber_id}"), langs=EN),
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from playwright.sync_api import Page, Response

from tests.browser.people import World

SUBSCRIBER, STAFF = "subscriber", "staff"
BOTH = ("en", "es")
EN = ("en",)  # the staff pages are in English, but for the results page
WIDTHS = (390, 1280)  # a phone (an iPhone 12 to 15's CSS width) and a desktop

# (page, base URL, world, language) -> the response of the page's last navigation
Go = Callable[[Page, str, World, str], Response | None]


@dataclass(frozen=True)
class Known:
    """A problem a page has today, where it shows."""

    rule: str
    langs: tuple[str, ...] = BOTH
    widths: tuple[int, ...] = WIDTHS


@dataclass(frozen=True)
class Case:
    name: str
    kind: str
    audience: str
    go: Go
    langs: tuple[str, ...] = BOTH
    status: int = 200
    writes: bool = False  # changes what other pages show: gets people of its own

    def known_rules(self, lang: str, width: int) -> set[str]:
        known = KNOWN.get(self.name, ())
        return {k.rule for k in known if lang in k.langs and width in k.widths}


def visit(where: Callable[[World, str], str]) -> Go:
    """Open a URL: an absolute one from a message, or a path on the app."""

    def go(page: Page, base: str, world: World, lang: str) -> Response | None:
        url = where(world, lang)
        return page.goto(url if url.startswith("http") else base + url)

    return go


def then_submit(first: Go, fill: dict[str, str] | None = None, button: str = "") -> Go:
    """Reach a form with `first`, fill its fields (by CSS selector), press a submit button."""

    def go(page: Page, base: str, world: World, lang: str) -> Response | None:
        first(page, base, world, lang)
        for selector, value in (fill or {}).items():
            if value == "check":
                page.check(selector)
            else:
                page.fill(selector, value)
        with page.expect_navigation() as nav:
            page.click(button or "form[method=post] [type=submit]")
        return nav.value

    return go


def _link(kind: str, channels: str = "both") -> Callable[[World, str], str]:
    return lambda w, lang: getattr(w.person(lang, channels).links, kind)


# What fails today, by page: nothing. A problem found later is listed here with its rule
# (e.g. "color-contrast": (Known("color-contrast", langs=("es",)),)) until it is fixed.
KNOWN: dict[str, tuple[Known, ...]] = {}
# Kinds of page that share a title today, by language.
KNOWN_SHARED_TITLES: dict[str, list[set[str]]] = {}

signup = visit(lambda w, lang: f"/signup?lang={lang}")
confirm = visit(lambda w, lang: w.confirm[lang])
confirm_stop = visit(lambda w, lang: w.confirm[lang] + "/stop")
answer = visit(lambda w, lang: w.person(lang).answer_links[4])
contact = visit(_link("contact"))
unsubscribe = visit(_link("unsubscribe"))
channels = visit(lambda w, lang: "/admin/channels")
login = visit(lambda w, lang: "/admin/login")
person = visit(lambda w, lang: f"/admin/people/{w.person('es').subscriber_id}")


def _preview(kind: str) -> Callable[[World, str], str]:
    """A test message's link (campaigns.links.sample_links_for): a preview page."""
    return lambda w, lang: getattr(w.previews[lang], kind)


def _preview_answer(w: World, lang: str) -> str:
    return w.previews[lang].answers[7]


def _editor(path: str) -> Go:
    """A page of the sequence editor with a draft open: started from the editor's button
    (a draft that is open already needs none), then `path` under the campaign."""

    def go(page: Page, base: str, world: World, lang: str) -> Response | None:
        page.goto(f"{base}/admin/campaigns/{world.campaign}/edit")
        start = page.locator("form[action$='/edit/start'] [type=submit]")
        if start.count():
            with page.expect_navigation():
                start.first.click()
        return page.goto(f"{base}/admin/campaigns/{world.campaign}{path}")

    return go


def _staff(name: str, kind: str, path: Callable[[World, str], str], **kw) -> Case:
    return Case(name, kind, STAFF, visit(path), langs=EN, **kw)


PAGES: tuple[Case, ...] = (
    Case("signup", "signup", SUBSCRIBER, signup),
    Case("signup-errors", "signup", SUBSCRIBER, then_submit(signup), status=400),
    Case(
        "signup-done",
        "signup",
        SUBSCRIBER,
        then_submit(
            signup,
            {"#first_name": "Nora", "#email": "nora@example.com", "[name=channel_email]": "check"},
        ),
        writes=True,
    ),
    Case("confirm", "confirm", SUBSCRIBER, confirm),
    Case("confirm-done", "confirm", SUBSCRIBER, then_submit(confirm), writes=True),
    # The confirmation email's "not me" link: stop these emails before ever confirming.
    Case("confirm-stop", "confirm-stop", SUBSCRIBER, confirm_stop),
    Case("confirm-stop-done", "confirm-stop", SUBSCRIBER, then_submit(confirm_stop), writes=True),
    Case("privacy", "privacy", SUBSCRIBER, visit(lambda w, lang: f"/privacy?lang={lang}")),
    Case("terms", "terms", SUBSCRIBER, visit(lambda w, lang: f"/terms?lang={lang}")),
    Case("lesson", "lesson", SUBSCRIBER, visit(_link("read_online"))),
    Case("contact", "contact", SUBSCRIBER, contact),
    Case("contact-email-only", "contact", SUBSCRIBER, visit(_link("contact", "email"))),
    # A control character in the note: the one thing the form refuses today.
    Case(
        "contact-error", "contact", SUBSCRIBER, then_submit(contact, {"#note": "\x01"}), status=400
    ),
    Case(
        "contact-done",
        "contact",
        SUBSCRIBER,
        then_submit(contact, {"#when": "after 5pm", "#note": "About lesson 1"}),
        writes=True,
    ),
    Case("preferences", "preferences", SUBSCRIBER, visit(_link("preferences"))),
    Case(
        "preferences-saved",
        "preferences",
        SUBSCRIBER,
        then_submit(visit(_link("preferences"))),
        writes=True,
    ),
    Case("unsubscribe", "unsubscribe", SUBSCRIBER, unsubscribe),
    Case("unsubscribe-sms-only", "unsubscribe", SUBSCRIBER, visit(_link("unsubscribe", "sms"))),
    Case("unsubscribe-done", "unsubscribe", SUBSCRIBER, then_submit(unsubscribe), writes=True),
    Case("answer", "answer", SUBSCRIBER, answer),
    Case("answer-done", "answer", SUBSCRIBER, then_submit(answer), writes=True),
    Case(
        "invalid-link", "invalid", SUBSCRIBER, visit(lambda w, lang: "/u/nosuch.link"), status=404
    ),
    Case("admin", "dashboard", STAFF, visit(lambda w, lang: "/admin"), langs=EN),
    # The results page is in English and Spanish (web/results_words.py).
    Case(
        "admin-campaign",
        "campaign",
        STAFF,
        visit(lambda w, lang: f"/admin/campaigns/{w.campaign}?lang={lang}"),
    ),
    Case(
        "admin-campaign-filtered",
        "campaign",
        STAFF,
        visit(
            lambda w, lang: (
                f"/admin/campaigns/{w.campaign}"
                f"?lang={lang}&channel=email&locale={lang}&since=2020-01-01&until=2099-12-31"
            )
        ),
    ),
    Case(
        "admin-campaign-bad-filter",
        "campaign-bad-filter",
        STAFF,
        visit(lambda w, lang: f"/admin/campaigns/{w.campaign}?lang={lang}&channel=fax"),
        status=400,
    ),
    Case(
        "admin-contact-requests",
        "contact-requests",
        STAFF,
        visit(lambda w, lang: "/admin/contact-requests"),
        langs=EN,
    ),
    Case("admin-inbox", "inbox", STAFF, visit(lambda w, lang: "/admin/inbox"), langs=EN),
    Case("admin-outbox", "outbox", STAFF, visit(lambda w, lang: "/admin/outbox"), langs=EN),
    Case("admin-channels", "channels", STAFF, channels, langs=EN),
    _staff("admin-people", "people", lambda w, lang: "/admin/people?q=a"),
    Case("admin-person", "person", STAFF, person, langs=EN),
    _staff(
        "admin-person-erase",
        "erase",
        lambda w, lang: f"/admin/people/{w.person('en', 'email').subscriber_id}/erase",
    ),
    _staff(
        "admin-contact-request",
        "contact-request",
        lambda w, lang: f"/admin/contact-requests/{w.request_id}",
    ),
    _staff("admin-audit", "audit", lambda w, lang: "/admin/audit"),
    # The sequence editor (web/sequences.py): the list, a draft's step with its lint and
    # preview, impact and publish, the history.
    _staff("admin-sequences", "sequences", lambda w, lang: "/admin/sequences"),
    Case(
        "admin-sequence-edit",
        "sequence-edit",
        STAFF,
        _editor("/edit?step=back_pain"),
        langs=EN,
        writes=True,
    ),
    Case(
        "admin-sequence-edit-branch",
        "sequence-edit",
        STAFF,
        _editor("/edit?step=diagnosis_by_text"),
        langs=EN,
        writes=True,
    ),
    Case(
        "admin-sequence-remove",
        "sequence-remove",
        STAFF,
        _editor("/edit/steps/back_pain/remove"),
        langs=EN,
        writes=True,
    ),
    Case(
        "admin-sequence-publish",
        "sequence-publish",
        STAFF,
        _editor("/edit/publish"),
        langs=EN,
        writes=True,
    ),
    _staff(
        "admin-sequence-history",
        "sequence-history",
        lambda w, lang: f"/admin/campaigns/{w.campaign}/history",
    ),
    _staff("admin-staff", "staff", lambda w, lang: "/admin/staff"),
    _staff("admin-staff-account", "staff-account", lambda w, lang: "/admin/staff/nina"),
    # Signing in: a browser with no session (the subscribers' context has none).
    Case("admin-login", "login", SUBSCRIBER, login, langs=EN),
    Case(
        "admin-login-refused",
        "login",
        SUBSCRIBER,
        then_submit(login, {"#name": "admin", "#password": "not the password"}),
        langs=EN,
        status=401,
    ),
    # Test-send's previews: a test message's links, bannered and recording nothing.
    Case("preview-lesson", "lesson", SUBSCRIBER, visit(_preview("read_online"))),
    Case("preview-contact", "contact", SUBSCRIBER, visit(_preview("contact"))),
    Case(
        "preview-contact-done",
        "contact",
        SUBSCRIBER,
        then_submit(visit(_preview("contact"))),
    ),
    Case("preview-preferences", "preferences", SUBSCRIBER, visit(_preview("preferences"))),
    Case("preview-unsubscribe", "unsubscribe", SUBSCRIBER, visit(_preview("unsubscribe"))),
    Case("preview-answer", "answer", SUBSCRIBER, visit(_preview_answer)),
    # A notice: pausing a channel without a reason is refused and says why.
    Case(
        "admin-notice",
        "notice",
        STAFF,
        then_submit(channels, button="form[action$='/email/pause'] [type=submit]"),
        langs=EN,
        status=400,
    ),
)
