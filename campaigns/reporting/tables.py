"""The results page's tables as rows, for its CSV exports (web/results.py): one function
per table, each a header of names that say what the column counts and the rows under it,
read from the same reports the page shows, so a CSV says what the page says.

Rates are fractions (0.5 is half), empty where there is nothing to divide by.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from campaigns.reporting.cohorts import CohortReport
from campaigns.reporting.funnels import CampaignReport
from campaigns.reporting.trends import Trend

Table = tuple[list[str], Iterable[Sequence[object]]]


def steps(report: CampaignReport, **_) -> Table:
    header = [
        *("step_number", "step", "channel", "created", "sent", "delivered", "failed"),
        *("bounced", "suppressed", "skipped", "in_flight", "opens_people", "opens_all"),
        *("clicks_people", "clicks_all", "left_out_machine_opens", "left_out_machine_clicks"),
        *("call_requests", "unsubscribes", "delivery_rate", "open_rate", "click_rate"),
        "rates_per",
    ]
    rows = (
        [
            *(s.position, s.step_key, s.channel, s.created, s.sent, s.delivered, s.failed),
            *(s.bounced, s.suppressed, s.skipped, s.in_flight_total, s.opens, s.opens_total),
            *(s.clicks, s.clicks_total, s.machine_opens, s.machine_clicks, s.contact_requests),
            *(s.unsubscribes, s.delivery_rate, s.open_rate, s.click_rate, s.rate_base),
        ]
        for s in report.steps
    )
    return header, rows


def links(report: CampaignReport, **_) -> Table:
    header = ["step_number", "step", "channel", "link", "clicks_people", "clicks_all"]
    rows = (
        [s.position, s.step_key, s.channel, li.label, li.unique, li.total]
        for s in report.steps
        for li in s.links
    )
    return header, rows


def trend(report: CampaignReport, trend: Trend, **_) -> Table:
    header = [f"{trend.grain}_starting", "sent", "opens_people", "clicks_people", "call_requests"]
    rows = ([p.start.isoformat(), p.sent, p.opens, p.clicks, p.call_requests] for p in trend.points)
    return header, rows


def cohorts(report: CampaignReport, cohorts: CohortReport, **_) -> Table:
    counts = ("reached", "reached_last", "opened", "clicked", "asked", "completed", "exited")
    names = {
        "reached": "got_a_message",
        "reached_last": f"got_last_step_{cohorts.last_step or ''}".rstrip("_"),
        "asked": "asked_for_a_call",
    }
    header = ["iso_week", "week_starting", "enrolled"]
    for c in counts:
        header += [names.get(c, c), f"{names.get(c, c)}_rate"]
    rows = (
        [
            r.iso_week,
            r.week.isoformat(),
            r.enrolled,
            *(v for c in counts for v in (getattr(r, c), r.share(c))),
        ]
        for r in cohorts.rows
    )
    return header, rows


def goal(report: CampaignReport, **_) -> Table:
    header = ["step_number", "step", "channel", "received", "goals_after_it", "goal_rate"]
    g = report.goals
    rows = (
        [s.position, s.step_key, s.channel, s.received, s.goals, s.rate]
        for s in (g.steps if g else [])
    )
    return header, rows


def held(report: CampaignReport, **_) -> Table:
    header = ["step_number", "step", "holds", "people", "still_held"]
    rows = ([s.position, s.step_key, s.holds, s.people, s.still_held] for s in report.held.steps)
    return header, rows


def experiments(report: CampaignReport, **_) -> Table:
    measures = ("opens", "clicks", "call_requests", "goals")
    header = ["step", "channel", "variant", "weight", "sent"]
    for m in measures:
        header += [m, f"{m}_rate", f"{m}_rate_low", f"{m}_rate_high", f"{m}_difference"]
    rows = []
    for s in report.experiments.steps if report.experiments else []:
        for a in s.arms:
            row: list[object] = [s.step_key, s.channel, a.name, a.weight, a.sent]
            for m in measures:
                r = getattr(a, m)
                verdict = s.verdicts.get(m)
                row += [r.count, r.rate, r.low, r.high] if r is not None else [None] * 4
                row.append(verdict.sentence if verdict else None)
            rows.append(row)
    return header, rows


def answers(report: CampaignReport, **_) -> Table:
    a = report.answers
    values = a.values if a else []
    header = ["step_number", "question_step", "answered", *(f"answer_{v}" for v in values)]
    header.append("median")
    rows = (
        [s.position, s.step_key, s.answered, *s.counts, s.median] for s in (a.steps if a else [])
    )
    return header, rows


# name in the URL (/admin/campaigns/{key}/export/{name}.csv) -> the table
TABLES: dict[str, Callable[..., Table]] = {
    "steps": steps,
    "trend": trend,
    "cohorts": cohorts,
    "links": links,
    "goal": goal,
    "held": held,
    "experiments": experiments,
    "answers": answers,
}
