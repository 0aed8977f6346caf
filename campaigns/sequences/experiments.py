"""Who gets which variant of a step, and who is held out of a campaign.

Both are worked out from the enrollment's id and names in the campaign file, never drawn
at random, so every worker, every retry and every re-render agrees without asking the
database, and a person keeps their arm however often it is asked:

    variant_for(campaign, step, enrollment_id) -> the arm's name, or None (no variants)
    held_out(campaign, enrollment_id)           -> True for the campaign's holdout share

The point is SHA-256 over "<salt>:<enrollment id>", read as a number in [0, 1); the
arms take the weights' shares of that line in file order. The salt is the step's
`experiment` (default "<campaign>.<step>"), so two experiments on two steps split people
independently, and a new `experiment` name starts a new split. The claim records the arm
on the outbox row (messages.variant); what is rendered again later (read online, /l/
redirects, a report) reads it there, so an edit of the weights never moves a message
that was already written to another arm.
"""

from __future__ import annotations

import hashlib

from campaigns.sequences.campaign import Campaign, Step


def point(salt: str, enrollment_id: int) -> float:
    """A fixed point in [0, 1) for this salt and enrollment."""
    digest = hashlib.sha256(f"{salt}:{enrollment_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def salt_of(campaign: Campaign, step: Step) -> str:
    return step.experiment or f"{campaign.key}.{step.key}"


def variant_for(campaign: Campaign, step: Step, enrollment_id: int) -> str | None:
    if not step.variants:
        return None
    total = sum(v.weight for v in step.variants)
    at = point(salt_of(campaign, step), enrollment_id) * total
    for arm in step.variants:
        if at < arm.weight:
            return arm.name
        at -= arm.weight
    return step.variants[-1].name  # float rounding at the very end of the line


def held_out(campaign: Campaign, enrollment_id: int) -> bool:
    return campaign.holdout > 0 and point(f"{campaign.key}.holdout", enrollment_id) < (
        campaign.holdout
    )
