"""Engagement a marketer can believe: a course whose lesson links to other pages is sent
through the real send path (the composer, the local outbox), and people and machines
follow the links in the messages they actually got, through the real web app. The report
must count exactly the people's opens and clicks (unique and total, per link), leave out
every machine's with the reason, and say what its rates divide by. The redirect must lead
only to a page the lesson named: anything else gets the invalid-link page, never a 5xx
and never a redirect. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from email import policy as email_policy
from email.parser import BytesParser
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from campaigns.content.lint import LintContext, lint_campaign
from campaigns.content.rendering import Renderer, Sender
from campaigns.content.tracked_links import link_id
from campaigns.db import transaction
from campaigns.delivery.claiming import claim_due
from campaigns.delivery.sending import SendContext, send_batch
from campaigns.delivery.testsend import SendTestRequest, send_test
from campaigns.links import Signer, links_for
from campaigns.models import Event, Message, Subscriber
from campaigns.reporting.funnels import campaign_report
from campaigns.sequences.registry import Registry
from campaigns.states import EventType
from campaigns.tracking.events import NormalizedEvent, record_event
from campaigns.tracking.machine import AddressRanges
from settings import SettingsError, load_settings
from tests.conftest import FIXTURES, T0
from tests.helpers import add_and_enroll
from web.app import create_app
from web.i18n import words
from workers.cli import main
from workers.cli.context import Drip
from workers.providers.outbox import LocalOutbox
from workers.runtime import build_runtime

BASE = "https://care.example"
SECRET = "engagement-test-secret-0123456789abcdef"
PASSWORD = "engagement-admin-password"
# The pages lesson one links to: in the email, and (TEXT_PAGE) in its text.
PAGE_A = "https://www.nhs.uk/conditions/back-pain/"
PAGE_B = "https://example.org/exercises?level=1&side=left"  # & is &amp; in the HTML
APP_PAGE = f"{BASE}/signup"  # one of the app's own pages: through the redirect too
TEXT_PAGE = "https://example.org/t/walk"
# Only lesson two links here; PLAIN_PAGE is http, which the lint warns about.
STEP_TWO_PAGE = "https://example.org/only-in-lesson-two"
PLAIN_PAGE = "http://example.org/plain"

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
IPHONE_MAIL = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)
SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Safari/605.1.15"
)
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
BARRACUDA = "Barracuda Sentinel (EE)"
IMESSAGE_PREVIEW = "facebookexternalhit/1.1 Facebot Twitterbot/1.0"

LESSON_HTML = (
    '<p>Hi {{ first_name or "there" }}. Read <a href="PAGE_A">the NHS page</a>, try '
    '<a href="PAGE_B_HTML">these exercises</a>, or <a href="APP_PAGE">sign a friend up</a>. '
    '<a href="{{ links.read_online }}">Read online</a>. '
    '<a href="mailto:care@lunara.example">Write to us</a>.</p>'
)
LESSON_TXT = (
    'Hi {{ first_name or "there" }}. Read PAGE_A. Exercises: PAGE_B (try them).\n'
    "Sign a friend up: APP_PAGE\nRead online: {{ links.read_online }}"
)
COURSE = """key: resources
version: 1
name: Resources course
locales: [en]
steps:
  - {key: one, delay: 0m, channels: [email, sms], template: lesson, subject: "Lesson one"}
  - {key: two, delay: 3d, channels: [email], template: later, subject: "Lesson two"}
