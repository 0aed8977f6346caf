"""The scheduler's tick and the reaper's pass, as plain functions over a session factory.

`dispatch` is how work reaches the send queues; it is called only after the transaction
that created the work has committed (Celery's guide: enqueue after commit), so a worker
never picks up an id whose row it cannot see yet.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from campaigns.clock import Clock
from campaigns.db import transaction
from campaigns.delivery.claiming import claim_due, release_waiting
from campaigns.delivery.reaper import Held, reap
from campaigns.delivery.unconfirmed import SettlePolicy, flag_undecided, settle_unconfirmed
from campaigns.delivery.work import Work
from campaigns.sequences.registry import Registry
from campaigns.sequences.revisions import reconcile
from campaigns.sequences.timing import Policy

Dispatch = Callable[[Work], None]


def tick(
    factory: sessionmaker[Session],
    clock: Clock,
    registry: Registry,
    policy: Policy,
    dispatch: Dispatch,
    max_batches: int = 20,
) -> Work:
    total = Work()
    with transaction(factory) as session:
        # Edited sequences first, so nobody is claimed against a shape that is gone.
        reconcile(session, clock, registry, policy)
    with transaction(factory) as session:
        released = release_waiting(session, clock)
    dispatch(released)
    total.extend(released)
    for _ in range(max_batches):
        with transaction(factory) as session:
            work = claim_due(session, clock, registry, policy)
        dispatch(work)
        total.extend(work)
        total.claimed += work.claimed
        total.held += work.held
        if work.claimed < policy.claim_batch_size:
            break
    return total


def reap_pass(
    factory: sessionmaker[Session],
    clock: Clock,
    policy: Policy,
    providers: dict[str, object],
    dispatch: Dispatch,
    held: Held | None,
    settling: SettlePolicy | None = None,
) -> dict[str, int]:
    """One reaper pass; the counts, each under its own name, for one log line."""
    settling = settling or SettlePolicy()
    with transaction(factory) as session:
        reaped = reap(session, clock, policy, held)
    dispatch(reaped.requeued)
    with transaction(factory) as session:
        work, settled = settle_unconfirmed(session, clock, providers, settling)
    dispatch(work)
    with transaction(factory) as session:
        flagged = flag_undecided(session, clock, settling)
    return {
        "requeued": len(reaped.requeued),
        "from_dead_workers": reaped.from_dead_workers,
        "lease_expired": len(reaped.unconfirmed),
        **settled,
        "needs_ops": flagged,
    }
