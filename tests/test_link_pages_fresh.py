"""The link pages read the campaigns as this process loaded them, on the event loop
(web/hits.py AsLoaded), so how soon an edit shows matters: with the app's refresh task
running (a web server's lifespan) a step removed from a campaign's file is gone from the
lesson page and the redirect within seconds; without it (a test client outside `with`)
the registry's trust in what it loaded runs out (Registry.loaded, LOADED_FOR) and the
pages look again themselves."""

from __future__ import annotations

import time

from campaigns.sequences.registry import LOADED_FOR
from tests import test_hit_queue as base
from tests.test_hit_queue import AGENT, STORY, app, links, sent

# The fixtures of tests/test_hit_queue.py: the course and its registry.
course, registry = base.course, base.registry
HEADERS = {"User-Agent": AGENT}


def codes(client, token: str, link_id: str) -> tuple[int, int]:
    lesson = client.get(links(token).read_online, headers=HEADERS)
    redirect = client.get(
        f"{links(token).redirect}/{link_id}", headers=HEADERS, follow_redirects=False
    )
    return lesson.status_code, redirect.status_code


def remove_first_step(course) -> None:
    definition = course / "definitions" / "tiny.yaml"
    text = definition.read_text()
    assert "key: hello" in text
    definition.write_text(text.replace("key: hello", "key: renamed"))


def link_id_of(html: str) -> str:
    return html.split("/l/")[1].split('"')[0].split("/")[1]


def served_until_gone(client, token: str, link_id: str, within: float) -> list[tuple]:
    seen, deadline = [], time.monotonic() + within
    while time.monotonic() < deadline:
        seen.append(codes(client, token, link_id))
        if seen[-1] == (404, 404):
            break
        time.sleep(0.5)
    return seen


def test_with_the_refresh_task_an_edit_shows_within_seconds(
    pg_factory, clock, registry, policy, course
):
    [token] = sent(pg_factory, clock, registry, policy)
    with app(pg_factory, clock, None, "", course) as client:
        page = client.get(links(token).read_online, headers=HEADERS)
        assert STORY not in page.text  # sent through the redirect
        link_id = link_id_of(page.text)
        assert codes(client, token, link_id) == (200, 302)
        remove_first_step(course)
        seen = served_until_gone(client, token, link_id, within=6)
    assert seen[-1] == (404, 404), seen


def test_without_it_the_pages_look_again_once_what_was_loaded_is_old(
    pg_factory, clock, registry, policy, course
):
    [token] = sent(pg_factory, clock, registry, policy)
    client = app(pg_factory, clock, None, "", course)
    page = client.get(links(token).read_online, headers=HEADERS)
    link_id = link_id_of(page.text)
    assert codes(client, token, link_id) == (200, 302)
    remove_first_step(course)
    seen = served_until_gone(client, token, link_id, within=LOADED_FOR + 4)
    assert seen[-1] == (404, 404), seen