"""


def _fill(text: str) -> str:
    return (
        text.replace("PAGE_B_HTML", PAGE_B.replace("&", "&amp;"))
        .replace("PAGE_A", PAGE_A)
        .replace("PAGE_B", PAGE_B)
        .replace("APP_PAGE", APP_PAGE)
    )


@pytest.fixture
def course(tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(FIXTURES / "templates" / "_layout", templates / "_layout")
    folder = templates / "resources" / "en"
    folder.mkdir(parents=True)
    (folder / "lesson.html").write_text(_fill(LESSON_HTML))
    (folder / "lesson.txt").write_text(_fill(LESSON_TXT))
    (folder / "lesson.sms.txt").write_text(
        f"Lesson {{{{ step.number }}}}: walk with us at {TEXT_PAGE}. {{{{ links.read_online }}}}"
    )
    (folder / "later.html").write_text(
        f'<p>See <a href="{STEP_TWO_PAGE}">this</a> and <a href="{PLAIN_PAGE}">that</a>.</p>'
    )
    (folder / "later.txt").write_text(f"See {STEP_TWO_PAGE} and {PLAIN_PAGE}")
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    (definitions / "resources.yaml").write_text(COURSE)
    return definitions, templates


class World:
    """The course sent to six people, and the web app they follow its links on."""

    def __init__(self, factory, clock, policy, course, tmp_path, **settings):
        definitions, templates = course
        self.factory, self.clock = factory, clock
        self.registry = Registry(definitions, templates)
        self.renderer = Renderer(templates, Sender("Lunara", "1 Test Street, Springfield"))
        self.signer = Signer(SECRET.encode())
        self.outbox = LocalOutbox(tmp_path / "outbox")
        self.send = SendContext(
            factory=factory,
            clock=clock,
            registry=self.registry,
            renderer=self.renderer,
            signer=self.signer,
            policy=policy,
            base_url=BASE,
            email_provider=self.outbox,
            sms_provider=self.outbox,
        )
        self.settings = load_settings(
            environment="test",
            secret_key=SECRET,
            public_base_url=BASE,
            definitions_dir=definitions,
            templates_dir=templates,
            admin_password=PASSWORD,
            **settings,
        )
        self.app = create_app(self.settings, factory=factory, clock=clock)
        self.client = TestClient(self.app, follow_redirects=False)
        self.people: dict[str, dict[str, int]] = {}
        for name in "ABCDEF":
            details = {"email": f"{name.lower()}@example.com", "first_name": name}
            if name in "AB":  # A and B also get the lesson by text
                details["phone"] = f"+1202555014{'AB'.index(name)}"
            add_and_enroll(factory, clock, self.registry, policy, campaign="resources", **details)
        with transaction(factory) as s:
            work = claim_due(s, clock, self.registry, policy)
        assert send_batch(self.send, "email", work.email).sent == 6
        assert send_batch(self.send, "sms", work.sms).sent == 2
        with factory() as s:
            sent = s.execute(
                select(Subscriber.first_name, Message.channel, Message.id).join(
                    Subscriber, Message.subscriber_id == Subscriber.id
                )
            ).all()
        for name, channel, message_id in sent:
            self.people.setdefault(name, {})[channel] = message_id

    def email_links(self, name: str) -> list[str]:
        """Every link in the HTML and text parts of the email `name` got, in order."""
        return links_in(self.outbox.folder / "email" / f"{self.people[name]['email']:08d}.eml")

    def link_to(self, name: str, page: str) -> str:
        """The path of the redirect link to `page` in `name`'s email."""
        found = {u for u in self.email_links(name) if u.endswith("/" + link_id(page))}
        assert len(found) == 1, found  # the HTML and the text part carry the same link
        return found.pop()[len(BASE) :]

    def text_link_to(self, name: str, page: str) -> str:
        path = self.outbox.folder / "sms" / f"{self.people[name]['sms']:08d}.txt"
        (url,) = [u for u in _urls(path.read_text()) if "/l/" in u]
        assert url.endswith("/" + link_id(page))
        return url[len(BASE) :]

    def own(self, name: str, channel: str = "email"):
        with self.factory() as s:
            token = s.get(Message, self.people[name][channel]).public_token
        return links_for(BASE, self.signer, token)

    def at(self, seconds: float) -> None:
        self.clock.current = T0 + timedelta(seconds=seconds)

    def get(self, path: str, agent: str | None = CHROME, **headers):
        if agent is not None:
            headers["User-Agent"] = agent
        return self.client.get(path, headers=headers)

    def report(self):
        with self.factory() as s:
            return campaign_report(s, self.registry, "resources")


def links_in(eml) -> list[str]:
    mail = BytesParser(policy=email_policy.default).parsebytes(eml.read_bytes())
    html = mail.get_body(("html",)).get_content()
    text = mail.get_body(("plain",)).get_content()
    hrefs = [h.replace("&amp;", "&") for h in re.findall(r'href="([^"]+)"', html)]
    return hrefs + _urls(text)


def _urls(text: str) -> list[str]:
    # Sentence punctuation after a link in running text is not part of it.
    return [u.rstrip(".,;:!?") for u in re.findall(r"https?://[^\s()]+", text)]


@pytest.fixture
def world(factory, clock, policy, course, tmp_path):
    return World(factory, clock, policy, course, tmp_path)


