"""One rendering shared by many recipients, for providers that send a batch in one call.

SendGrid takes up to 1000 personalizations in one request but one body per request; what
differs per recipient must travel as substitutions. So a step is rendered once with
placeholder values (name and links), and each recipient's substitutions fill them in.
Because a marketer's template may transform a value (`first_name|upper`), every
recipient's real rendering is compared with the shared one after substitution: only an
exact match joins the batch; anything else is sent on its own, never wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.content.rendering import RenderedEmail
from campaigns.links import Links

PLACEHOLDER_NAME = "-drip_first_name-"
PLACEHOLDER_LINKS = Links(
    read_online="-drip_read_online-",
    contact="-drip_contact-",
    preferences="-drip_preferences-",
    unsubscribe="-drip_unsubscribe-",
    open="-drip_open-",
    redirect="-drip_redirect-",
    # Enough for any scale: a question's links are never filled in (each is signed for
    # its value), so a step that asks is rendered in full for every recipient.
    answers=tuple(f"-drip_answer_{v}-" for v in range(11)),
)


@dataclass(frozen=True)
class SharedEmail:
    key: str  # campaign/version/step/locale/has-name: recipients that may share a body
    content: RenderedEmail


def substitutions(first_name: str | None, links: Links) -> dict[str, str]:
    subs = {
        getattr(PLACEHOLDER_LINKS, f): getattr(links, f)
        for f in Links.__dataclass_fields__
        if f != "answers"
    }
    if first_name:
        subs[PLACEHOLDER_NAME] = first_name
    return subs


def fill(text: str, subs: dict[str, str]) -> str:
    for placeholder, value in subs.items():
        text = text.replace(placeholder, value)
    return text
