"""Work for the send queues: message ids, handed over only after the transaction that
created them has committed (Celery's guide: enqueue after commit)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Work:
    """Message ids to hand to the send queues once the transaction has committed."""

    email: list[int] = field(default_factory=list)
    sms: list[int] = field(default_factory=list)
    claimed: int = 0  # enrollments read, so the tick knows whether to claim again
    held: int = 0  # of those, how many waited: for their previous step (invariant 10), a
    # window a woken step needs, or the frequency cap (campaigns.delivery.frequency_cap)

    def add(self, channel: str, message_id: int) -> None:
        getattr(self, channel).append(message_id)

    def extend(self, other: Work) -> None:
        self.email.extend(other.email)
        self.sms.extend(other.sms)

    def __len__(self) -> int:
        return len(self.email) + len(self.sms)
