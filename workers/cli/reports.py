"""`drip report`: the per-step funnel from a terminal (`drip contacts` is in contacts.py)."""

from __future__ import annotations

import json
from datetime import UTC, timedelta

import click

from campaigns.reporting.funnels import campaign_report
from workers.cli.context import Drip, pass_drip
from workers.cli.experiments import experiment_lines


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def table(headers: list[str], rows: list[list], right_from: int) -> list[str]:
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for n, row in enumerate(cells):
        parts = [
            c.rjust(widths[i]) if i >= right_from else c.ljust(widths[i]) for i, c in enumerate(row)
        ]
        out.append("  ".join(parts).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


@click.command("report")
@click.argument("campaign")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Only messages created on or after this day (UTC).",
)
@click.option(
    "--until",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Only messages created on or before this day (UTC).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_drip
def report_command(drip: Drip, campaign, since, until, as_json) -> None:
    """Per-step funnel of CAMPAIGN: created, sent, delivered, failed, engagement, rates."""
    rt = drip.runtime()
    start = since.replace(tzinfo=UTC) if since else None
    end = until.replace(tzinfo=UTC) + timedelta(days=1) if until else None
    try:
        with rt.factory() as session:
            report = campaign_report(session, rt.registry, campaign, start, end)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    for line in report_lines(report, since, until):
        click.echo(line)


def report_lines(report, since=None, until=None) -> list[str]:
    """`drip report` as lines of text (the demo's and `drip simulate`'s summaries too)."""
    out = []
    e = report.enrollments
    version = f" v{report.version}" if report.version else " (not deployed)"
    out.append(f"{report.name} ({report.campaign_key}{version})")
    if report.warning:
        out.append(f"warning: {report.warning}")
    if since or until:
        first = f"{since:%Y-%m-%d}" if since else "the start"
        last = f"{until:%Y-%m-%d}" if until else "now"
        out.append(f"messages created from {first} to {last} (UTC, inclusive)")
    out.append(
        f"enrollments: {e.enrolled} enrolled, {e.active} active, {e.paused} paused, "
        f"{e.completed} completed, {e.exited} exited"
    )
    for reason, n in e.exit_reasons:
        out.append(f"  exited: {reason}: {n}")
    headers = [
        "#",
        "step",
        "channel",
        "created",
        "sent",
        "deliv",
        "failed",
        "bounced",
        "suppr",
        "skipped",
        "flight",
        "opens u/t",
        "clicks u/t",
        "left out",
        "asks",
        "unsubs",
        "deliv%",
        "open%",
        "click%",
        "rates per",
    ]
    rows = [
        [
            s.position if s.position is not None else "-",
            s.step_key,
            s.channel,
            s.created,
            s.sent,
            s.delivered,
            s.failed,
            s.bounced,
            s.suppressed,
            s.skipped,
            s.in_flight_total,
            f"{s.opens}/{s.opens_total}",
            f"{s.clicks}/{s.clicks_total}",
            s.machine_opens + s.machine_clicks,
            s.contact_requests,
            s.unsubscribes,
            _pct(s.delivery_rate),
            _pct(s.open_rate),
            _pct(s.click_rate),
            s.rate_base,
        ]
        for s in report.steps
    ]
    out.append("")
    out.extend(table(headers, rows, right_from=3))
    notes = [
        (s, label, reasons)
        for s in report.steps
        for label, reasons in (("skipped", s.skip_reasons), ("suppressed", s.suppress_reasons))
        if reasons
    ]
    if notes:
        out.append("")
    for s, label, reasons in notes:
        text = "; ".join(f"{r} ({n})" for r, n in reasons)
        out.append(f"{s.step_key}/{s.channel} {label}: {text}")
    out.append("")
    out.extend(engagement_lines(report))
    out.extend(goal_lines(report.goals))
    out.extend(hold_lines(report.held))
    out.extend(experiment_lines(report.experiments))
    out.extend(answer_lines(report.answers))
    return out


def answer_lines(answers) -> list[str]:
    """The check-in questions' part of `drip report` (campaigns.reporting.answers)."""
    if answers is None:
        return []
    values = answers.values
    rows = [
        [
            s.position if s.position is not None else "-",
            s.step_key,
            s.answered,
            *s.counts,
            "-" if s.median is None else f"{s.median:g}",
        ]
        for s in answers.steps
    ]
    out = ["", "check-in answers (each person's latest answer per question; 0 = no pain):"]
    out.extend(table(["#", "step", "answered", *map(str, values), "median"], rows, right_from=2))
    c = answers.change
    if c is not None:
        median = "-" if c.median is None else f"{c.median:+g}"
        out.append(
            f"change from {c.first_step} to {c.last_step}, {c.people} people who answered "
            f"both: median {median}; lower {c.lower}, same {c.same}, higher {c.higher}"
        )
    return out


def engagement_lines(report) -> list[str]:
    """What the opens, clicks and rates count, what they leave out, and clicks per link."""
    out = [
        "opens and clicks u/t: unique (people) / total (every open or click); "
        "what a machine did is left out, and counted here"
    ]
    why = "; ".join(f"{r} {n}" for r, n in report.left_out)
    out.append(
        f"left out as a machine's: {report.machine_opens} open(s), "
        f"{report.machine_clicks} click(s)" + (f" ({why})" if why else "")
    )
    for channel, base in report.rate_bases.items():
        said = (
            "delivered (the provider reports deliveries)"
            if base == "delivered"
            else "sent (no delivery reports on this channel)"
        )
        out.append(f"{channel} rates divide by {said}")
    for s in report.steps:
        if s.links:
            shown = "; ".join(f"{li.label} {li.unique}/{li.total}" for li in s.links)
            out.append(f"{s.step_key}/{s.channel} clicks per link u/t: {shown}")
    return out


def _span(value) -> str:
    if value is None:
        return "-"
    minutes = int(value.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    return f"{days}d {rest // 60}h" if days else f"{rest // 60}h {rest % 60:02d}m"


def goal_lines(goals) -> list[str]:
    """The goal's part of `drip report` (campaigns.reporting.goals): none without a goal."""
    if goals is None:
        return []
    t = goals.time_to_goal
    out = [
        "",
        f"goal: {goals.event} (then {goals.then}): {goals.reached} of {goals.enrolled} "
        f"enrolled reached it ({_pct(goals.rate)}); {goals.before_any_step} before any step",
    ]
    if t.count:
        quartiles = (
            f", quartiles {_span(t.lower_quartile)} to {_span(t.upper_quartile)}"
            if t.lower_quartile is not None
            else ""
        )
        out.append(f"time to goal: median {_span(t.median)}{quartiles} ({t.count} people)")
        out.append("  " + "; ".join(f"{label} {n}" for label, n in t.spans))
    rows = [
        [
            s.position if s.position is not None else "-",
            s.step_key,
            s.channel,
            s.received,
            s.goals,
            _pct(s.rate),
        ]
        for s in goals.steps
    ]
    out.append("reached the goal after this step (the last one received before it):")
    out.extend(table(["#", "step", "channel", "received", "goals", "goal%"], rows, right_from=3))
    return out


def hold_lines(held) -> list[str]:
    """What the frequency cap held back (campaigns.reporting.holds), always said."""
    if not held.holds:
        return ["", "held by the frequency cap: none"]
    caps = "; ".join(f"{n} by the {cap} cap" for cap, n in sorted(held.by_cap.items()))
    out = [
        "",
        f"held by the frequency cap: {held.holds} hold(s) of {held.people} person(s) "
        f"({caps}); {held.still_held} still held, to be sent later (never dropped)",
    ]
    rows = [
        [s.position if s.position is not None else "-", s.step_key, s.holds, s.people, s.still_held]
        for s in held.steps
    ]
    out.extend(table(["#", "step", "holds", "people", "still held"], rows, right_from=2))
    return out
