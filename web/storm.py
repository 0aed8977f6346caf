"""The three pages a click storm hits, answered ahead of FastAPI's router.

The open pixel (`/o/<token>`), a link's redirect (`/l/<token>/<link id>`) and the lesson
read online (`/m/<token>`) are requests by the thousand after a large send. FastAPI's
routing (a hundred routes matched in turn), its dependency solving and its exception
and exit-stack layers were about a third of the pixel's CPU, more than the page's own
work. So this middleware, inside the request log and the body limit (web/app.py), hands
a GET or HEAD of exactly those shapes straight to the route functions of web/pages.py,
with the same Request, the same Response and the same answers; anything else, a path
one segment off included, goes on to FastAPI as before. An exception a route lets out
still reaches Starlette's outermost layer, which answers 500 and logs it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from web import pages


class StormPages:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = _route(scope) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        handler, args = route
        response = await handler(Request(scope, receive), *args)
        await response(scope, receive, send)


def _route(scope: Scope):
    if scope["method"] not in ("GET", "HEAD"):
        return None
    parts = scope["path"].split("/")
    # "", letter, token[, link id]: the shapes web/pages.py routes, nothing else.
    if len(parts) == 3 and parts[2]:
        if parts[1] == "o":
            return pages.open_pixel, (parts[2],)
        if parts[1] == "m":
            return pages.read_online, (parts[2],)
    elif len(parts) == 4 and parts[1] == "l" and parts[2] and parts[3]:
        return pages.follow_link, (parts[2], parts[3])
    return None
