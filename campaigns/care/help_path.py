"""Where a patient turns for help, worded for one person: the care team's phone, hours
and call-back promise, and the emergency number of the country they are in."""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.audience.emergency import country_of, emergency_number
from campaigns.content.rendering import Sender
from campaigns.models import Subscriber


@dataclass(frozen=True)
class HelpPath:
    phone: str
    phone_uri: str
    hours: str
    reply_within: str
    emergency_number: str


def help_path(sender: Sender, subscriber: Subscriber | None, locale: str) -> HelpPath:
    care = sender.care.for_locale(locale)
    country = country_of(subscriber) if subscriber is not None else None
    return HelpPath(
        phone=care["phone"],
        phone_uri=care["phone_uri"],
        hours=care["hours"],
        reply_within=care["reply_within"],
        emergency_number=emergency_number(country, sender.default_country),
    )
