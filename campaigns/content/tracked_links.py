"""Links to other pages go through our own signed redirect, so a click on any link of a
lesson is counted for that link, and the reader still lands on exactly the page the
lesson names.

    rewrite_html(html, links) / rewrite_text(text, links)
        -> (the same text with every other http(s) link as `{links.redirect}/{link id}`,
            {link id: the URL it stands for})

A link id is a hash of the URL (link_id), not a place in the message: a link added above
another in a later edit does not shift it, and an id can only ever stand for its own URL.
The message's own links (read online, request a call, preferences, unsubscribe, the open
pixel) are ours already and stay as they are; so do mailto: and tel: links.

The redirect (`/l/<signed message token>/<link id>`, campaigns.tracking.redirects) renders
the message again and goes only to a URL whose id it finds there: never anywhere a
request names. Called by the renderer on every email and text it renders, so what is sent,
previewed, test-sent, linted and read online all carry the same links.
"""

from __future__ import annotations

import base64
import hashlib
import html as htmllib
import re

from campaigns.links import Links

LINK_ID_LEN = 10  # 60 bits of SHA-256: ids of one message never collide in practice
LINK_ID = re.compile(rf"^[A-Za-z0-9_-]{{{LINK_ID_LEN}}}$")

# After CSS inlining every attribute is double-quoted; single quotes are accepted anyway.
_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)("([^"]*)"|'([^']*)')""", re.IGNORECASE)
_TEXT_URL = re.compile(r"""https?://[^\s<>"'\[\]()]+""", re.IGNORECASE)
# Sentence punctuation after a URL in running text is not part of it.
_TRAILING = ".,;:!?"


def link_id(url: str) -> str:
    digest = hashlib.sha256(url.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:LINK_ID_LEN]


def _tracked(url: str, links: Links) -> bool:
    return (
        bool(links.redirect)
        and url.lower().startswith(("http://", "https://"))
        and url not in links.own()
        and not url.startswith(links.redirect)
    )


def rewrite_html(html: str, links: Links) -> tuple[str, dict[str, str]]:
    targets: dict[str, str] = {}

    def swap(match: re.Match) -> str:
        raw = match.group(3) if match.group(3) is not None else match.group(4)
        url = htmllib.unescape(raw).strip()
        if not _tracked(url, links):
            return match.group(0)
        lid = link_id(url)
        targets[lid] = url
        return f'{match.group(1)}"{htmllib.escape(f"{links.redirect}/{lid}")}"'

    return _HREF.sub(swap, html), targets


def rewrite_text(text: str, links: Links) -> tuple[str, dict[str, str]]:
    targets: dict[str, str] = {}

    def swap(match: re.Match) -> str:
        found = match.group(0)
        url = found.rstrip(_TRAILING)
        tail = found[len(url) :]
        if not _tracked(url, links):
            return found
        lid = link_id(url)
        targets[lid] = url
        return f"{links.redirect}/{lid}{tail}"

    return _TEXT_URL.sub(swap, text), targets
