"""Test sends: what a subscriber would get, marked [TEST], never to a suppressed address."""

import pytest

from campaigns.audience.subscribers import InvalidSubscriber
from campaigns.audience.suppression import suppress
from campaigns.db import transaction
from campaigns.delivery.testsend import SendTestRequest, send_test


def run(send_ctx, factory, request, force=False):
    with factory() as s:
        return send_test(
            s,
            send_ctx.registry,
            send_ctx.renderer,
            send_ctx.signer,
            send_ctx.base_url,
            send_ctx.email_provider,
            send_ctx.sms_provider,
            request,
            force,
        )


def test_every_step_goes_to_the_marketer_marked_test(send_ctx, factory, outbox):
    results = run(
        send_ctx,
        factory,
        SendTestRequest("tiny", [], "en", "me@example.com", "+12025550111", "Sam"),
    )
    assert len(results) == 4  # hello by email and text, second by email, third by text
    emls = sorted((outbox.folder / "adhoc").glob("email-*.eml"))
    assert len(emls) == 2 and all("Subject: [TEST] " in p.read_text() for p in emls)
    assert not (outbox.folder / "email").exists()  # no subscriber message was created


def test_suppressed_address_is_refused_unless_forced(send_ctx, factory, clock, outbox):
    with transaction(factory) as s:
        suppress(s, clock, "email", "me@example.com", "complaint", "sendgrid")
    with pytest.raises(InvalidSubscriber, match="suppressed \\(complaint\\)"):
        run(send_ctx, factory, SendTestRequest("tiny", ["hello"], "en", "me@example.com"))
    assert run(
        send_ctx, factory, SendTestRequest("tiny", ["hello"], "en", "me@example.com"), force=True
    )


@pytest.mark.parametrize(
    "request_,match",
    [
        (SendTestRequest("tiny", ["nope"], "en", "me@example.com"), "step: nope"),
        (SendTestRequest("tiny", [], "en", None, "12"), "phone"),
        (SendTestRequest("tiny", [], "en"), "give at least one address"),
    ],
)
def test_bad_requests_say_what_is_wrong(send_ctx, factory, request_, match):
    with pytest.raises(InvalidSubscriber, match=match):
        run(send_ctx, factory, request_)
