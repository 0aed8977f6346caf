"""What is deployed: the latest revision of a campaign's shape recorded in the database
(`drip campaigns diff` compares an edited file against it)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.models import CampaignRevision


def latest_revision(session: Session, campaign_key: str) -> CampaignRevision | None:
    """The revision recorded last for this campaign, or None if it was never deployed."""
    return session.scalar(select(CampaignRevision).where(CampaignRevision.campaign_key == campaign_key)
                          .order_by(CampaignRevision.id.desc()).limit(1))
