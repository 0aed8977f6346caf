"""Every page of the table (tests/browser/pages.py) in each of its languages at phone and
desktop width: the status it answers with, no serious or critical axe-core violation, `lang`
matching the language, a title, no sideways scrolling on a phone (a wide table scrolls in
a region of its own); and the titles of different kinds of page differ. A full-page
screenshot of each is left in build/screenshots/<page>-<lang>-<width>.png."""

from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe

from tests.browser.conftest import FAILING_IMPACTS, FOUND, shot_path
from tests.browser.pages import KNOWN_SHARED_TITLES, PAGES, STAFF, WIDTHS, Case

AXE = Axe()


class KnownProblem(AssertionError):
    """Only the problems the table lists for this case: the xfail it is marked with."""


def known(reason: str) -> list:
    """The mark of a case that fails today for `reason`, and must pass once it is fixed."""
    if not reason:
        return []
    return [pytest.mark.xfail(strict=True, raises=KnownProblem, reason=f"known today: {reason}")]


def cases():
    for case in PAGES:
        for lang in case.langs:
            for width in WIDTHS:
                reason = ", ".join(sorted(case.known_rules(lang, width)))
                yield pytest.param(
                    case, lang, width, marks=known(reason), id=f"{case.name}-{lang}-{width}"
                )


def open_page(case: Case, lang: str, width: int, live, world, subscriber_context, staff_context):
    ctx = (staff_context if case.audience == STAFF else subscriber_context)(width)
    page = ctx.new_page()
    # A Spanish reader's browser asks for Spanish: what a page that has no person to go
    # by (the invalid link) can answer in.
    page.set_extra_http_headers({"Accept-Language": "es-US,es;q=0.9" if lang == "es" else "en-US"})
    response = case.go(page, live.base, world, lang)
    return page, response


def problems(page, case: Case, lang: str, width: int, name: str) -> dict[str, str]:
    """What is wrong with the page, by rule: axe's serious and critical violations and this
    suite's own checks. Every axe violation is kept for the report."""
    found: dict[str, str] = {}
    violations = AXE.run(page).response["violations"]
    FOUND[name] = [f"{v['id']} ({v['impact']}, {len(v['nodes'])})" for v in violations]
    for v in violations:
        if v["impact"] in FAILING_IMPACTS:
            targets = "; ".join(" ".join(n["target"]) for n in v["nodes"][:3])
            found[v["id"]] = f"{v['impact']}: {v['help']} at {targets}"
    page_lang = page.evaluate("document.documentElement.lang")
    if page_lang != lang:
        found["lang"] = f"<html lang={page_lang!r}>, the page is in {lang!r}"
    if not page.title().strip():
        found["title"] = "the page has no title"
    if width < 600:
        wide, inner = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
        if wide > inner:
            found["horizontal-scroll"] = f"{wide}px of content in a {inner}px window"
    return found


@pytest.mark.parametrize("case,lang,width", list(cases()))
def test_page(case, lang, width, live, world, subscriber_context, staff_context):
    name = f"{case.name}-{lang}-{width}"
    page, response = open_page(case, lang, width, live, world, subscriber_context, staff_context)
    try:
        page.screenshot(path=shot_path(name), full_page=True)
        assert response is not None and response.status == case.status, (
            f"{page.url} answered {response and response.status}, not {case.status}"
        )
        found = problems(page, case, lang, width, name)
    finally:
        page.close()
    known = case.known_rules(lang, width)
    new = {rule: why for rule, why in found.items() if rule not in known}
    assert not new, f"{name}: " + "; ".join(f"{rule}: {why}" for rule, why in new.items())
    fixed = known - set(found)
    assert not fixed, f"{name}: {', '.join(sorted(fixed))} fixed; drop it from pages.py KNOWN"
    if found:
        raise KnownProblem("; ".join(f"{rule}: {why}" for rule, why in found.items()))


def _title_cases():
    for lang in ("en", "es"):
        clashes = KNOWN_SHARED_TITLES.get(lang, [])
        yield pytest.param(lang, marks=known("; ".join("/".join(sorted(k)) for k in clashes)))


@pytest.mark.parametrize("lang", list(_title_cases()))
def test_each_kind_of_page_has_its_own_title(lang, live, world, subscriber_context, staff_context):
    titles: dict[str, set[str]] = {}
    for case in PAGES:
        if lang not in case.langs:
            continue
        page, _ = open_page(case, lang, 1280, live, world, subscriber_context, staff_context)
        titles.setdefault(page.title().strip(), set()).add(case.kind)
        page.close()
    assert "" not in titles
    shared = [kinds for kinds in titles.values() if len(kinds) > 1]
    expected = KNOWN_SHARED_TITLES.get(lang, [])
    new = [kinds for kinds in shared if kinds not in expected]
    assert not new, f"one title for different kinds of page: {new}"
    fixed = [kinds for kinds in expected if kinds not in shared]
    assert not fixed, f"{fixed} have their own titles now; drop them from KNOWN_SHARED_TITLES"
    if shared:
        raise KnownProblem(f"one title for different kinds of page: {shared}")
