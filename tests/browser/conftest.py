"""A real browser on the real app: Chromium driven by Playwright, the app served by uvicorn
on a free port over the run's PostgreSQL database, axe-core's checks on every page.

Chromium: $CHROMIUM if set, else Debian's /usr/bin/chromium (.ci/run installs it), else
the one `playwright install chromium` downloads. When none launches the tests FAIL: a
machine that cannot run them must not report them as passed.

axe-core comes from PyPI's axe-playwright-python, which ships axe.min.js (4.12 in 0.1.8,
released 2026, kept in step with axe-core's releases) and injects it with Playwright:
one package manager and one lock-free `pip install -e '.[test]'` for the whole suite,
rather than npm, a package.json and a lock file for one JavaScript file. axe-core-python,
the other PyPI copy, had one release and carries an older axe.

One browser for this package (package scope, not session: Playwright's sync API runs an
event loop in the main thread while it is open, and tests after these call asyncio.run);
one context per (viewport, audience), made once; each test opens a page in it. Every
page leaves a full-page screenshot in build/screenshots/.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from campaigns.clock import FixedClock
from campaigns.db import make_engine, make_session_factory
from settings import load_settings
from tests.browser import people
from tests.conftest import T0
from web.app import create_app

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "screenshots"
DEBIAN_CHROMIUM = "/usr/bin/chromium"
STAFF = ("admin", "browser-test-admin-password")
# axe's impacts that fail a page; minor and moderate ones are listed in the report only.
FAILING_IMPACTS = ("serious", "critical")
# Every axe violation seen, by screenshot name, for build/screenshots/axe.txt.
FOUND: dict[str, list[str]] = {}
TAKEN: list[Path] = []  # this session's screenshots


def chromium_path() -> str | None:
    """The Chromium to launch; None: Playwright's own download, if there is one."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return DEBIAN_CHROMIUM if Path(DEBIAN_CHROMIUM).exists() else shutil.which("chromium")


@pytest.fixture(scope="package")
def browser():
    with sync_playwright() as p:
        path = chromium_path()
        try:
            chromium = p.chromium.launch(executable_path=path)
        except PlaywrightError as exc:
            pytest.fail(
                f"no Chromium could be launched ({path or 'Playwright download'}): "
                f"install Debian's (apt-get install chromium), set CHROMIUM=/path, or run "
                f"`playwright install chromium`. {str(exc).splitlines()[0]}"
            )
        yield chromium
        chromium.close()


@dataclass
class Live:
    base: str
    app: object
    clock: FixedClock
    db_url: str
    kept: people.World | None = None  # the people the last test left untouched


@pytest.fixture(scope="package")
def live(pg_url, tmp_path_factory):
    """The app (web.app.create_app) behind uvicorn in a thread, on the run's database, at a
    fixed time. PUBLIC_BASE_URL is the served origin, so the forms' origin checks pass."""
    # Bound here and handed to uvicorn, so the port is known before the settings are made
    # and nobody else can take it in between.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    tmp = tmp_path_factory.mktemp("live")
    settings = load_settings(
        environment="test",
        secret_key="browser-test-secret-key-0123456789abcdef",
        public_base_url=base,
        admin_user=STAFF[0],
        admin_password=STAFF[1],
        outbox_dir=tmp / "outbox",
        broker_dir=tmp / "broker",
        # Every test signs up from 127.0.0.1; the limits have their own tests.
        signup_limit_per_client="10000/minute",
        signup_limit_per_address="10000/minute",
        # As in production: the sequences run from their revisions in the database, so the
        # workspace's editor edits and publishes them (the seeding is in people.build).
        sequences_source="database",
    )
    engine = make_engine(pg_url)
    clock = FixedClock(T0)
    app = create_app(settings, factory=make_session_factory(engine), clock=clock)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="live-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail(f"the app did not start serving at {base}")
        time.sleep(0.05)
    yield Live(base, app, clock, pg_url)
    server.should_exit = True
    thread.join(10)
    sock.close()
    engine.dispose()


@pytest.fixture
def world(request, live) -> people.World:
    """The people, on the emptied database, at the fixed time: made afresh for each test,
    except that a page which only looks (a table row without `writes`) reuses the people
    the test before it looked at, when that test wrote nothing either."""
    case = getattr(getattr(request.node, "callspec", None), "params", {}).get("case")
    looks = case is not None and not case.writes
    kept = live.kept
    if not (looks and kept is not None and people.still_there(live.app, kept)):
        assert request.getfixturevalue("clean_pg_url") == live.db_url
        live.clock.current = T0
        kept = people.build(live.app)
    live.kept = kept if looks else None
    return kept


def _viewport(width: int) -> dict:
    phone = width < 600
    return {
        "viewport": {"width": width, "height": 844 if phone else 900},
        "is_mobile": phone,
        "has_touch": phone,
    }


@pytest.fixture(scope="package")
def subscriber_context(browser):
    """(width) -> the subscribers' browser context at that width, made once."""
    made = {}

    def context(width: int):
        if width not in made:
            made[width] = browser.new_context(**_viewport(width))
        made[width].clear_cookies()
        return made[width]

    yield context
    for ctx in made.values():
        ctx.close()


@pytest.fixture(scope="package")
def staff_context(browser, live):
    """(width) -> a staff member's browser context at that width, signed in through the
    /admin/login form as the bootstrap admin. The database is emptied between tests (and
    with it the session rows), so each call signs in again when the session is gone."""
    made = {}

    def context(width: int):
        if width not in made:
            made[width] = browser.new_context(**_viewport(width))
        ctx = made[width]
        page = ctx.new_page()
        try:
            page.goto(live.base + "/admin")
            if "/admin/login" in page.url:  # sent to sign in: no live session
                page.fill("#name", STAFF[0])
                page.fill("#password", STAFF[1])
                with page.expect_navigation():
                    page.click("form.login [type=submit]")
                assert "/admin/login" not in page.url, "the staff sign-in failed"
        finally:
            page.close()
        return ctx

    yield context
    for ctx in made.values():
        ctx.close()


def pytest_collection_modifyitems(items):
    # `pytest -m browser` runs these alone; `-m "not browser"` leaves them out.
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)


def shot_path(name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    TAKEN.append(SHOTS / f"{name}.png")
    return TAKEN[-1]


def pytest_terminal_summary(terminalreporter):
    if not TAKEN:
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    report = SHOTS / "axe.txt"
    # Merged with the last runs' lines, so running a few pages keeps the others' findings.
    lines = report.read_text(encoding="utf-8").splitlines() if report.exists() else []
    seen = dict(line.split(": ", 1) for line in lines if ": " in line)
    seen.update({name: ", ".join(found) or "none" for name, found in FOUND.items()})
    report.write_text("".join(f"{n}: {f}\n" for n, f in sorted(seen.items())), encoding="utf-8")
    terminalreporter.write_line(
        f"browser tests: {len(TAKEN)} screenshots in {SHOTS}/, axe findings in {report}"
    )
