"""Provider modules, one per provider; `build_providers` picks them from settings.

EMAIL_PROVIDER=outbox|sendgrid and SMS_PROVIDER=outbox|twilio; settings.py has already
refused a provider selected without its credentials, naming the missing variable.
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
    outbox = LocalOutbox(settings.outbox_dir, delay=settings.outbox_send_delay,
                         sender=settings.email_from, brand=settings.brand_name)
    email = sms = outbox
    if settings.email_provider == "sendgrid":
        from workers.providers.sendgrid import SendGridEmail

        email = SendGridEmail.from_settings(settings)
    if settings.sms_provider == "twilio":
        from workers.providers.twilio import TwilioSms

        sms = TwilioSms.from_settings(settings)
    return email, sms
