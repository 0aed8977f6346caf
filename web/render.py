"""The page templates of the web app (not marketer-editable: a plain, autoescaping
environment with strict variables), shared by the subscriber, sign-up and admin pages."""

from pathlib import Path

import jinja2

pages = jinja2.Environment(loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
                           autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                           lstrip_blocks=True)

# Pages a subscriber reaches by a personal link: never cached, indexed or referred on.
NO_STORE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex", "Referrer-Policy": "no-referrer"}
