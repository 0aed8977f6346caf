"""Everything the results page shows for one campaign and one set of filters, read in one
session: the campaign report (steps, links, goal, holds, experiments, answers), the trend,
the cohorts and the filters' choices. The page (web/results.py) and its CSV exports call
`results`, so a CSV says what the page says.

Results hold counts only, never a person: exporting them needs no audit entry (the audit
log records reads of people, campaigns.people.export; these name nobody).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from campaigns.reporting.cohorts import CohortReport, cohorts
from campaigns.reporting.filters import FilterOptions, Filters, filter_options
from campaigns.reporting.funnels import CampaignReport, campaign_report, load_campaigns
from campaigns.reporting.trends import Trend, trend
from campaigns.sequences.registry import Registry


@dataclass
class Results:
    report: CampaignReport
    trend: Trend
    cohorts: CohortReport
    options: FilterOptions


def results(session: Session, registry: Registry, key: str, filters: Filters) -> Results:
    """Raise LookupError for a campaign neither deployed nor in the database."""
    report = campaign_report(session, registry, key, filters.start, filters.end, filters)
    campaign = load_campaigns(registry)[0].get(key)
    return Results(
        report,
        trend(session, key, filters),
        cohorts(session, campaign, key, filters),
        filter_options(session, key),
    )
