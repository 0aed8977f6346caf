"""What every report counts as sent: the provider took the message (sent, delivered,
bounced, or failed after the provider had accepted it: a webhook failure, so it has a
provider id or a sent_at). One clause, so the funnel, the experiments, the trend and the
cohorts count alike."""

from __future__ import annotations

from sqlalchemy import and_, or_

from campaigns.models import Message
from campaigns.states import MessageStatus


def accepted():
    return or_(
        Message.status.in_((MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.BOUNCED)),
        and_(
            Message.status == MessageStatus.FAILED,
            or_(Message.sent_at.is_not(None), Message.provider_message_id.is_not(None)),
        ),
    )
