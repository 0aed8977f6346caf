"""The page templates of the web app (not marketer-editable: a plain, autoescaping
environment with strict variables), shared by the subscriber, sign-up and admin pages."""

from pathlib import Path

import jinja2

pages = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

# Pages a subscriber reaches by a personal link: never cached, indexed or referred on.
NO_STORE = {
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
    "Referrer-Policy": "no-referrer",
}


def page(request, name: str, locale: str | None, title_key: str, status: int = 200, **ctx):
    """A subscriber page in the person's language (web/i18n.py), never cached."""
    from fastapi.responses import HTMLResponse

    from web.i18n import words

    brand = request.app.state.settings.brand_name
    t = words(locale, brand)
    html = pages.get_template(name).render(t=t, brand=brand, title=t[title_key], **ctx)
    return HTMLResponse(html, status_code=status, headers=NO_STORE)
