"""Thin tasks: take ids, call plain functions in `campaigns`, enqueue follow-up work.

A database hiccup retries the task a few times within seconds; every other rule
(backoff after provider errors, deferrals, re-sends) lives in the database.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.exc import OperationalError

from campaigns.care.notifications import announce_contact_requests
from campaigns.db import transaction
from campaigns.delivery import scheduler
from campaigns.delivery.sending import send_batch
from campaigns.delivery.work import Work
from campaigns.intake.confirmations import send_confirmations, send_text_confirmations
from campaigns.intake.retention import remove_unconfirmed
from campaigns.states import CHANNELS
from settings import Settings
from workers.app import app
from workers.queues import queue_depths
from workers.runtime import runtime

log = logging.getLogger(__name__)

_DB_RETRY = {
    "autoretry_for": (OperationalError,),
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "retry_jitter": True,
    "max_retries": 5,
}


def dispatch(work: Work, settings: Settings | None = None) -> None:
    """Hand claimed message ids to the send queues in batches. Callers outside a worker
    (the CLI, the web app) pass their own settings instead of building a worker runtime."""
    settings = settings or runtime().settings
    for size, ids, task in (
        (settings.email_batch_size, work.email, send_email),
        (settings.sms_batch_size, work.sms, send_sms),
    ):
        for start in range(0, len(ids), size):
            task.delay(ids[start : start + size])


@app.task(name="drip.tick", **_DB_RETRY)
def tick() -> dict:
    rt = runtime()
    work = scheduler.tick(rt.factory, rt.clock, rt.registry, rt.policy, dispatch)
    return {"claimed": work.claimed, "email": len(work.email), "sms": len(work.sms)}


@app.task(name="drip.reap", **_DB_RETRY)
def reap() -> dict:
    rt = runtime()
    providers = {"email": rt.email_provider, "sms": rt.sms_provider}
    # A channel whose queue still holds tasks has a backlog, not lost work.
    depths = queue_depths(rt.settings)
    busy = frozenset(c for c in CHANNELS if isinstance(depths.get(c), int) and depths[c] > 0)
    result = scheduler.reap_pass(rt.factory, rt.clock, rt.policy, providers, dispatch, busy)
    if any(result.values()):
        log.warning("reaper: %s", result)
    return result


@app.task(name="drip.notify", **_DB_RETRY)
def notify() -> dict:
    """Emails that wait in the database until sent: call-request notices for the care team
    and double opt-in confirmations (the confirm-link mails, the "reply YES" texts); and
    sign-ups never confirmed, removed when too old."""
    rt = runtime()
    s = rt.settings
    announced = announce_contact_requests(
        rt.factory, rt.clock, rt.email_provider, s.care_team_email, s.public_base_url, s.brand_name
    )
    confirmations = send_confirmations(
        rt.factory,
        rt.clock,
        rt.email_provider,
        rt.signer,
        templates_dir=s.templates_dir,
        brand=s.brand_name,
        postal_address=s.postal_address,
        base_url=s.public_base_url,
        resend_after=timedelta(seconds=s.confirmation_resend_seconds),
    )
    texts = send_text_confirmations(
        rt.factory,
        rt.clock,
        rt.sms_provider,
        rt.policy,
        brand=s.brand_name,
        resend_after=timedelta(hours=s.text_confirmation_resend_hours),
    )
    with transaction(rt.factory) as session:
        removed = remove_unconfirmed(session, rt.clock, timedelta(days=s.pending_retention_days))
    return {
        "contact_requests": announced,
        "confirmations": confirmations,
        "text_confirmations": texts,
        "removed": removed,
    }


@app.task(name="drip.send_email", **_DB_RETRY)
def send_email(message_ids: list[int]) -> dict:
    return vars(send_batch(runtime().send, "email", message_ids))


@app.task(name="drip.send_sms", **_DB_RETRY)
def send_sms(message_ids: list[int]) -> dict:
    return vars(send_batch(runtime().send, "sms", message_ids))
