"""The page templates of the web app (not marketer-editable: a plain, autoescaping
environment with strict variables), shared by the subscriber, sign-up and admin pages."""

import base64
import hashlib
import re
from pathlib import Path

import jinja2
from fastapi.responses import HTMLResponse

from campaigns.staff.roles import areas_for

TEMPLATES = Path(__file__).parent / "templates"
pages = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _script_hashes() -> str:
    """CSP hashes of the pages' own inline scripts (the sign-up form's time-zone default):
    those run, and nothing else does, not even a script injected into a page."""
    text = "".join(p.read_text(encoding="utf-8") for p in sorted(TEMPLATES.glob("*.html")))
    return " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
        for body in re.findall(r"<script>(.*?)</script>", text, re.S)
    )


NONE = "'none'"

# Pages a subscriber reaches by a personal link: never cached, indexed or referred on,
# never framed by another site (clickjacking an unsubscribe or a call request), and no
# script but the pages' own.
NO_STORE = {
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
    # Not "no-referrer": with it a browser posts our own forms with `Origin: null`, and
    # the sign-up's origin check (web/origin.py) would refuse them. "same-origin" still
    # keeps the link's token from every other site.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        f"default-src 'none'; script-src {_script_hashes() or NONE}; "
        "style-src 'unsafe-inline'; img-src 'self' https: data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


def page(request, name: str, locale: str | None, title_key: str, status: int = 200, **ctx):
    """A subscriber page in the person's language (web/i18n.py), never cached."""
    from web.i18n import words

    settings = request.app.state.settings
    brand = settings.brand_name
    t = words(locale, brand)
    ctx.setdefault("preview", False)  # a test message's page (web/previews.py): a banner
    html = pages.get_template(name).render(
        t=t,
        brand=brand,
        # A page may word its own title (the invalid-link page names the link it was).
        title=ctx.pop("title", None) or t[title_key],
        # Our own pages (web/pages.py) in this page's language; another site's as given.
        privacy_url=settings.privacy_url or f"{settings.privacy_link}?lang={t['lang']}",
        terms_url=settings.terms_url or f"{settings.terms_link}?lang={t['lang']}",
        **ctx,
    )
    return HTMLResponse(html, status_code=status, headers=NO_STORE)


def invalid_link(request, title_key: str, locale: str | None = None):
    """The 404 page of a link that is no link of ours, titled for the page it meant to
    open, in the person's language when the token tells whose it is, else the browser's.
    Titled as a broken link first: a page titled "Unsubscribe" that unsubscribes nobody
    misleads whoever reads the title alone (a tab, a screen reader)."""
    from web.i18n import accepted_lang, words

    lang = locale or accepted_lang(request.headers.get("accept-language"))
    t = words(lang, request.app.state.settings.brand_name)
    title = t["invalid_title"].format(page=t[title_key])
    return page(request, "notice.html", lang, title_key, 404, message=t["invalid"], title=title)


# Workspace pages hold names and phone numbers: never cached, indexed, framed or referred.
ADMIN_HEADERS = {
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}
# The workspace's pages by area (campaigns.staff.roles): a role is shown the ones it opens.
NAV = (
    ("dashboard", "/admin", "Overview"),
    ("campaigns", "/admin/sequences", "Sequences"),
    ("people", "/admin/people", "People"),
    ("contacts", "/admin/contact-requests", "Contact requests"),
    ("inbox", "/admin/inbox", "Inbox"),
    ("outbox", "/admin/outbox", "Outbox"),
    ("channels", "/admin/channels", "Channels"),
    ("staff", "/admin/staff", "Staff"),
    ("audit", "/admin/audit", "Audit log"),
)


def admin_page(template: str, staff, status_code: int = 200, /, **ctx) -> HTMLResponse:
    """A workspace page for `staff` (web.access.Staff, or None before sign-in): the nav
    of the areas its role opens, and `csrf`, the token every form echoes back."""
    can = frozenset(areas_for(staff.role)) if staff else frozenset()
    html = pages.get_template(template).render(
        staff=staff,
        csrf=staff.csrf if staff else "",
        can=can,
        nav=[(href, label) for area, href, label in NAV if area in can],
        **ctx,
    )
    return HTMLResponse(html, status_code=status_code, headers=ADMIN_HEADERS)
