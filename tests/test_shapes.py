"""Shapes (campaigns.content.shapes): a lesson filled in per person is exactly the full
render, for the shipped lessons and for templates written to defeat it (where it must fall
back to the full render)."""

import gc
import os
import shutil
import threading
import time
from dataclasses import replace

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.content.rendering import Recipient, Renderer, RenderError, Sender
from campaigns.content.shapes import Shapes
from campaigns.links import Signer, links_for
from campaigns.sequences.registry import Registry
from campaigns.tracking.portal import online_links
from campaigns.tracking.redirects import targets_in
from settings import ROOT

SENDER = Sender("Lunara", "Lunara Care, 100 Main Street, Springfield, IL 62701, USA")
SIGNER = Signer(b"s" * 32)
BASE = "https://care.example.org"
# Names that break naive filling: markup, quotes, URLs, whitespace, emoji, sentinel-like.
NAMES = [
    None,
    "",
    "Bob",
    "Ana María",
    "O'Brien",
    'Jo "JJ" Smith',
    "Tom & Jerry",
    "<b>Eve</b>",
    "https://evil.example/x",
    "see http://a.b",
    "Zoë  Two",
    " Lead",
    "Trail ",
    "Tab\tName",
    "Line\nBreak",
    "nb\u00a0sp",
    "\u3000wide",
    "👩‍⚕️ Dr",
    "ttps://x.org",
    "http:",
    "a" * 300,
    "qqqqqqqqqqqq",
]
COUNTRIES = [None, "US", "GB", "ES", "IN", "ZZ"]


def _outcome(call):
    try:
        return call()
    except RenderError as exc:
        return ("RenderError", str(exc))


def assert_exact(shapes, renderer, campaign, step, recipient, links):
    full = _outcome(lambda: renderer.email(campaign, step, recipient, links).html)
    assert _outcome(lambda: shapes.email_html(campaign, step, recipient, links)) == full
    for texts in (False, True):
        want = targets_in(renderer, campaign, step, recipient, links, texts=texts)
        assert shapes.targets(campaign, step, recipient, links, texts=texts) == want


@pytest.fixture(scope="module")
def renderer():
    return Renderer(ROOT / "templates", SENDER)


@pytest.fixture(scope="module")
def shipped():
    """(campaign, step as each variant sends it, locale) of every shipped lesson."""
    registry = Registry(ROOT / "campaigns" / "definitions", ROOT / "templates")
    return [
        (campaign, version, locale)
        for campaign in registry.campaigns().values()
        for step in campaign.steps
        for version in step.versions
        for locale in campaign.locales
    ]


def _links(step, token, online):
    links = links_for(BASE, SIGNER, token, step.answer_values)
    return online_links(links) if online else links


def test_every_shipped_lesson_is_exact_and_shaped(renderer, shipped):
    shapes = Shapes(renderer)
    for n, (campaign, step, locale) in enumerate(shipped):
        for online in (False, True):
            for i, name in enumerate(NAMES):
                recipient = Recipient(name, locale, COUNTRIES[i % len(COUNTRIES)])
                links = _links(step, f"tok{n}x{i}", online)
                assert_exact(shapes, renderer, campaign, step, recipient, links)
            # The fast path is what serves an ordinary name.
            links = _links(step, f"plain{n}", online)
            for name in ("Bob", "Ana María", "", None):
                assert shapes.shapeable(
                    campaign, step, Recipient(name, locale), links, texts=True
                ), (campaign.key, step.key, locale, online, name)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    name=st.one_of(
        st.none(),
        st.text(max_size=40),
        # Names that fit a shape, so the fill (not only the fallback) meets many of them.
        st.text(st.characters(exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), max_size=20),
        st.from_regex(r"[A-Za-zÀ-ÿ'&<>\".:/ -]{1,24}", fullmatch=True),
    ),
    token=st.text(alphabet=st.characters(codec="ascii", categories=["L", "N"]), max_size=24),
    online=st.booleans(),
    country=st.sampled_from(COUNTRIES),
    text_only=st.booleans(),
)
def test_shipped_lessons_any_name_any_token(
    renderer, shipped, data, name, token, online, country, text_only
):
    campaign, step, locale = data.draw(st.sampled_from(shipped))
    shapes = SHARED.setdefault(id(renderer), Shapes(renderer))
    recipient = Recipient(name, locale, country, text_only)
    assert_exact(shapes, renderer, campaign, step, recipient, _links(step, token or "t", online))


SHARED: dict[int, Shapes] = {}  # one cache across examples, as in a running process


# ---------------------------------------------------------------- adversarial templates
STEP = {
    "key": "lesson",
    "delay": "0m",
    "channels": ["email"],
    "fallback": "sms",
    "template": "lesson",
    "subject": "Hello {{ first_name or 'there' }}",
    "preheader": "A lesson",
}


