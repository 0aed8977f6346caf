"""What the call-request page offers a person, and what their answer means.

Only ways we can reach them are offered: a call or a text to the phone we hold, an email
to the address we hold. Someone we hold no phone for may still ask for a call by typing
a number; it is read as the sign-up reads one (E.164), and kept on the request as the
number to call back, for the care team only: a number typed into a form never becomes the
person's phone, nor is it texted (invariant 11). Every refusal names the field and the
words that explain it (web/i18n.py), so the page can say it in the person's language.
"""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.audience.emergency import country_of
from campaigns.audience.subscribers import InvalidSubscriber, normalize_phone
from campaigns.models import Subscriber
from campaigns.text import UncleanText, clean_text

# The longest each field is read (the form's own maxlength); more is cut, never a 5xx.
LIMITS = {"preferred_channel": 10, "phone": 40, "preferred_time": 100, "note": 2000}


class Refused(ValueError):
    """An answer the page cannot take: `error` is (field, words key)."""

    def __init__(self, caller: Caller, field: str, key: str):
        super().__init__(f"{field}: {key}")
        self.caller = caller
        self.error = (field, key)


def form_values(form) -> dict[str, str]:
    return {k: str(form.get(k) or "")[:n] for k, n in LIMITS.items()}


@dataclass(frozen=True)
class Caller:
    locale: str | None
    country: str | None
    has_email: bool
    has_phone: bool

    @classmethod
    def of(cls, subscriber: Subscriber) -> Caller:
        return cls(
            subscriber.locale,
            country_of(subscriber),
            bool(subscriber.email),
            bool(subscriber.phone),
        )

    @property
    def offered(self) -> tuple[str, ...]:
        """The first is chosen when the page opens: a call when we have their phone."""
        if self.has_phone:
            return ("phone", "sms", "email") if self.has_email else ("phone", "sms")
        return ("email", "phone")

    def choice(
        self, values: dict[str, str], default_country: str
    ) -> tuple[str, str | None, str | None]:
        """(the channel, the note to keep, a number given to call back), or Refused."""
        channel = values.get("preferred_channel") or self.offered[0]
        if channel not in self.offered:
            raise Refused(self, "preferred_channel", "contact_err_channel")
        for field in ("preferred_time", "note"):
            try:
                clean_text(values.get(field, ""), field, multiline=field == "note")
            except UncleanText:
                raise Refused(self, field, "contact_err_text") from None
        note = values.get("note", "").strip() or None
        raw = values.get("phone", "").strip()
        if self.has_phone or (channel == "email" and not raw):
            return channel, note, None
        if not raw:
            raise Refused(self, "phone", "contact_err_phone_missing")
        region = self.country if self.country and len(self.country) == 2 else default_country
        try:
            number = normalize_phone(raw, region)
        except InvalidSubscriber:
            raise Refused(self, "phone", "contact_err_phone") from None
        return channel, note, number
