"""Provider webhooks: cap the body, verify, then parse, then act (invariants 6 and 12).

    POST /webhooks/twilio/status    workers.providers.twilio_webhook
    POST /webhooks/twilio/inbound   same; answers TwiML
    POST /webhooks/sendgrid/events  workers.providers.sendgrid_webhook

Each provider's module verifies the signature and parses the payload into neutral
events; campaigns.tracking.events (record_event) and campaigns.tracking.inbound
(handle_inbound_sms) decide what they do. These routes only translate HTTP, one status
per kind of refusal (workers/providers/webhook_base.py):

    body over the cap ............. 413, nothing verified or parsed (web/body_limits.py)
    NotConfigured ................. 503: an unset or unusable secret, never "accept unsigned"
    Rejected ...................... 403: missing or bad signature, stale timestamp;
                                    nothing in the request is acted on
    BadPayload .................... 400, after a valid signature: a body that does not
                                    parse, or a Twilio form with a malformed id (a
                                    malformed item of a SendGrid batch is skipped alone)
    an event for a message we do not know, or one we do not map: 200 (logged), so the
    provider stops retrying
"""

from __future__ import annotations

import logging
from datetime import timedelta

from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool
from twilio.twiml.messaging_response import MessagingResponse

from campaigns.db import transaction
from campaigns.delivery.composing import STATUS_REF_PURPOSE
from campaigns.intake import signup
from campaigns.links import BadToken
from campaigns.redact import mask
from campaigns.tracking.answers import QuestionDesk
from campaigns.tracking.events import NormalizedEvent, record_event
from campaigns.tracking.inbound import HelpDesk, InboundText, handle_inbound_sms
from campaigns.tracking.keywords import keyword
from web.body_limits import SENDGRID_MAX_BODY, TWILIO_MAX_BODY  # noqa: F401 (the caps, named here too)
from workers import metrics
from workers.providers import sendgrid_webhook, twilio_webhook
from workers.providers.webhook_base import BadPayload, NotConfigured, Rejected, WebhookError
from workers.runtime import care_team_from

log = logging.getLogger(__name__)
router = APIRouter(prefix="/webhooks")
# The drip_webhook_deliveries_total result of each refusal.
_REFUSALS = {NotConfigured: "not_configured", Rejected: "refused", BadPayload: "bad_payload"}


def _refused(provider: str, exc: WebhookError) -> HTTPException:
    metrics.WEBHOOK_DELIVERIES.labels(provider, _REFUSALS.get(type(exc), "refused")).inc()
    if isinstance(exc, NotConfigured):
        log.error("%s webhook refused: %s", provider, exc)
        return HTTPException(503, f"{provider} webhooks are not configured")
    if isinstance(exc, Rejected):
        log.warning("%s webhook refused: %s", provider, exc)
        return HTTPException(403, str(exc))
    if isinstance(exc, BadPayload):
        return HTTPException(400, str(exc))
    raise TypeError(f"unmapped webhook error {type(exc).__name__}") from exc


# ---------------------------------------------------------------- Twilio


def public_url(request: Request) -> str:
    """The URL Twilio called, rebuilt from PUBLIC_BASE_URL. Behind a proxy the Host
    header and scheme we see are the proxy's (and a client can set Host to anything),
    so they never take part in the signature check."""
    path = request.url.path
    root = request.scope.get("root_path") or ""
    if root and path.startswith(root):
        path = path[len(root) :]
    query = request.url.query
    return request.app.state.settings.public_base_url + path + (f"?{query}" if query else "")


async def _signed_twilio_form(request: Request) -> twilio_webhook.Form:
    token = request.app.state.settings.twilio_auth_token
    form = twilio_webhook.parse_form(await request.body())  # capped: web/body_limits.py
    # Twilio signs the parsed POST parameters, so parsing the form comes first; nothing
    # is acted on before the check passes.
    try:
        twilio_webhook.verify(
            request.headers,
            public_url(request),
            form,
            auth_token=token.get_secret_value() if token else None,
        )
    except WebhookError as exc:
        raise _refused("twilio", exc) from None
    return form


