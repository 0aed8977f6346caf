"""Provider webhooks: validate the signature, then parse, then act (invariant 6).

    POST /webhooks/twilio/status    X-Twilio-Signature (HMAC over the public URL + form)
    POST /webhooks/twilio/inbound   same; answers TwiML
    POST /webhooks/sendgrid/events  ECDSA P-256 over timestamp + raw body, fresh timestamp

A missing or bad signature is 403 and nothing is read further; an unconfigured secret
is 503, never "accept unsigned". After a valid signature, an unparseable body is 400 and
an event for a message we do not know is 200 (logged), so the provider stops retrying.
What an event does is decided in campaigns.tracking.events; these routes only translate HTTP.
"""

from __future__ import annotations

import binascii
import json
import logging

from cryptography.exceptions import UnsupportedAlgorithm
from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from campaigns.tracking import events

from campaigns.audience import signup
from campaigns.content.composing import STATUS_REF_PURPOSE
from campaigns.db import transaction
from campaigns.tracking.links import BadToken
from campaigns.tracking.webhook_signatures import sendgrid_public_key, sendgrid_signature_ok

log = logging.getLogger(__name__)
router = APIRouter(prefix="/webhooks")

SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
# Clocks drift; a signature from further ahead than this is as suspect as a stale one.
FUTURE_SKEW_SECONDS = 60


# ---------------------------------------------------------------- Twilio


def public_url(request: Request) -> str:
    """The URL Twilio called, rebuilt from PUBLIC_BASE_URL. Behind a proxy the Host
    header and scheme we see are the proxy's (and a client can set Host to anything),
    so they never take part in the signature check."""
    path = request.url.path
    root = request.scope.get("root_path") or ""
    if root and path.startswith(root):
        path = path[len(root):]
    query = request.url.query
    return request.app.state.settings.public_base_url + path + (f"?{query}" if query else "")


async def _signed_twilio_form(request: Request) -> FormData:
    token = request.app.state.settings.twilio_auth_token
    if token is None or not token.get_secret_value():
        log.error("twilio webhook refused: TWILIO_AUTH_TOKEN is not set")
        raise HTTPException(503, "twilio webhooks are not configured")
    signature = request.headers.get("X-Twilio-Signature")
    if not signature:
        raise HTTPException(403, "missing signature")
    form = await request.form()
    # Twilio signs the parsed POST parameters, so parsing comes first; nothing is acted
    # on before the check passes.
    if not RequestValidator(token.get_secret_value()).validate(public_url(request), form, signature):
        log.warning("twilio webhook refused: bad signature for %s", request.url.path)
        raise HTTPException(403, "bad signature")
    return form


@router.post("/twilio/status")
async def twilio_status(request: Request) -> Response:
    form = await _signed_twilio_form(request)
    state = request.app.state
    ev = events.from_twilio_status(form, _message_ref(state, request.query_params.get("ref")),
                                   state.clock.now())
    if ev is not None:
        await run_in_threadpool(_record, state, [ev])
    return Response(status_code=200)  # Twilio ignores the body of a status callback


@router.post("/twilio/inbound")
async def twilio_inbound(request: Request) -> Response:
    form = await _signed_twilio_form(request)
    state = request.app.state
    reply = await run_in_threadpool(_inbound, state, form)
    twiml = MessagingResponse()
    if reply:
        twiml.message(reply)
    return Response(str(twiml), media_type="text/xml")


def _inbound(state, form: FormData) -> str | None:
    settings = state.settings
    registry, policy = state.registry, state.policy

    def join(session, phone: str, body: str, message_sid: str | None) -> str | None:
        enrolled = signup.signup_by_sms(session, state.clock, registry, policy, phone, body,
                                        campaign_key=settings.signup_campaign, message_sid=message_sid)
        if enrolled is None:
            return None
        return signup.join_reply(signup.JOIN_WORDS.get(events.keyword(body)), settings.brand_name)

    with transaction(state.factory) as session:
        return events.handle_inbound_sms(
            session, state.clock, form.get("From", ""), form.get("Body", ""),
            message_sid=form.get("MessageSid") or form.get("SmsSid") or None,
            payload=dict(form),
            help_reply=events.help_text(settings.brand_name, settings.email_from),
            join=join,
        )


def _message_ref(state, signed: str | None) -> str | None:
    """The status callback names our message by a signed token; a ref that does not
    verify is ignored and the message is found by Twilio's own SID instead."""
    if not signed:
        return None
    try:
        return state.signer.unsign(STATUS_REF_PURPOSE, signed)
    except BadToken:
        log.warning("twilio status callback with an unverifiable ref; matching by MessageSid")
        return None


# ---------------------------------------------------------------- SendGrid


@router.post("/sendgrid/events")
async def sendgrid_events(request: Request) -> Response:
    state = request.app.state
    configured = state.settings.sendgrid_webhook_public_key
    try:
        key = sendgrid_public_key(configured) if configured else None
    except (ValueError, UnsupportedAlgorithm, binascii.Error):
        log.error("sendgrid webhook refused: SENDGRID_WEBHOOK_PUBLIC_KEY is not a P-256 key")
        key = None
    if key is None:
        raise HTTPException(503, "sendgrid webhooks are not configured")
    signature = request.headers.get(SENDGRID_SIGNATURE)
    timestamp = request.headers.get(SENDGRID_TIMESTAMP)
    if not signature or not timestamp:
        raise HTTPException(403, "missing signature")
    if not timestamp.isdigit():
        raise HTTPException(403, "bad timestamp")
    # The timestamp is signed, so a fresh one proves the request is not an old replay.
    age = state.clock.now().timestamp() - int(timestamp)
    if age > state.settings.webhook_max_age_seconds or age < -FUTURE_SKEW_SECONDS:
        log.warning("sendgrid webhook refused: timestamp %ss old", int(age))
        raise HTTPException(403, "stale timestamp")
    body = await request.body()
    if not sendgrid_signature_ok(key, signature, timestamp, body):
        log.warning("sendgrid webhook refused: bad signature")
        raise HTTPException(403, "bad signature")
    try:
        batch = json.loads(body)
    except ValueError:
        raise HTTPException(400, "body is not JSON") from None
    if not isinstance(batch, list):
        raise HTTPException(400, "expected a JSON array of events")
    now = state.clock.now()
    parsed = [events.from_sendgrid(item, now) for item in batch if isinstance(item, dict)]
    await run_in_threadpool(_record, state, [ev for ev in parsed if ev is not None])
    return Response(status_code=200)


def _record(state, evs: list[events.NormalizedEvent]) -> None:
    # One transaction per request: if anything fails the provider gets a 5xx and
    # retries the whole batch, and de-duplication makes the retry safe.
    with transaction(state.factory) as session:
        for ev in evs:
            events.record_event(session, state.clock, ev)
