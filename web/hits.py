"""The fast path of the pages a click storm hits: the open pixel, the click redirect and
the lesson read online (web/pages.py routes them).

Why they can answer before the database has the event: a GET of these pages changes no
subscriber's state (invariant 7), it only adds an open or click event, and the token's
signature (campaigns.links.Signer) proves without the database that we made the link. So
with Redis the hit is pushed to a durable queue before the answer goes out and a worker
records it (workers/hit_queue.py: never lost, exactly once, judged by the machine-open
filter as at the moment it came). Without Redis, or while it is away, the page records
the hit itself in the request, as it always did (`record_now`): slower, never lost, never
a 5xx.

A forged token is refused by the signature before anything is queued. A token we signed
whose message is gone, or whose person was erased (erasure keeps messages and tokens), is
queued all the same; the drainer records nothing for it, as the page would not have
(campaigns.tracking.portal.engage).

Each hit gets its id before it is offered to the queue; a page that records it itself
(Redis away, or slower than its timeout) records it under that id, so a push that lands
late is found by the drainer as the same hit (exactly once).

What answers without a thread, on the event loop (a thread hop costs more than the
page's own work at a storm's rates): the push (workers/offer_batch.py), the read of the
message and person on PostgreSQL (web/page_pool.py), and the lesson or link targets
filled into the lesson's shape (campaigns.content.shapes). Only what takes a render (a
shape to make, a lesson that cannot have one), a hit the page must record itself, or a
read the pool cannot answer goes to a thread.

The redirect's link targets of a message are kept per process (`Lookups`, bounded by
MAX_BYTES) for a short while, and only as long as the campaign's revision is the one they
were made from: a message's repeated clicks then need no database at all. The lesson page
keeps nothing of the person: every request reads them as they are now (an erased person's
name is gone at once) and fills the shape.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

from cachetools import TTLCache
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from campaigns.content.rendering import RenderError
from campaigns.content.tracked_links import LINK_ID
from campaigns.db import transaction
from campaigns.links import BadToken
from campaigns.sequences.campaign import Campaign, DefinitionError
from campaigns.states import Channel
from campaigns.tracking import machine, page_reads, portal, redirects
from campaigns.tracking.queued_hits import QueuedHit
from web import page_pool
from workers.hit_queue import Offer

# Long enough to carry a storm (most clicks on a message come within minutes of each
# other), short enough that a changed name or language shows soon. Per process.
TTL_SECONDS = 120.0
# A message's link targets are a few hundred bytes: 32 MB per process holds ~100,000.
MAX_BYTES = 32 * 2**20


def _hit(request: Request, kind: str, link: str) -> machine.Hit:
    client = request.client.host if request.client else None
    return machine.Hit.from_request(kind, link, request.method, _headers(request), client)


def _headers(request: Request) -> dict[str, str]:
    """The request's headers as one dict, the first of a repeated name kept as Starlette's
    Headers.get would: each of its look-ups walks the whole list again."""
    found: dict[str, str] = {}
    for name, value in request.scope["headers"]:
        found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


def signed(state, purpose: str, token: str) -> str:
    """The message's public token, or portal.NotFound for a token we did not sign."""
    try:
        return state.signer.unsign(purpose, token)
    except BadToken:
        raise portal.NotFound("this link is not valid") from None


async def queue_async(
    state, request: Request, public: str, kind: str, link: str, detail: dict
) -> str | None:
    """Offer the hit to the queue, on the event loop (a thread per push costs more than
    the push at a storm's rates): None once it is queued (or was a repeat, answered
    only); else the id the caller records it under with record_now (no queue, Redis away
    or slow, the queue at its cap), "" when there is no queue at all."""
    hits = state.runtime.hit_queue
    if hits is None:
        return ""
    hit = QueuedHit.of(_hit(request, kind, link), public, state.clock.now(), detail)
    return None if await hits.offer_async(hit) is not Offer.RECORD else hit.id


def record_now(
    state,
    request: Request,
    purpose: str,
    token: str,
    kind: str,
    link: str,
    detail,
    event_id: str | None = None,
):
    """The hit recorded in the request: portal.NotFound if there is no message.
    `event_id`: the id it was offered to the queue with, if it was (queue's)."""
    with transaction(state.factory) as session:
        visit = portal.resolve(session, state.signer, purpose, token)
        hit = _hit(request, kind, link)
        portal.engage(
            session, state.clock, visit, hit, state.engagement, detail, event_id=event_id or None
        )
        return visit


def look_up(state, public: str) -> portal.Visit:
    """The message and person (only what the pages use: page_reads), read and let go
    before anything is rendered: rendering may read the registry's revisions, and a
    thread holding one pooled connection while it waits for another is how a busy pool
    deadlocks. portal.NotFound when there is no such message."""
    with state.reader() as session:
        visit = page_reads.page_visit(session, public)
    if visit is None:
        raise portal.NotFound("this link is not valid")
    return visit


async def look_up_async(state, public: str) -> portal.Visit:
    """look_up from the event loop: on the pages' own async connections where there are
    some (web/page_pool.py), else, or when they cannot answer, in a thread."""
    pool = state.page_pool
    if pool is not None:
        try:
            visit = await pool.visit(public)
        except page_pool.Unavailable:
            pass  # the session factory's way below waits for, and reports, a database away
        else:
            if visit is None:
                raise portal.NotFound("this link is not valid")
            return visit
    return await run_in_threadpool(look_up, state, public)