def _rows(report):
    return {(r.step_key, r.channel): r for r in report.steps}


# ---------------------------------------------------------------- the counts


def _play(w: World) -> None:
    """Known real and machine requests, in order of time after the lessons went out (T0).
    The expected counts are spelled out in the test."""
    x, y = (lambda n: w.link_to(n, PAGE_B)), (lambda n: w.link_to(n, PAGE_A))
    pixel = {n: w.own(n).open[len(BASE) :] for n in "ABCDE"}

    w.at(2)  # a scanner follows A's text link as it lands: seconds after sending
    assert w.get(w.text_link_to("A", TEXT_PAGE), IPHONE_MAIL).status_code == 302
    w.at(3)  # and loads A's pixel
    assert w.get(pixel["A"], IPHONE_MAIL).status_code == 200
    w.at(60)  # A opens, and again: two real opens of one message
    w.get(pixel["A"], IPHONE_MAIL)
    w.at(70)
    w.get(pixel["A"], IPHONE_MAIL)
    w.at(80)  # Apple's privacy proxy loads B's images: the bare user agent
    w.get(pixel["B"], "Mozilla/5.0")
    w.at(90)  # B really opens it on a Mac
    w.get(pixel["B"], SAFARI)
    w.at(100)  # a link checker asks whether C's pixel exists
    assert w.client.head(pixel["C"], headers={"User-Agent": CHROME}).status_code == 200
    w.at(110)  # Gmail's image proxy loads C's pixel as C opens the email: a person
    w.get(pixel["C"], GMAIL_PROXY)
    w.at(120)  # D's mail security scans link B, the browser prefetches it, then D clicks it
    assert w.get(x("D"), BARRACUDA).status_code == 302
    w.at(130)
    assert w.get(x("D"), CHROME, **{"Sec-Purpose": "prefetch;prerender"}).status_code == 302
    w.at(140)
    assert w.get(x("D")).status_code == 302
    w.at(200)  # something with a browser's agent opens three of E's links within a second
    w.get(x("E"))
    w.at(200.5)
    w.get(y("E"))
    w.at(201)
    assert w.get(w.own("E").read_online[len(BASE) :]).status_code == 200
    w.at(210)  # E's pixel with no user agent at all
    w.get(pixel["E"], agent="")
    w.at(300)  # F reads two pages, one of them twice, minutes apart
    w.get(y("F"))
    w.at(330)
    w.get(x("F"))
    w.at(390)
    w.get(x("F"))
    w.at(400)  # a HEAD on A's link, and Chrome's legacy prefetch of A's read-online page
    assert w.client.head(x("A"), headers={"User-Agent": CHROME}).status_code == 302
    w.at(410)
    w.get(w.own("A").read_online[len(BASE) :], CHROME, Purpose="prefetch")
    w.at(420)  # B's phone previews the text's link, then B taps it
    w.get(w.text_link_to("B", TEXT_PAGE), IMESSAGE_PREVIEW)
    w.at(500)
    w.get(w.text_link_to("B", TEXT_PAGE), IPHONE_MAIL)


