"""The events API: another system (a booking system, a clinic's records) tells us what a
person did, so a course can react to it (a goal: campaigns.journeys).

    POST /api/v1/events      Authorization: Bearer <key from `drip api-keys create`>
                             a JSON object: event_id, name, email | phone |
                             subscriber_token, occurred_at, properties
                             (campaigns.tracking.person_events says what each may hold)

Answers, in the order they are decided (nothing from outside gets a 5xx, invariant 12):

    client with too many failed keys .......... 429 + Retry-After, before any look-up
    no key, a malformed, wrong or revoked one . 401 (WWW-Authenticate: Bearer); the body is
                                                not read, so nothing about a person is
                                                revealed to a caller without a key
    key over its call rate .................... 429 + Retry-After
    body over 16 KiB .......................... 413 (web/body_limits.py)
    not JSON .................................. 400
    a field missing or wrong .................. 422, every problem named by its field
    nobody we know named ...................... 422, field "person": an event never
                                                creates a person (the sender can enrol them
                                                first, then send the event again)
    event id used before for another event .... 409
    recorded .................................. 201 {event, goal_reached_in, duplicate: false}
    the same event id again ................... 200, the original, the same way
                                                (duplicate: true); nothing changes

Errors are JSON: {"detail": "...", "errors": [{"field": "...", "message": "..."}]}.
"""

from __future__ import annotations

import logging
import math

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from campaigns.api_keys import KeyInfo, authenticate
from campaigns.db import transaction
from campaigns.journeys.on_event import take_event
from campaigns.tracking.person_events import (
    EventConflict,
    EventInputError,
    MalformedBody,
    PersonEventIn,
    UnknownPerson,
    as_dict,
    parse_event,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1")
HEADERS = {"Cache-Control": "no-store"}


def _error(status: int, detail: str, errors=(), headers: dict | None = None) -> JSONResponse:
    body = {"detail": detail, "errors": [{"field": f, "message": m} for f, m in errors]}
    return JSONResponse(body, status_code=status, headers={**HEADERS, **(headers or {})})


def _too_many(wait: float) -> JSONResponse:
    return _error(
        429, "too many requests; try again later", headers={"Retry-After": str(math.ceil(wait))}
    )


def _bearer(request: Request) -> str:
    scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _authenticate(state, key: str) -> KeyInfo | None:
    if not key:
        return None
    with transaction(state.factory) as session:
        return authenticate(session, state.clock, key)


@router.post("/events")
async def post_event(request: Request) -> JSONResponse:
    state = request.app.state
    limits = state.runtime.request_limits
    client = request.client.host if request.client else "unknown"
    # The key first: a valid key is never refused for its address's failures (behind a
    # proxy every caller may share one address, and anyone could lock the booking system
    # out with junk keys). A 256-bit key cannot be guessed; the per-client limit only
    # keeps failing callers from costing us a look-up each, so it counts failures alone.
    key = await run_in_threadpool(_authenticate, state, _bearer(request))
    if key is None:
        wait = limits.blocked("api_auth_client", client)
        if wait is not None:
            return _too_many(wait)
        limits.hit("api_auth_client", client)
        return _error(
            401,
            "an API key is required: Authorization: Bearer <key> (drip api-keys create)",
            headers={"WWW-Authenticate": 'Bearer realm="drip events"'},
        )
    wait = limits.hit("api_key", str(key.id))
    if wait is not None:
        return _too_many(wait)
    body = await request.body()  # capped: web/body_limits.py
    try:
        event = parse_event(body, state.clock.now(), state.settings.default_country)
    except MalformedBody as exc:
        return _error(400, str(exc), [("body", str(exc))])
    except EventInputError as exc:
        count = len(exc.problems)
        return _error(422, f"the event has {count} problem{'s' * (count > 1)}", exc.problems)
    try:
        answer, created = await run_in_threadpool(_take, state, event, key)
    except UnknownPerson as exc:
        return _error(422, str(exc), [("person", str(exc).removeprefix("person: "))])
    except EventConflict as exc:
        return _error(409, str(exc), [("event_id", str(exc).removeprefix("event_id: "))])
    return JSONResponse(answer, status_code=201 if created else 200, headers=HEADERS)


def _take(state, event: PersonEventIn, key: KeyInfo) -> tuple[dict, bool]:
    with transaction(state.factory) as session:
        taken = take_event(
            session,
            state.clock,
            state.registry,
            state.policy,
            event,
            source="api",
            source_ref=f"key {key.id} ({key.prefix})",
        )
        answer = {
            "event": as_dict(taken.recorded.event),
            "goal_reached_in": taken.reached_in,
            "duplicate": not taken.created,
        }
    if taken.created:
        # Not the event's name: integrators choose names, and one may say something about
        # a person's health (invariant 8). The id and the key are enough to find it.
        log.info(
            "person event recorded through key %s (%d goal change(s))",
            key.prefix,
            len(taken.goals),
        )
    return answer, taken.created
