"""Provider modules: per provider, one for sending and one for its webhook.

    sending (outbound)            webhook (inbound)              route (web/webhooks.py)
    sendgrid.py  SendGridEmail    sendgrid_webhook.py            POST /webhooks/sendgrid/events
    twilio.py    TwilioSms        twilio_webhook.py              POST /webhooks/twilio/status
                                                                 POST /webhooks/twilio/inbound
    outbox.py    LocalOutbox      (none: files on disk)

`build_providers` picks the senders from settings: EMAIL_PROVIDER=outbox|sendgrid and
SMS_PROVIDER=outbox|twilio; settings.py has already refused a provider selected without
its credentials, naming the missing variable. Everything about a provider lives in its
two files; the domain's event recording (campaigns.tracking) names no provider.

Adding a provider (say Postmark for email, or Vonage for SMS) is two files, one line and
one route; nothing in campaigns/ changes:

1. `postmark.py`, the sending half: a class implementing the channel's interface in
   campaigns.delivery.providers (EmailProvider: `name`, `max_batch`,
   `send_emails(list[OutgoingEmail])`; SmsProvider with `send_sms` for Vonage), returning
   one SendResult per item, and optionally `lookup(message_id)` if the provider can say
   whether an unconfirmed message went out (campaigns.delivery.unconfirmed). Classify
   every failure at the edge into an Outcome (permanent, transient with retry_after,
   config, unknown when the request may have been acted on) in one `classify`, and draw
   that error tree in the module docstring, as sendgrid.py and twilio.py do. Put our
   opaque `OutgoingEmail.reference` in the provider's metadata (nothing else about the
   person: invariant 8) so the webhook can name the message. A `from_settings`
   classmethod reads its settings (add them, and their "must be set" check, to settings.py).
2. `postmark_webhook.py`, the inbound half, with no web framework in it (plain bytes and
   mappings in, so its tests need no HTTP):
     - the header names, and `verify(headers, body, ...) -> None` that raises
       webhook_base.NotConfigured (no secret configured), Rejected (missing or bad
       signature, stale timestamp) or nothing;
     - `parse(body, now) -> list[NormalizedEvent]` (campaigns.tracking.events), raising
       BadPayload for a body of the wrong shape: a dict from the provider's event names
       onto campaigns.states.EventType (unknown names logged and skipped), `provider` and
       `channel` set, a stable `provider_event_id` (redeliveries repeat it), our reference
       read back, and the provider's own facts as the neutral flags `address_at_fault`
       (a drop about the address) and `recipient_opted_out` (a STOP seen by the provider);
     - for SMS, `parse_inbound(...) -> InboundText` (campaigns.tracking.inbound).
3. One line in `build_providers` below:
       if settings.email_provider == "postmark":
           email = PostmarkEmail.from_settings(settings)
   (and "postmark" added to Settings.email_provider's Literal).
4. A route in web/webhooks.py: cap the body, call `postmark_webhook.verify` and `parse`
   inside `except WebhookError as exc: raise _refused("postmark", exc)`, then `_record`.
   Tests: tests/test_postmark_webhook.py for verify/parse without HTTP, a sending test
   against a fake server in tests/fakes (the official SDK, never a mock of our code),
   and the route's status codes in tests/test_webhooks.py.
"""

from __future__ import annotations

import re

from campaigns.redact import mask
from workers.providers.outbox import LocalOutbox

_ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+|\+\d{7,15}")


def scrub(text: str) -> str:
    """Provider error text with any address or number in it masked: it ends up in logs,
    the message row and the channel-pause reason (invariant 8)."""
    return _ADDRESS.sub(lambda m: mask(m[0]), text)


def build_providers(settings):
    """(email provider, sms provider) for these settings."""
    outbox = LocalOutbox(
        settings.outbox_dir,
        delay=settings.outbox_send_delay,
        sender=settings.email_from,
        brand=settings.brand_name,
    )
    email = sms = outbox
    if settings.email_provider == "sendgrid":
        from workers.providers.sendgrid import SendGridEmail

        email = SendGridEmail.from_settings(settings)
    if settings.sms_provider == "twilio":
        from workers.providers.twilio import TwilioSms

        sms = TwilioSms.from_settings(settings)
    return email, sms