def test_the_report_counts_people_and_leaves_out_machines(world):
    _play(world)
    report = world.report()
    rows = _rows(report)
    email, text = rows[("one", "email")], rows[("one", "sms")]

    # Opens: A twice, B once, C once (through Gmail's proxy). Left out: A's seconds after
    # sending, B's Apple proxy, C's HEAD, E's without a user agent.
    assert (email.opens, email.opens_total, email.machine_opens) == (3, 4, 4)
    # Clicks: D once and F three times. Left out: D's scanner and prefetch, E's three at
    # once, A's HEAD and prefetch.
    assert (email.clicks, email.clicks_total, email.machine_clicks) == (2, 4, 7)
    assert email.left_out == [
        ("many links at once", 3),
        ("HEAD request", 2),
        ("browser prefetch", 2),
        ("Apple privacy proxy", 1),
        ("no user agent", 1),
        ("scanner or bot", 1),
        ("seconds after sending", 1),
    ]
    assert [(li.label, li.unique, li.total) for li in email.links] == [
        (PAGE_B, 2, 3),  # D once, F twice
        (PAGE_A, 1, 1),  # F
    ]
    # The local outbox reports no deliveries: rates divide by the six sent.
    assert (email.sent, email.delivered, email.rate_base) == (6, 0, "sent")
    assert (email.open_rate, email.click_rate, email.delivery_rate) == (0.5, 2 / 6, None)

    # The text: B's tap counts; A's seconds after sending and B's preview do not.
    assert (text.clicks, text.clicks_total, text.machine_clicks) == (1, 1, 2)
    assert text.left_out == [("scanner or bot", 1), ("seconds after sending", 1)]
    assert [(li.label, li.unique, li.total) for li in text.links] == [(TEXT_PAGE, 1, 1)]
    assert (text.rate_base, text.click_rate, text.open_rate) == ("sent", 0.5, None)

    assert (report.machine_opens, report.machine_clicks) == (4, 9)
    assert report.rate_bases == {"email": "sent", "sms": "sent"}

    # Every request was kept, each machine's with the reason it was left out.
    with world.factory() as s:
        kept = s.execute(
            select(Event.automated_reason, func.count()).group_by(Event.automated_reason)
        ).all()
    assert dict(kept) == {
        None: 9,
        "many_links_at_once": 3,
        "head_request": 2,
        "prefetch": 2,
        "apple_privacy_proxy": 1,
        "no_user_agent": 1,
        "scanner_agent": 2,
        "seconds_after_send": 2,
    }


def test_drip_report_and_the_admin_page_say_the_same(world, factory, clock):
    _play(world)
    obj = Drip.around(build_runtime(world.settings, factory=factory, clock=clock))
    out = CliRunner().invoke(main, ["report", "resources"], obj=obj)
    assert out.exit_code == 0, out.output
    row = next(line for line in out.output.splitlines() if line.split()[1:3] == ["one", "email"])
    cells = row.split()
    assert cells[11:14] == ["3/4", "2/4", "11"] and cells[-4:] == ["-", "50.0%", "33.3%", "sent"]
    assert "left out as a machine's: 4 open(s), 9 click(s)" in out.output
    assert "email rates divide by sent (no delivery reports on this channel)" in out.output
    assert f"one/email clicks per link u/t: {PAGE_B} 2/3; {PAGE_A} 1/1" in out.output
    assert f"one/sms clicks per link u/t: {TEXT_PAGE} 1/1" in out.output

    data = json.loads(CliRunner().invoke(main, ["report", "resources", "--json"], obj=obj).output)
    first = data["steps"][0]
    assert (first["opens"], first["opens_total"], first["clicks"], first["clicks_total"]) == (
        3,
        4,
        2,
        4,
    )
    assert first["rate_base"] == "sent" and first["links"][0]["label"] == PAGE_B
    assert data["left_out"]["opens"] == 4 and data["left_out"]["clicks"] == 9
    assert data["left_out"]["why"]["many links at once"] == 3

    auth = {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}
    page = world.client.get("/admin/campaigns/resources", headers=auth)
    assert page.status_code == 200
    assert "4 open(s) and 9 click(s) in this report" in page.text
    assert "email: per sent; sms: per sent" in page.text
    links = page.text.split('id="links"')[1]
    assert PAGE_B.replace("&", "&amp;") in links and TEXT_PAGE in links


def test_with_delivery_reports_rates_divide_by_delivered_and_timing_counts_from_them(world):
    # SendGrid reports A's email delivered five minutes after it went out.
    delivered_at = T0 + timedelta(minutes=5)
    with transaction(world.factory) as s:
        ref = s.get(Message, world.people["A"]["email"]).public_token
        record_event(
            s,
            world.clock,
            NormalizedEvent(
                provider="sendgrid",
                channel="email",
                provider_event_id="delivered-a",
                type=EventType.DELIVERED,
                reference=ref,
                provider_message_id=None,
                occurred_at=delivered_at,
            ),
        )
    pixel = world.own("A").open[len(BASE) :]
    world.at(5 * 60 + 4)  # four seconds after the delivery report: the receiving server
    world.get(pixel, IPHONE_MAIL)
    world.at(6 * 60)  # a minute later: A
    world.get(pixel, IPHONE_MAIL)

    rows = _rows(world.report())
    email, text = rows[("one", "email")], rows[("one", "sms")]
    assert (email.opens, email.machine_opens, email.left_out) == (
        1,
        1,
        [("seconds after sending", 1)],
    )
    assert (email.rate_base, email.delivered, email.open_rate, email.delivery_rate) == (
        "delivered",
        1,
        1.0,
        1 / 6,
    )
    assert text.rate_base == "sent"  # no delivery report on the text channel