@router.post("/twilio/status")
async def twilio_status(request: Request) -> Response:
    form = await _signed_twilio_form(request)
    state = request.app.state
    try:
        evs = twilio_webhook.parse_status(
            form, _message_ref(state, request.query_params.get("ref")), state.clock.now()
        )
    except WebhookError as exc:
        raise _refused("twilio", exc) from None
    if evs:
        await run_in_threadpool(_record, state, evs, "twilio")
    metrics.WEBHOOK_DELIVERIES.labels("twilio", "accepted").inc()
    return Response(status_code=200)  # Twilio ignores the body of a status callback


@router.post("/twilio/inbound")
async def twilio_inbound(request: Request) -> Response:
    form = await _signed_twilio_form(request)
    state = request.app.state
    try:
        text = twilio_webhook.parse_inbound(form)
    except WebhookError as exc:
        raise _refused("twilio", exc) from None
    reply = await run_in_threadpool(_inbound, state, text)
    metrics.WEBHOOK_DELIVERIES.labels("twilio", "accepted").inc()
    twiml = MessagingResponse()
    if reply:
        twiml.message(reply)
    return Response(str(twiml), media_type="text/xml")


def _inbound(state, text: InboundText) -> str | None:
    settings = state.settings
    registry, policy = state.registry, state.policy

    def join(session, phone: str, body: str, message_sid: str | None) -> str | None:
        if signup.JOIN_WORDS.get(keyword(body)) is None:
            return None
        if state.runtime.request_limits.hit("join_number", phone) is not None:
            # A number sending JOIN again and again: no more replies; a person sees it.
            log.warning("JOIN from %s over its limit", mask(phone))
            return None
        enrolled = signup.signup_by_sms(
            session,
            state.clock,
            registry,
            policy,
            phone,
            body,
            campaign_key=settings.signup_campaign,
            message_sid=message_sid,
        )
        if enrolled is None:
            return None
        return signup.join_reply(signup.JOIN_WORDS.get(keyword(body)), settings.brand_name)

    def confirm(session, phone: str, body: str, message_sid: str | None) -> str | None:
        enrolled = signup.confirm_by_sms(
            session,
            state.clock,
            registry,
            policy,
            phone,
            body,
            campaign_key=settings.signup_campaign,
            message_sid=message_sid,
        )
        if enrolled is None:
            return None
        return signup.join_reply(enrolled.subscriber.locale, settings.brand_name)

    kinds: list[str] = []
    with transaction(state.factory) as session:
        reply = handle_inbound_sms(
            session,
            state.clock,
            text,
            help_desk=HelpDesk(
                settings.brand_name, care_team_from(settings), settings.default_country
            ),
            join=join,
            confirm=confirm,
            brand=settings.brand_name,
            confirm_opt_outs=settings.sms_opt_out_replies == "ours",
            questions=QuestionDesk(
                registry, timedelta(days=settings.question_reply_days), settings.brand_name
            ),
            seen=kinds.append,
        )
    for kind in kinds:  # counted once committed
        metrics.INBOUND_TEXTS.labels(kind).inc()
    return reply


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
    body = await request.body()  # capped: web/body_limits.py
    try:
        sendgrid_webhook.verify(
            request.headers,
            body,
            public_key=state.settings.sendgrid_webhook_public_key,
            now=state.clock.now(),
            max_age_seconds=state.settings.webhook_max_age_seconds,
        )
        evs = sendgrid_webhook.parse(body, state.clock.now())
    except WebhookError as exc:
        raise _refused("sendgrid", exc) from None
    await run_in_threadpool(_record, state, evs, "sendgrid")
    metrics.WEBHOOK_DELIVERIES.labels("sendgrid", "accepted").inc()
    return Response(status_code=200)


def _record(state, evs: list[NormalizedEvent], provider: str) -> None:
    # One transaction per request: if anything fails the provider gets a 5xx and
    # retries the whole batch, and de-duplication makes the retry safe.
    with transaction(state.factory) as session:
        results = [record_event(session, state.clock, ev) for ev in evs]
    # Counted once committed: a batch rolled back is retried and counted then.
    for result in results:
        metrics.WEBHOOK_EVENTS.labels(provider, result.value).inc()
