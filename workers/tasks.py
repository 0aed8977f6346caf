"""Thin tasks: take ids, call plain functions in `campaigns`, enqueue follow-up work.

Database outages: a send task retries on its own for longer than a minute (equal jitter,
so the waits cannot all come out short), then gives up and leaves its rows `queued`,
where the reaper hands them out again as soon as it sees no live task holds them. The
periodic tasks (tick, reap, notify) do not retry at all: beat sends the next one in
seconds. Either way an outage is logged once when it starts and once when it ends
(workers.outages), not as a traceback per task.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import timedelta

import redis
from sqlalchemy.exc import OperationalError

from campaigns.care.notifications import announce_contact_requests
from campaigns.db import transaction
from campaigns.delivery import scheduler
from campaigns.delivery.sending import send_batch
from campaigns.delivery.unconfirmed import SettlePolicy
from campaigns.delivery.work import Work
from campaigns.intake.confirmations import send_confirmations, send_text_confirmations
from campaigns.intake.retention import remove_unconfirmed
from campaigns.journeys.triggers import enroll_triggered
from campaigns.reporting import retention
from settings import Settings
from workers import metrics
from workers.app import app
from workers.hit_queue import outage as hit_outage
from workers.outages import database
from workers.queues import held_ids
from workers.runtime import retention_policy, runtime

log = logging.getLogger(__name__)

# Send tasks: waits of at least 0.5, 1, 2, 4, 8, then 10 s each (the upper half of
# min(20, 2**n) s): at least 65 s in all before the task gives up.
DB_RETRIES = 10
DB_RETRY_CAP = 20.0


def db_retry_delay(retries: int, rng=random.random) -> float:
    ceiling = min(DB_RETRY_CAP, 2.0**retries)
    return ceiling / 2 + rng() * ceiling / 2


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


@app.task(name="drip.tick")
def tick() -> dict | None:
    rt = runtime()
    started = time.perf_counter()
    with database.watch("tick"):
        work = scheduler.tick(rt.factory, rt.clock, rt.registry, rt.policy, dispatch)
        metrics.record_tick(time.perf_counter() - started, ok=True)
        return {"claimed": work.claimed, "email": len(work.email), "sms": len(work.sms)}
    metrics.record_tick(time.perf_counter() - started, ok=False)  # watch() swallowed it
    return None


def settle_policy(settings: Settings) -> SettlePolicy:
    return SettlePolicy(
        lookup_after=timedelta(seconds=settings.unconfirmed_lookup_seconds),
        alert_after=timedelta(seconds=settings.unconfirmed_alert_seconds),
        lease=timedelta(seconds=settings.lease_seconds),
    )


@app.task(name="drip.reap")
def reap() -> dict | None:
    rt = runtime()
    providers = {"email": rt.email_provider, "sms": rt.sms_provider}
    held = held_ids(rt.settings)
    with database.watch("reap"):
        result = scheduler.reap_pass(
            rt.factory, rt.clock, rt.policy, providers, dispatch, held, settle_policy(rt.settings)
        )
        log_reaped(result)
        return result


def log_reaped(r: dict) -> None:
    """One line per pass that changed something, nothing for a quiet pass; a WARNING
    only for what is news to ops (lost work found, sends cut short, messages that now
    wait for a person), never again for the same messages."""
    if not any(r.get(k) for k in ("requeued", "lease_expired", "confirmed", "resent", "needs_ops")):
        if r.get("undecided"):
            log.debug("reaper: %d unconfirmed message(s) still undecided", r["undecided"])
        return
    level = (
        logging.WARNING
        if r.get("requeued") or r.get("lease_expired") or r.get("needs_ops")
        else logging.INFO
    )
    log.log(
        level,
        "reaper: requeued %d lost message(s) (%d from dead workers); %d lease(s) expired "
        "mid-call, now unconfirmed; provider look-ups: %d found sent, %d never received and "
        "resent, %d undecided; %d now wait for ops",
        r.get("requeued", 0),
        r.get("from_dead_workers", 0),
        r.get("lease_expired", 0),
        r.get("confirmed", 0),
        r.get("resent", 0),
        r.get("undecided", 0),
        r.get("needs_ops", 0),
    )


@app.task(name="drip.notify")
def notify() -> dict | None:
    """Emails that wait in the database until sent: call-request notices for the care team
    and double opt-in confirmations (the confirm-link mails, the "reply YES" texts); and
    sign-ups never confirmed, removed when too old."""
    rt = runtime()
    s = rt.settings
    with database.watch("notify"):
        announced = announce_contact_requests(
            rt.factory,
            rt.clock,
            rt.email_provider,
            s.care_team_email,
            s.public_base_url,
            s.brand_name,
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
            removed = remove_unconfirmed(
                session, rt.clock, timedelta(days=s.pending_retention_days)
            )
        return {
            "contact_requests": announced,
            "confirmations": confirmations,
            "text_confirmations": texts,
            "removed": removed,
        }


@app.task(name="drip.retention")
def prune_retention() -> dict | None:
    """Daily: roll up, then delete raw events past EVENT_RETENTION_DAYS; clear finished
    messages' detail past MESSAGE_DETAIL_RETENTION_DAYS (campaigns.reporting.retention).
    Each batch commits alone, so a run cut short is finished by the next."""
    rt = runtime()
    with database.watch("retention"), rt.factory() as session:
        out = retention.prune(session, rt.clock, retention_policy(rt.settings))
        return {
            "events_deleted": out.events_deleted,
            "events_rolled": out.events_rolled,
            "messages_cleared": out.messages_cleared,
            "batches": out.batches,
        }


@app.task(name="drip.triggers")
def triggers() -> dict | None:
    """Campaigns that enroll people by themselves: a course completed, a goal reached, a
    call asked for, a person event (campaigns.journeys.triggers). The next tick claims
    their first steps."""
    rt = runtime()
    report = None
    with database.watch("triggers"), transaction(rt.factory) as session:
        report = enroll_triggered(session, rt.clock, rt.registry, rt.policy)
    if report is None:  # the database was away: the next beat runs it again
        return None
    if report.total:
        log.info("triggers enrolled %s", report.enrolled)
    return report.enrolled


@app.task(name="drip.hits")
def hits() -> dict | None:
    """Record the opens and clicks the pages queued (workers.hit_queue); one drainer at a
    time, for a few seconds at most, so beat's next run finds the rest."""
    rt = runtime()
    queue = rt.hit_queue
    if queue is None:
        return None
    counts = None
    with database.watch("hits"):
        try:
            counts = queue.drain(rt.factory, rt.clock, rt.engagement, budget=5.0)
        except redis.RedisError as exc:
            hit_outage.failed("draining opens and clicks", exc)
            return None
        hit_outage.ok()
    if counts and any(counts.values()):
        log.info("hits recorded: %s", counts)
    return counts


def _send(task, channel: str, message_ids: list[int]) -> dict | None:
    try:
        batch = send_batch(runtime().send, channel, message_ids)
    except OperationalError as exc:
        if task.request.retries >= DB_RETRIES:
            database.failed(f"send_{channel}", exc)
            log.warning(
                "%s: gave up on %d message(s) after %d database retries; they stay queued "
                "for the reaper",
                channel,
                len(message_ids),
                DB_RETRIES,
            )
            return None
        database.failed(f"send_{channel}", exc)
        raise task.retry(
            countdown=db_retry_delay(task.request.retries), max_retries=DB_RETRIES
        ) from None
    database.ok()
    metrics.record_batch(channel, batch)
    report = vars(batch)
    report.pop("sent_delays")  # a task's answer stays small
    return report


@app.task(name="drip.send_email", bind=True)
def send_email(self, message_ids: list[int]) -> dict | None:
    return _send(self, "email", message_ids)


@app.task(name="drip.send_sms", bind=True)
def send_sms(self, message_ids: list[int]) -> dict | None:
    return _send(self, "sms", message_ids)
