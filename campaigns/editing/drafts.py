"""A campaign's draft: a whole copy of its running files, edited in the workspace and
published as the next revision.

    open_draft(session, clock, actor, key)         -> the draft (a copy of what runs)
    get_draft(session, key)                        -> the draft, or None
    draft_state(session, key)                      -> DraftState (base, running, stale...)
    save_draft(session, clock, actor, key, bundle, what)
    discard_draft(session, clock, actor, key)
    restart_draft(session, clock, actor, key)      -> a fresh copy of what runs now
    sign_reviews(session, clock, actor, key, steps, by, shared, today) -> [Signed]
    publish_draft(session, clock, actor, key, ctx, shared, require_review=...)
    rollback_checked(session, clock, actor, key, number, ctx, shared, require_review=...)

One draft per campaign, shared by the marketers who edit it. A draft remembers the
revision it began from (`base_number`): a publish after someone else's is refused
(campaigns.sequences.store.publish's `expect_head`), and the editor offers to start again
from what runs. Every state change is written to the audit log in the same transaction,
with ids, revision numbers and field names, never the copy itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.content.lint import LintContext
from campaigns.content.review import ReviewError, Signed, record_reviews
from campaigns.editing.publishing import Check, publish_checked
from campaigns.models import SequenceDraft
from campaigns.sequences import store
from campaigns.sequences.bundles import MAX_BUNDLE_BYTES, Bundle, scratch
from campaigns.sequences.store import Published, PublishError
from campaigns.staff.audit import Actor, record


class DraftError(ValueError):
    """A draft action refused: no such campaign, no draft, a draft of a revision that no
    longer runs. The message says what to do."""


@dataclass(frozen=True)
class DraftState:
    key: str
    running: int | None  # the revision that runs now
    draft: SequenceDraft | None
    base: int | None  # the revision the draft began from
    changed: bool  # the draft's files differ from its base's

    @property
    def digest(self) -> str:
        """The draft's files as this page shows them: a sign or publish form sends it
        back, so what is signed or published is what the person looked at."""
        return store.bundle_of(self.draft).digest if self.draft is not None else ""

    @property
    def stale(self) -> bool:
        """Someone published after this draft began: publishing it would undo that."""
        return self.draft is not None and self.base != self.running


CHANGED_SINCE_SEEN = (
    "the draft was saved since this page was opened: look at it again before {what}"
)


def get_draft(session: Session, key: str) -> SequenceDraft | None:
    return session.get(SequenceDraft, key)


def draft_state(session: Session, key: str) -> DraftState:
    head = store.head(session, key)
    draft = get_draft(session, key)
    base = store.revision(session, key, draft.base_number) if draft else None
    changed = draft is not None and (
        base is None or store.bundle_of(draft).digest != store.bundle_of(base).digest
    )
    return DraftState(
        key, head.number if head else None, draft, draft.base_number if draft else None, changed
    )


def _running(session: Session, key: str):
    head = store.head(session, key)
    if head is None:
        raise DraftError(f"no campaign {key!r} runs from the database")
    return head


def open_draft(session: Session, clock: Clock, actor: Actor, key: str) -> SequenceDraft:
    """The campaign's draft: the one open already, else a new copy of what runs."""
    existing = get_draft(session, key)
    if existing is not None:
        return existing
    head = _running(session, key)
    draft = SequenceDraft(
        campaign_key=key,
        base_number=head.number,
        file_name=head.file_name,
        definition=head.definition,
        templates=dict(head.templates or {}),
        created_by=actor.by,
        updated_by=actor.by,
        updated_at=clock.now(),
    )
    session.add(draft)
    session.flush()
    record(
        session, clock, actor, "sequence.draft.open", "campaign", key, None, {"base": head.number}
    )
    return draft


def _draft(session: Session, key: str) -> SequenceDraft:
    draft = get_draft(session, key)
    if draft is None:
        raise DraftError(f"{key} has no draft: start one from the running revision")
    return draft


def save_draft(
    session: Session, clock: Clock, actor: Actor, key: str, bundle: Bundle, what: dict
) -> SequenceDraft:
    """Keep `bundle` (an edit of the draft's files) as the draft. `what` says in the audit
    entry what was edited (a step key and field names: never the copy)."""
    draft = _draft(session, key)
    before = store.bundle_of(draft).digest
    if bundle.digest == before:
        return draft  # nothing changed: no entry
    _keep(session, clock, actor, draft, bundle)
    record(
        session,
        clock,
        actor,
        "sequence.draft.save",
        "campaign",
        key,
        {"base": draft.base_number, "digest": before[:16]},
        {**what, "digest": bundle.digest[:16]},
    )
    return draft


