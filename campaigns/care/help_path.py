"""Where a patient turns for help, worded for one person: the care team's phone, hours
and call-back promise, and the emergency number of the country they are in."""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.audience.emergency import emergency_number
from campaigns.content.rendering import Sender


@dataclass(frozen=True)
class HelpPath:
    phone: str
    phone_uri: str
    hours: str
    reply_within: str
    emergency_number: str


def help_path(sender: Sender, country: str | None, locale: str) -> HelpPath:
    """`country`: campaigns.audience.emergency.country_of(the person), or None."""
    care = sender.care.for_locale(locale)
    return HelpPath(
        phone=care["phone"],
        phone_uri=care["phone_uri"],
        hours=care["hours"],
        reply_within=care["reply_within"],
        emergency_number=emergency_number(country, sender.default_country),
    )
