"""Provider modules, one per provider; `build_providers` picks them from settings."""

from __future__ import annotations

from workers.providers.outbox import LocalOutbox


def build_providers(settings):
    """(email provider, sms provider) for these settings."""
    outbox = LocalOutbox(settings.outbox_dir, delay=settings.outbox_send_delay,
                         sender=settings.email_from, brand=settings.brand_name)
    email = outbox
    sms = outbox
    return email, sms