def _keep(session: Session, clock: Clock, actor: Actor, draft, bundle: Bundle) -> None:
    if bundle.size > MAX_BUNDLE_BYTES:
        raise DraftError(f"{draft.campaign_key}: the files would be over {MAX_BUNDLE_BYTES} bytes")
    draft.definition = bundle.definition
    draft.templates = dict(bundle.templates)
    draft.updated_by = actor.by
    draft.updated_at = clock.now()
    session.flush()


def discard_draft(session: Session, clock: Clock, actor: Actor, key: str) -> bool:
    draft = get_draft(session, key)
    if draft is None:
        return False
    base = draft.base_number
    session.delete(draft)
    session.flush()
    record(session, clock, actor, "sequence.draft.discard", "campaign", key, {"base": base}, None)
    return True


def restart_draft(session: Session, clock: Clock, actor: Actor, key: str) -> SequenceDraft:
    """Drop the draft (a stale one, typically) and start again from what runs now."""
    _running(session, key)
    discard_draft(session, clock, actor, key)
    return open_draft(session, clock, actor, key)


def sign_reviews(
    session: Session,
    clock: Clock,
    actor: Actor,
    key: str,
    steps: list[str],
    by: str,
    shared: Path,
    today: date,
    seen: str | None = None,
) -> list[Signed]:
    """A clinician's review of the draft's copy, written into its definition as
    `drip campaigns review` writes it into a file (the same checks: "Name, credential",
    known steps). `seen`: the digest of the draft the reviewer read; signing is refused
    if it was saved since. Raises ReviewError."""
    draft = _draft(session, key)
    bundle = store.bundle_of(draft)
    if seen is not None and seen != bundle.digest:
        raise ReviewError(CHANGED_SINCE_SEEN.format(what="signing"))
    with scratch(bundle, shared) as (path, templates):
        signed = record_reviews(path, templates, steps, by, today, today)
        definition = path.read_text(encoding="utf-8")
    _keep(session, clock, actor, draft, bundle.replace(definition=definition))
    # The reviewer's name is who vouched, not copy: the log keeps it.
    record(
        session,
        clock,
        actor,
        "sequence.draft.review",
        "campaign",
        key,
        None,
        {"steps": [s.step_key for s in signed], "by": signed[0].by if signed else ""},
    )
    return signed


def publish_draft(
    session: Session,
    clock: Clock,
    actor: Actor,
    key: str,
    ctx: LintContext,
    shared: Path,
    *,
    require_review: bool,
    note: str | None = None,
    check: Check | None = None,
    seen: str | None = None,
) -> Published:
    """The draft becomes the running revision (checked by the lint and, with
    `require_review`, the clinical review), and the draft is closed. PublishError says
    why not; a draft of a revision that no longer runs is refused (restart it), and so is
    one saved since the publisher looked at it (`seen`, its digest then)."""
    draft = _draft(session, key)
    if seen is not None and seen != store.bundle_of(draft).digest:
        raise PublishError([CHANGED_SINCE_SEEN.format(what="publishing")])
    done = publish_checked(
        session,
        clock,
        actor,
        store.bundle_of(draft),
        ctx,
        shared,
        source="browser",
        note=note,
        expect_head=draft.base_number,
        require_review=require_review,
        check=check,
    )
    session.delete(draft)
    session.flush()
    return done


def rollback_checked(
    session: Session,
    clock: Clock,
    actor: Actor,
    key: str,
    number: int,
    ctx: LintContext,
    shared: Path,
    *,
    require_review: bool,
    note: str | None = None,
) -> Published:
    """Run an earlier revision's files again, as the next revision, through the same
    checks as a publish. An open draft stays (it is now stale: it began before this)."""
    old = store.revision(session, key, number)
    if old is None:
        raise PublishError([f"{key} has no revision {number}"])
    head = _running(session, key)
    if head.number == number:
        raise PublishError([f"{key}: revision {number} is the one running"])
    return publish_checked(
        session,
        clock,
        actor,
        store.bundle_of(old),
        ctx,
        shared,
        source="rollback",
        note=note or f"rollback to revision {number}",
        expect_head=head.number,
        require_review=require_review,
    )
