"""The operators' state-changing actions, each with its audit entry: one function per
action, called alike by the workspace (web/admin.py, as the signed-in staff member) and
by the CLI (as `cli:<os user>`), so an action leaves the same entry whichever way it was
done. The caller owns the transaction; the change and its entry commit together.

    promote_variant   campaign.promote     campaign_step  variants before, the winner after
    handle_inbox_item inbox.handle         inbox_item     status, handled_by (+ action)
    settle_message    message.settle       message        status, reason_code (+ outcome)
    settle_all        message.settle_all   outbox         how many, outcome, window
    pause_channel     channel.pause        channel        paused, reason, paused_by
    resume_channel    channel.resume       channel        paused, how many re-queued
    create_api_key    api_key.create       api_key        name and prefix, never the key
    revoke_api_key    api_key.revoke       api_key        revoked_at

An action that changes nothing (pausing a paused channel, the same inbox button twice)
writes no entry. These sit here, above the parts they call (delivery, tracking, content,
api_keys), rather than in each of them: those parts stay free of who acts, and the
automatic callers (a provider outage pausing a channel) are not staff actions.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from campaigns.api_keys import KeyInfo, NewKey, create_key, revoke_key
from campaigns.clock import Clock
from campaigns.content.promote import Promoted, PromoteError, promote
from campaigns.delivery import pauses
from campaigns.delivery.unconfirmed import Selection, settle, settle_many
from campaigns.delivery.work import Work
from campaigns.models import InboxItem, Message, is_row_id
from campaigns.sequences.campaign import DefinitionError, parse_campaign
from campaigns.staff import audit
from campaigns.staff.audit import Actor
from campaigns.states import MessageStatus
from campaigns.tracking import inbox


def _fields(session: Session, model, key, *names: str) -> dict | None:
    """The named fields of one row as the audit log keeps them (None: no such row)."""
    row = session.get(model, key)
    if row is None:
        return None
    return {n: _plain(getattr(row, n)) for n in names}


def _plain(value):
    return value.isoformat() if isinstance(value, datetime) else value


def promote_variant(
    session: Session,
    clock: Clock,
    actor: Actor,
    path: Path,
    templates_dir: Path,
    step: str,
    variant: str,
) -> Promoted:
    """PromoteError when it cannot be done. The file is the change and has no transaction;
    the entry follows it at once."""
    try:
        arms = [v.name for s in parse_campaign(path, templates_dir).steps if s.key == step
                for v in s.variants]  # fmt: skip
    except DefinitionError as exc:
        raise PromoteError(str(exc)) from None
    done = promote(path, templates_dir, step, variant, clock.now().date())
    audit.record(
        session,
        clock,
        actor,
        "campaign.promote",
        "campaign_step",
        f"{done.campaign}/{done.step_key}",
        {"variants": arms},
        {"variants": [], "promoted": done.variant, "review_kept": done.review_kept},
    )
    return done


def handle_inbox_item(
    session: Session, clock: Clock, actor: Actor, item_id: int | str, action: str
) -> InboxItem:
    """InboxError for an unknown item or action."""
    fields = ("status", "handled_by")
    text = str(item_id)
    key = int(text) if text.isascii() and text.isdigit() else 0
    before = _fields(session, InboxItem, key, *fields) if is_row_id(key) else None
    item = inbox.handle(session, clock, item_id, action, by=actor.by)
    after = _fields(session, InboxItem, item.id, *fields)
    if before != after:  # the same button twice changes nothing the second time
        audit.record(
            session,
            clock,
            actor,
            "inbox.handle",
            "inbox_item",
            item.id,
            before,
            {**after, "action": action},
        )
    return item


def settle_message(
    session: Session, clock: Clock, actor: Actor, message_id: int, outcome: str
) -> Work:
    """OpsError for a message that is not unconfirmed or an unknown outcome."""
    fields = ("status", "reason_code")
    before = _fields(session, Message, message_id, *fields) if is_row_id(message_id) else None
    work = settle(session, clock, message_id, outcome)
    audit.record(
        session,
        clock,
        actor,
        "message.settle",
        "message",
        message_id,
        before,
        {**_fields(session, Message, message_id, *fields), "outcome": outcome},
    )
    return work


def settle_all(
    session: Session, clock: Clock, actor: Actor, selection: Selection, outcome: str
) -> tuple[int, Work]:
    """Settle what the selection takes; one entry for the lot (none when it took none)."""
    settled, work = settle_many(session, clock, selection, outcome)
    if settled:
        minutes = selection.older_than.total_seconds() / 60
        audit.record(
            session,
            clock,
            actor,
            "message.settle_all",
            "outbox",
            selection.channel or "all",
            {"status": MessageStatus.UNCONFIRMED.value, "count": settled},
            {
                "outcome": outcome,
                "count": settled,
                "older_than_minutes": int(minutes) if minutes.is_integer() else minutes,
                "as_of": (selection.as_of or clock.now()).isoformat(),
            },
        )
    return settled, work


def _pause_fields(row) -> dict:
    if row is None:
        return {"paused": False}
    return {"paused": True, "reason": row.reason, "paused_by": row.paused_by}


def pause_channel(session: Session, clock: Clock, actor: Actor, channel: str, reason: str) -> None:
    """UncleanText for a reason holding a control character; a paused channel stays as
    it was paused."""
    before = _pause_fields(pauses.paused(session, channel))
    pauses.pause(session, clock, channel, reason, by=actor.by)
    if not before["paused"]:
        audit.record(
            session,
            clock,
            actor,
            "channel.pause",
            "channel",
            channel,
            before,
            _pause_fields(pauses.paused(session, channel)),
        )


def resume_channel(session: Session, clock: Clock, actor: Actor, channel: str) -> tuple[bool, Work]:
    """(whether it was paused, its waiting messages to hand to the workers after commit)."""
    before = _pause_fields(pauses.paused(session, channel))
    work = pauses.resume(session, clock, channel)
    if before["paused"]:
        audit.record(
            session,
            clock,
            actor,
            "channel.resume",
            "channel",
            channel,
            before,
            {"paused": False, "requeued": len(work)},
        )
    return before["paused"], work


def create_api_key(session: Session, clock: Clock, actor: Actor, name: str) -> NewKey:
    """ApiKeyError for a missing or unclean name. The entry keeps the prefix, never the key."""
    made = create_key(session, clock, name)
    audit.record(
        session,
        clock,
        actor,
        "api_key.create",
        "api_key",
        made.id,
        None,
        {"name": made.name, "prefix": made.prefix},
    )
    return made


def revoke_api_key(
    session: Session, clock: Clock, actor: Actor, key_id: int | str
) -> tuple[KeyInfo, bool]:
    """ApiKeyError for an unknown key; (the key, False) and no entry when already revoked."""
    key, changed = revoke_key(session, clock, key_id)
    if changed:
        audit.record(
            session,
            clock,
            actor,
            "api_key.revoke",
            "api_key",
            key.id,
            {"prefix": key.prefix, "revoked_at": None},
            {"prefix": key.prefix, "revoked_at": _plain(key.revoked_at)},
        )
    return key, changed