def test_opens_from_apple_s_published_proxy_ranges_are_left_out(
    factory, clock, policy, course, tmp_path
):
    ranges = tmp_path / "egress-ip-ranges.csv"
    ranges.write_text("172.224.226.0/27,GB,GB-EN,London,\n2a02:26f7:b3c0:4000::/64,US,US-CA,,\n")
    w = World(factory, clock, policy, course, tmp_path, apple_proxy_ranges_file=ranges)
    relay = TestClient(w.app, follow_redirects=False, client=("172.224.226.7", 443))
    w.at(60)
    relay.get(w.own("A").open[len(BASE) :], headers={"User-Agent": IPHONE_MAIL})
    w.at(120)  # a click through Private Relay is a person browsing: it counts
    relay.get(w.link_to("A", PAGE_A), headers={"User-Agent": SAFARI})
    w.at(180)  # an open from any other address counts
    w.get(w.own("A").open[len(BASE) :], IPHONE_MAIL)
    email = _rows(w.report())[("one", "email")]
    assert (email.opens, email.machine_opens, email.clicks) == (1, 1, 1)
    assert email.left_out == [("Apple privacy proxy", 1)]


def test_links_fetched_at_once_from_many_threads_are_one_burst(world):
    """A scanner fetches every link of a message in parallel: each click is judged with the
    message locked, so every one of them sees the others, whatever order they commit in."""
    world.at(300)
    paths = [world.link_to("D", page) for page in (PAGE_A, PAGE_B, APP_PAGE)]
    paths.append(world.own("D").read_online[len(BASE) :])
    start = threading.Barrier(len(paths))

    def fetch(path):
        start.wait()
        return world.get(path).status_code

    with ThreadPoolExecutor(len(paths)) as pool:
        assert list(pool.map(fetch, paths)) == [302, 302, 302, 200]
    email = _rows(world.report())[("one", "email")]
    assert (email.clicks, email.clicks_total, email.machine_clicks) == (0, 0, 4)
    assert email.left_out == [("many links at once", 4)]


# ---------------------------------------------------------------- the redirect


def test_every_link_leads_to_exactly_the_page_the_lesson_named(world):
    world.at(60)
    for name in "AF":  # each person's own signed link, from the composer's shared rendering
        own = world.own(name).redirect
        for page in (PAGE_A, PAGE_B, APP_PAGE):
            path = world.link_to(name, page)
            assert (BASE + path).startswith(own + "/")
            got = world.get(path)
            assert got.status_code == 302 and got.headers["location"] == page
            assert got.headers["cache-control"] == "no-store"
            head = world.client.head(path, headers={"User-Agent": CHROME})
            assert head.status_code == 302 and head.headers["location"] == page
    # The message's own links and mailto: are not sent through the redirect.
    links = world.email_links("A")
    assert world.own("A").read_online in links and "mailto:care@lunara.example" in links
    own = world.own("A")
    others = [u for u in links if u.startswith("http") and u not in own.own()]
    assert others and all(u.startswith(own.redirect + "/") for u in others)
    got = world.get(world.text_link_to("A", TEXT_PAGE))
    assert got.status_code == 302 and got.headers["location"] == TEXT_PAGE
    # A query string on our link changes nothing: still the lesson's page.
    got = world.get(world.link_to("A", PAGE_A) + "?url=https://evil.example/")
    assert got.headers["location"] == PAGE_A
    with world.factory() as s:
        clicked = s.scalars(select(Event.payload).where(Event.type == EventType.CLICKED)).all()
    assert {p["url"] for p in clicked} == {PAGE_A, PAGE_B, APP_PAGE, TEXT_PAGE}
    assert {p["link"] for p in clicked} == {link_id(p) for p in (PAGE_A, PAGE_B, APP_PAGE)} | {
        link_id(TEXT_PAGE)
    }