@pytest.fixture
def folders(tmp_path):
    templates = tmp_path / "templates"
    for shared in ("_layout", "_partials"):
        shutil.copytree(ROOT / "templates" / shared, templates / shared)
    (templates / "adv" / "en").mkdir(parents=True)
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    return definitions, templates


def write_lesson(folders, html, txt=None, sms=None, subject=None, partial=None):
    definitions, templates = folders
    at = templates / "adv" / "en"
    (at / "lesson.html").write_text(html)
    (at / "lesson.txt").write_text(txt if txt is not None else "Hi {{ first_name or 'x' }}")
    (at / "lesson.sms.txt").write_text(sms if sms is not None else "Hi {{ first_name }}")
    if partial is not None:
        (templates / "_partials" / "en" / "adv.html").write_text(partial)
    step = {**STEP, "subject": subject or STEP["subject"]}
    doc = {"key": "adv", "version": 1, "name": "Adversarial", "locales": ["en"], "steps": [step]}
    path = definitions / "adv.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    later = time.time_ns() + 10**9  # the registry and Jinja notice edits by modification time
    for touched in (path, at / "lesson.html", at / "lesson.txt", at / "lesson.sms.txt"):
        os.utime(touched, ns=(later, later))
    return Registry(definitions, templates).get("adv")


def case(name, html, txt=None, sms=None, partial=None, subject=None):
    return pytest.param(html, txt, sms, partial, subject, id=name)


TRICKY = [
    case("upper", "<p>Hi {{ first_name|upper }}</p>"),
    case("truncate", "<p>Hi {{ first_name|truncate(6, True, '') }}</p>"),
    case("length", "<p>{{ first_name|length if first_name else 0 }}</p>"),
    case("equals", '<p>{% if first_name == "Bob" %}Hi Bob!{% else %}Hi{% endif %}</p>'),
    case("in", '<p>{% if "o" in (first_name or "") %}o{% endif %}</p>'),
    case("urlencode", '<a href="https://x.example/?u={{ links.contact|urlencode }}">x</a>'),
    case("tracked name", '<a href="https://x.example/?n={{ first_name }}">x</a>'),
    case("tracked token", '<a href="https://x.example/?c={{ links.contact }}">x</a>'),
    case(
        "include", '{% include "_partials/en/adv.html" %}', partial="<p>{{ first_name|title }}</p>"
    ),
    case("macro", "{% macro g() %}{{ first_name }}{% endmacro %}<p>{{ g()|upper }}</p>"),
    case("set", '{% set n = first_name %}<p>{{ "yes" if n == "Bob" else "no" }}</p>'),
    case("filter block", "{% filter upper %}<p>{{ first_name }}</p>{% endfilter %}"),
    case("style", '<style>.{{ first_name }} { color: red }</style><p class="Bob">x</p>'),
    case("attribute", '<p title="{{ first_name }}">x</p>'),
    case("text joins URL", "<p>x</p>", txt="see http{{ first_name }}"),
    case("sms joins URL", "<p>x</p>", sms="go to https://x.example/{{ first_name }}"),
    case(
        "name twice",
        "<p>{{ first_name }}{{ first_name }}</p>",
        txt="{{ first_name }}{{ first_name }}",
    ),
    case("subject filter", "<p>x</p>", subject="Hi {{ first_name|upper }}"),
    case("link compared", '<p>{% if links.contact == "x" %}x{% endif %}</p>'),
    case("link in style", '<p style="background: url({{ links.open }})">x</p>'),
    case("extends", '{% extends "_partials/en/adv.html" %}', partial="<p>{{ first_name|e }}</p>"),
    case("error", "<p>{{ first_name + 1 }}</p>"),
    case("undefined", "<p>{{ nothing_here }}</p>"),
    case(
        "dynamic include",
        '{% include "_partials/en/" ~ "adv.html" %}',
        partial="<p>{{ first_name }}</p>",
    ),
]
ADVERSARIAL_NAMES = [
    *("Bob", "bob", "Bob Smith", "Ana María", "Bo", "Robert", "o", "", None),
    *("ttps://x.org", "p://x", "s://x.org", "http", "x:", "/y"),
]


@pytest.mark.parametrize(("html", "txt", "sms", "partial", "subject"), TRICKY)
def test_adversarial_templates_stay_exact(folders, html, txt, sms, partial, subject):
    campaign = write_lesson(folders, html, txt, sms, subject, partial)
    renderer = Renderer(folders[1], SENDER)
    shapes = Shapes(renderer)
    step = campaign.steps[0]
    if "nothing_here" not in html:  # each of these needs the full render
        links = links_for(BASE, SIGNER, "t", ())
        assert not shapes.shapeable(campaign, step, Recipient("Bob", "en"), links, texts=True)
    for i, name in enumerate(ADVERSARIAL_NAMES):
        links = links_for(BASE, SIGNER, f"t{i}", ())
        for variant in (links, online_links(links)):
            assert_exact(shapes, renderer, campaign, step, Recipient(name, "en"), variant)