class NotLoaded(Exception):
    """The campaign is not loaded in this process (yet): take the thread's way."""


class AsLoaded:
    """The registry as this process last loaded it (`loaded`): what code on the event loop
    reads, as it must never wait on files or the database. A background task keeps it
    fresh (web/app.py); a campaign it lacks is NotLoaded, never "no such lesson"."""

    def __init__(self, registry) -> None:
        self.registry = registry

    def get(self, key: str) -> Campaign:
        campaign = self.registry.loaded(key)
        if campaign is None:
            raise NotLoaded(key)
        return campaign


@dataclass(frozen=True)
class Cached:
    campaign_key: str
    campaign: Campaign  # the revision it was made from
    value: object


class Lookups:
    """Read-only look-ups of one process, kept TTL_SECONDS and dropped as soon as the
    campaign's running revision is another (the registry hands out a new Campaign)."""

    def __init__(self, ttl: float = TTL_SECONDS, max_bytes: int = MAX_BYTES):
        self._cache: TTLCache = TTLCache(maxsize=max_bytes, ttl=ttl, getsizeof=_size)
        self._lock = threading.Lock()  # TTLCache is not thread-safe; routes run in threads

    def get(self, registry, key: tuple):
        with self._lock:
            found = self._cache.get(key)
        if found is None:
            return None
        try:
            current = registry.get(found.campaign_key)
        except (LookupError, DefinitionError, NotLoaded):
            return None
        return found.value if current is found.campaign else None

    def put(self, registry, key: tuple, campaign_key: str, value) -> None:
        try:
            campaign = registry.get(campaign_key)
        except (LookupError, DefinitionError, NotLoaded):
            return
        entry = Cached(campaign_key, campaign, value)
        if _size(entry) > self._cache.maxsize:
            return  # larger than the whole cache: not kept
        with self._lock:
            self._cache[key] = entry


def _size(entry: Cached) -> int:
    """About what an entry holds in memory: its strings (a lesson's HTML, a message's
    link targets), plus the tuple and dict around them."""
    value = entry.value
    parts = value.items() if isinstance(value, dict) else [value]
    strings = [x for part in parts for x in (part if isinstance(part, tuple) else (part,))]
    return 200 + sum(sys.getsizeof(x) for x in strings if isinstance(x, str))


def known_target(state, public: str, link_id: str) -> str | None:
    """Where /l/<token>/<link id> goes when this process has the message's targets
    already (targets_of's cache), without the database; None when it must look."""
    if not LINK_ID.match(link_id):
        raise portal.NotFound("this link is not valid")
    targets = state.lookups.get(state.loaded, ("l", public))
    if targets is None:
        return None
    if link_id not in targets:
        raise portal.NotFound("this link is not valid")
    return targets[link_id]


def targets_of(state, visit: portal.Visit) -> dict[str, str]:
    """{link id: URL} of every link the message sends through our redirect
    (campaigns.tracking.redirects, from the lesson's shape), kept per message for
    known_target. May render: run it in a thread."""
    public = visit.message.public_token
    targets = state.lookups.get(state.registry, ("l", public))
    if targets is None:
        targets = redirects.link_targets(
            state.registry,
            state.renderer,
            state.signer,
            state.settings.public_base_url,
            visit,
            state.shapes,
        )
        state.lookups.put(state.registry, ("l", public), visit.message.campaign_key, targets)
    return targets


def quick_targets(state, visit: portal.Visit) -> dict[str, str] | None:
    """targets_of when nothing needs a render, the files or the database (a shape made
    before answers, the campaign loaded): fit for the event loop; None otherwise."""
    public = visit.message.public_token
    targets = state.lookups.get(state.loaded, ("l", public))
    if targets is not None:
        return targets
    try:
        campaign, step, recipient, links = portal.lesson_parts(
            state.loaded, state.signer, state.settings.public_base_url, visit
        )
    except NotLoaded:
        return None
    texts = visit.message.channel == Channel.SMS
    targets = state.shapes.filled_targets(campaign, step, recipient, links, texts=texts)
    if targets is not None:
        state.lookups.put(state.loaded, ("l", public), visit.message.campaign_key, targets)
    return targets


def lesson_page(
    state, visit: portal.Visit, *, quick: bool = False
) -> tuple[str | None, str | None]:
    """(the person's locale, the lesson's HTML as read online), or (locale, None) when the
    lesson cannot be shown; `quick`: None instead when it would take a render (a shape to
    make, or none to use), so that the event loop never renders. The person as they are
    now, whoever they were when last asked: nothing of them is kept."""
    locale = visit.subscriber.locale
    try:
        parts = portal.lesson_parts(
            state.loaded if quick else state.registry,
            state.signer,
            state.settings.public_base_url,
            visit,
            online=True,
        )
        if quick:
            html = state.shapes.filled_html(*parts)
            return None if html is None else (locale, html)
        return locale, state.shapes.email_html(*parts)
    except NotLoaded:
        return None
    except (portal.NotFound, RenderError):
        return locale, None