def test_bad_links_get_the_invalid_page_never_a_5xx_or_a_redirect(world):
    client = TestClient(world.app, follow_redirects=False, raise_server_exceptions=False)
    good = world.link_to("A", PAGE_A)  # /l/<token>/<id>
    _, _, token, lid = good.split("/")
    public = token.rsplit(".", 1)[0]
    flipped = ("B" if lid[3] != "B" else "C").join((lid[:3], lid[4:]))
    cases = [
        f"/l/{Signer(b'someone-else').sign('l', public)}/{lid}",  # forged
        f"/l/{world.signer.sign('m', public)}/{lid}",  # signed for another purpose
        f"/l/{public}/{lid}",  # unsigned
        f"/l/{token}/{flipped}",  # tampered id
        f"/l/{token}/{link_id(STEP_TWO_PAGE)}",  # a page only another lesson links to
        f"/l/{token}/AAAAAAAAAA",  # an id of the right shape the lesson does not hold
        f"/l/{token}/{lid}x",
        f"/l/{token}/{'a' * 5000}",  # oversized id
        f"/l/{'a' * 5000}.{'b' * 12}/{lid}",  # oversized token
        f"/l/{quote('ä.ö')}/{lid}",  # not ASCII
        f"/l/{token}/{quote('https://evil.example/', safe='')}",  # a URL as the id
        f"/l/{token}/%2F%2Fevil.example",
        f"/l/{token}/{quote('ñ' * 10)}",
        f"/l/{token}/%00%00%00%00%00%00%00%00%00%00",
        f"/l/{token}/..",
        f"/l/{token}",  # no id
        "/l/",
        "/l",
        f"/l/{token}/{lid}/extra",
    ]
    invalid = words(None, "Lunara")["invalid"]
    for path in cases:
        for method in ("GET", "HEAD"):
            got = client.request(method, path, headers={"User-Agent": CHROME})
            assert got.status_code == 404, (method, path, got.status_code)
            assert "location" not in got.headers, path
            if method == "GET":
                assert invalid in got.text, path
    with world.factory() as s:
        assert s.scalar(select(func.count(Event.id))) == 0  # nothing recorded for any of them
    assert client.get(good).headers["location"] == PAGE_A  # the real one still works


def test_a_link_to_a_lesson_no_longer_deployed_is_not_a_5xx(world, course):
    definitions, _ = course
    (definitions / "resources.yaml").unlink()
    client = TestClient(world.app, follow_redirects=False, raise_server_exceptions=False)
    for path in (world.link_to("A", PAGE_A), world.own("A").read_online[len(BASE) :]):
        got = client.get(path)
        assert got.status_code == 404 and "location" not in got.headers


def test_test_sends_preview_and_lint_carry_the_redirect(world, course, tmp_path):
    definitions, templates = course
    outbox = LocalOutbox(tmp_path / "test-outbox")
    with world.factory() as s:
        results = send_test(
            s,
            world.registry,
            world.renderer,
            world.signer,
            BASE,
            outbox,
            outbox,
            SendTestRequest(campaign="resources", steps=["one"], locale="en", email="me@x.org"),
        )
    assert len(results) == 1
    (sent,) = (outbox.folder / "adhoc").glob("email-*.eml")
    links = links_in(sent)
    # Through the test preview redirect (web/previews.py), which records nothing.
    assert any(u.startswith(f"{BASE}/t/l/") and u.endswith(link_id(PAGE_A)) for u in links)
    assert PAGE_A not in links and PAGE_B not in links

    ctx = LintContext(templates, BASE, "Lunara", "1 Test Street, Springfield")
    findings = lint_campaign(world.registry.get("resources"), ctx)
    about_links = [f.message for f in findings if f.message.startswith("link ")]
    assert about_links == [f"link {PLAIN_PAGE} is not https: browsers warn readers"]


def test_apple_s_range_file_is_read_whatever_its_lines_hold(tmp_path):
    listed = tmp_path / "ranges.csv"
    listed.write_text(
        "# a comment\nprefix,country\n10.0.0.0/8,US\n10.1.0.0/16,US\nnot a range,XX\n"
        "11.0.0.0/24\n2001:db8::/32,US,US-CA,,\n\n"
    )
    ranges = AddressRanges.from_file(listed)
    inside = ("10.2.0.1", "10.1.3.4", "11.0.0.255", "2001:db8::5")
    outside = ("11.0.1.0", "9.255.255.255", "2001:db9::", "nonsense", "", None)
    assert all(a in ranges for a in inside) and not any(a in ranges for a in outside)
    with pytest.raises(SettingsError, match="APPLE_PROXY_RANGES_FILE"):
        load_settings(environment="test", apple_proxy_ranges_file=tmp_path / "missing.csv")