def test_plain_uses_are_shaped_and_tracked_links_kept(folders):
    partial = "<p>Dear {{ first_name or 'reader' }}.</p>"
    html = (
        '{% include "_partials/en/adv.html" %}<p>Read <a href="https://guide.example/hip">the'
        " guide</a>{% if first_name %}, {{ first_name }}{% endif %}.</p>"
    )
    txt = "Hi {{ first_name }}, read https://guide.example/back. Call: {{ links.contact }}"
    campaign = write_lesson(
        folders, html, txt, "Hi {{ first_name }} https://guide.example/t", partial=partial
    )
    renderer = Renderer(folders[1], SENDER)
    shapes = Shapes(renderer)
    step = campaign.steps[0]
    links = links_for(BASE, SIGNER, "abc", ())
    recipient = Recipient("Bob", "en")
    assert shapes.shapeable(campaign, step, recipient, links, texts=True)
    assert_exact(shapes, renderer, campaign, step, recipient, links)
    assert len(shapes.targets(campaign, step, recipient, links, texts=True)) == 3


def test_a_static_link_equal_to_the_messages_own_is_not_tracked(folders):
    links = links_for(BASE, SIGNER, "mine", ())
    html = f'<a href="{links.contact}">call</a> <a href="{links.redirect}/zzz">x</a>'
    campaign = write_lesson(folders, html)
    renderer = Renderer(folders[1], SENDER)
    shapes = Shapes(renderer)
    assert_exact(shapes, renderer, campaign, campaign.steps[0], Recipient("Bob", "en"), links)
    other = links_for(BASE, SIGNER, "other", ())
    assert_exact(shapes, renderer, campaign, campaign.steps[0], Recipient("Bob", "en"), other)


# ---------------------------------------------------------------- revisions, bounds, time
def test_a_new_revision_never_gets_an_old_shape(folders):
    renderer = Renderer(folders[1], SENDER)
    shapes = Shapes(renderer)
    links = links_for(BASE, SIGNER, "rev", ())
    for n in range(5):
        campaign = write_lesson(folders, f"<p>Revision {n}, {{{{ first_name }}}}</p>")
        step = campaign.steps[0]
        html = shapes.email_html(campaign, step, Recipient("Bob", "en"), links)
        assert f"Revision {n}, Bob" in html
        # A new object for the same revision's text, made after the old one is freed (its
        # id may be reused): still its own rendering.
        renamed = replace(campaign, names={"en": f"Course {n}"})
        del campaign
        gc.collect()
        got = shapes.email_html(renamed, step, Recipient("Bob", "en"), links)
        assert got == renderer.email(renamed, step, Recipient("Bob", "en"), links).html
        assert f"Course {n}" in got


def test_the_cache_stays_within_its_bounds(renderer, shipped):
    shapes = Shapes(renderer, max_entries=5)
    for n, (campaign, step, locale) in enumerate(shipped[:12]):
        for country in ("US", "GB", "IN"):
            recipient = Recipient("Bob", locale, country)
            assert_exact(shapes, renderer, campaign, step, recipient, _links(step, f"b{n}", False))
            assert len(shapes) <= 5


def test_a_template_edited_on_disk_shows_within_the_ttl(folders):
    campaign = write_lesson(folders, "<p>First {{ first_name }}</p>")
    renderer = Renderer(folders[1], SENDER)
    shapes = Shapes(renderer, ttl=0.2)
    step, links, bob = campaign.steps[0], links_for(BASE, SIGNER, "t", ()), Recipient("Bob", "en")
    assert "First Bob" in shapes.email_html(campaign, step, bob, links)
    path = folders[1] / "adv" / "en" / "lesson.html"
    path.write_text("<p>Second {{ first_name }}</p>")
    later = time.time_ns() + 2 * 10**9
    os.utime(path, ns=(later, later))
    time.sleep(0.3)
    assert "Second Bob" in shapes.email_html(campaign, step, bob, links)


def test_threads_share_one_cache(renderer, shipped):
    shapes = Shapes(renderer)
    failures = []

    def work(k):
        for n, (campaign, step, locale) in enumerate(shipped[:8]):
            recipient = Recipient(f"Name{k}", locale)
            links = _links(step, f"th{k}x{n}", k % 2 == 0)
            want = renderer.email(campaign, step, recipient, links).html
            if shapes.email_html(campaign, step, recipient, links) != want:
                failures.append((k, n))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_a_name_that_is_no_text_never_makes_a_shape(folders):
    campaign = write_lesson(folders, "<p>[{{ first_name }}]</p>")
    renderer = Renderer(folders[1], SENDER)
    shapes = Shapes(renderer)
    links = links_for(BASE, SIGNER, "t", ())
    for name in (0, "", 0, None, False, ""):
        assert_exact(shapes, renderer, campaign, campaign.steps[0], Recipient(name, "en"), links)
