"""What a batch of people's conditions are judged on (campaigns.sequences.conditions):
read for the whole batch, one query per kind of fact, and only the kinds its conditions
use. The claim (campaigns.delivery.claiming) and the reconcile after a live edit
(campaigns.sequences.revisions) call it; a course without branches never does.

    engagement  opens and clicks per step of the enrollment (a machine's are left out:
                `events.automated`, a mail scanner fetching every link, a privacy proxy)
    calls       whether the person has asked the care team for a call (any request)
    person      language and attributes
    channels    what the person may be sent on now: from the consent and suppression
                facts every claim reads anyway (campaigns.audience.eligibility.Facts)
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.audience.eligibility import Facts, stop_for
from campaigns.db import id_in
from campaigns.engagement import engagement
from campaigns.models import ContactRequest, Message, Subscriber
from campaigns.sequences.campaign import Campaign
from campaigns.sequences.conditions import Situation, attribute_text
from campaigns.states import CHANNELS, EventType

ENGAGEMENT = (EventType.OPENED, EventType.CLICKED)


def read_situations(
    session: Session,
    people: list[tuple[int, object, Campaign]],
    facts: Facts,
    needs: set[str],
) -> dict[int, Situation]:
    """For each (enrollment id, subscriber, campaign): its Situation. `subscriber` is any
    object with the columns eligibility reads (id, email, phone, status); `needs` is the
    union of what the batch's conditions need (Condition.needs)."""
    if not people:
        return {}
    enrollment_ids = [eid for eid, _, _ in people]
    subscriber_ids = {sub.id for _, sub, _ in people}
    opened: dict[int, set[str]] = defaultdict(set)
    clicked: dict[int, set[str]] = defaultdict(set)
    if "engagement" in needs:
        # Raw events and the rollups of ones retention pruned: a branch on an old open
        # reads the same after the prune.
        ev = engagement(ENGAGEMENT)
        rows = session.execute(
            select(Message.enrollment_id, Message.step_key, ev.c.type)
            .join(ev, ev.c.message_id == Message.id)
            .where(
                id_in(session, Message.enrollment_id, enrollment_ids),
                ev.c.automated.is_(False),
            )
            .distinct()
        )
        for eid, step_key, kind in rows:
            # A click proves the open: many mail apps block the pixel.
            opened[eid].add(step_key)
            if kind == EventType.CLICKED:
                clicked[eid].add(step_key)
    called: set[int] = set()
    if "calls" in needs:
        called = set(
            session.scalars(
                select(ContactRequest.subscriber_id)
                .where(id_in(session, ContactRequest.subscriber_id, subscriber_ids))
                .distinct()
            )
        )
    details: dict[int, tuple[str | None, dict | None]] = {}
    if "person" in needs:
        details = {
            sid: (locale, attributes)
            for sid, locale, attributes in session.execute(
                select(Subscriber.id, Subscriber.locale, Subscriber.attributes).where(
                    id_in(session, Subscriber.id, subscriber_ids)
                )
            )
        }
    out = {}
    for eid, sub, campaign in people:
        locale, attributes = details.get(sub.id, (None, None))
        out[eid] = Situation(
            opened=frozenset(opened[eid]),
            clicked=frozenset(clicked[eid]),
            asked_for_call=sub.id in called,
            channels=frozenset(c for c in CHANNELS if stop_for(sub, c, facts) is None),
            locale=campaign.locale_for(locale),
            attributes={
                str(k): attribute_text(v) for k, v in (attributes or {}).items() if v is not None
            },
        )
    return out
