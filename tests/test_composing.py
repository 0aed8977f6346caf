"""Render once, fill in per recipient: the filled copy must equal a full render exactly,
and anything that is not provably plain falls back to rendering in full."""

import shutil

import pytest

from campaigns.content.rendering import Recipient, Renderer, Sender
from campaigns.delivery.composing import Composer
from campaigns.links import Signer, links_for
from campaigns.models import Message, Subscriber
from campaigns.sequences.registry import Registry
from settings import ROOT
from tests.conftest import FIXTURES

SIGNER = Signer(b"compose-test-secret")
BASE = "https://care.example"


class CountingRenderer(Renderer):
    """The real renderer, counting full renders (instrumentation, not a stand-in)."""

    calls = 0

    def email(self, *args, **kwargs):
        CountingRenderer.calls += 1
        return super().email(*args, **kwargs)


def message(i, step="back_pain", campaign="hip_and_back"):
    return Message(id=i, campaign_key=campaign, step_key=step, public_token=f"token{i:011d}")


def person(i, name, locale="en"):
    return Subscriber(
        id=i, first_name=name, locale=locale, email=f"p{i}@example.com", phone="+12025550143"
    )


@pytest.fixture
def shipped():
    registry = Registry(ROOT / "campaigns" / "definitions", ROOT / "templates")
    CountingRenderer.calls = 0
    return registry, CountingRenderer(ROOT / "templates", Sender("Lunara", "1 Main St"))


NAMES = ["Ana", "Jean-Luc", "Lucía", "Ana María", None, "O'Brien", "<b>Bo</b>", "Zoë", "李"]


@pytest.mark.parametrize("locale", ["en", "es"])
@pytest.mark.parametrize("key", ["back_pain", "welcome"])  # welcome includes a partial
def test_filled_copies_equal_full_renders(shipped, locale, key):
    registry, renderer = shipped
    composer = Composer(renderer, registry, BASE, SIGNER)
    campaign = registry.get("hip_and_back")
    step = campaign.step(key)
    for i, name in enumerate(NAMES, start=1):
        item = composer.email(message(i, key), person(i, name, locale))
        links = links_for(BASE, SIGNER, f"token{i:011d}")
        full = Renderer(ROOT / "templates", Sender("Lunara", "1 Main St")).email(
            campaign, step, Recipient(name, locale), links
        )
        assert item.content == full, name
        sms = composer.sms(message(i, key), person(i, name, locale), show_stop_help=i % 2 == 0)
        assert sms.body == Renderer(ROOT / "templates", Sender("Lunara", "1 Main St")).sms(
            campaign, step, Recipient(name, locale), links, i % 2 == 0
        )
    assert (
        "&lt;b&gt;Bo&lt;/b&gt;"
        in composer.email(message(99, key), person(99, "<b>Bo</b>", locale)).content.html
    )


@pytest.mark.parametrize("key", ["back_pain", "welcome"])  # welcome includes a partial
def test_plain_templates_render_once_per_group(shipped, key):
    registry, renderer = shipped
    composer = Composer(renderer, registry, BASE, SIGNER)
    for i in range(1, 51):
        composer.email(message(i, key), person(i, f"Name{i}"))
    # one shared render, one full render of the first recipient to verify it
    assert CountingRenderer.calls == 2


def test_a_template_that_transforms_the_name_is_rendered_for_everyone(tmp_path):
    shutil.copytree(FIXTURES / "templates", tmp_path / "templates")
    (tmp_path / "templates/tiny/en/hello.html").write_text(
        "<p>Hi {{ (first_name or 'you')|upper }}</p>"
    )
    registry = Registry(FIXTURES / "definitions", tmp_path / "templates")
    CountingRenderer.calls = 0
    composer = Composer(
        CountingRenderer(tmp_path / "templates", Sender("Lunara", "x")), registry, BASE, SIGNER
    )
    items = [
        composer.email(message(i, "hello", "tiny"), person(i, n))
        for i, n in enumerate(["Ana", "Bo"], 1)
    ]
    assert "Hi ANA" in items[0].content.html and "Hi BO" in items[1].content.html
    assert CountingRenderer.calls == 3  # shared + one full render each
    assert all(item.shared is None for item in items)  # and never batched on a shared body
