"""`drip campaigns preview`: every step as the subscriber will see it, plus a timeline.

Files are written per locale: NN_step.html (the email as a browser shows it), NN_step.txt
(the plain-text part, with subject and preheader on top), NN_step.sms.txt (the text,
with its encoding and segment count), and timeline.txt: the local date and time each step
would reach someone who joins at a given moment in a given time zone, computed by the
same scheduling rules the workers use; on a course with branches, once per path through
it (opens every email, opens none, asked for a call, text only...), with the steps each
path skips and why.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from campaigns.content.rendering import Recipient, Renderer
from campaigns.content.sms_text import segments
from campaigns.links import Signer, links_for
from campaigns.sequences.campaign import Campaign
from campaigns.sequences.conditions import Situation
from campaigns.sequences.timing import Policy, step_window
from campaigns.sequences.windows import next_allowed
from campaigns.states import CHANNELS, Channel


@dataclass(frozen=True)
class TimelineRow:
    number: int
    key: str
    channels: tuple[str, ...]
    at: datetime  # local time in the chosen zone
    skipped: str | None = None  # why the step does not go to this person (its condition)


@dataclass(frozen=True)
class Route:
    """One way through a course with branches: who the person is and what they do."""

    title: str
    channels: tuple[str, ...]
    opens: bool = True  # opens (and clicks in) every email as it arrives
    asked_for_call: bool = False  # asked for a call before the course began


def routes(campaign: Campaign) -> list[Route]:
    """The people a timeline shows. A straight course: someone with email and text, and
    someone with text only. A course with branches adds the paths its conditions tell
    apart: an email reader who never opens, someone who asked for a call, someone with
    email only."""
    both, text = tuple(CHANNELS), (Channel.SMS,)
    if not campaign.branches:
        return [Route("email and text", both), Route("text only", text)]
    needs, tests = set(), set()
    for step in campaign.steps:
        needs |= step.branch.needs()
        for condition in step.branch.conditions():
            tests |= {name for name, _ in _flat(condition)}
    out = [Route("email and text, opens every email", both)]
    if "engagement" in needs:
        out.append(Route("email and text, opens no email", both, opens=False))
    if "calls" in needs:
        out.append(Route("email and text, opens every email, asked for a call", both, True, True))
    if tests & {"has_channel", "lacks_channel"}:
        out.append(Route("email only, opens every email", (Channel.EMAIL,)))
    out.append(Route("text only", text))
    return out


def _flat(condition):
    for name, value in condition.tests:
        yield name, value
        if name in ("any", "all"):
            for inner in value:
                yield from _flat(inner)


def timeline(
    campaign: Campaign,
    joined: datetime,
    zone: str,
    channels: tuple[str, ...],
    policy: Policy,
    route: Route | None = None,
    locale: str | None = None,
) -> list[TimelineRow]:
    """When each step reaches someone who joins at `joined` and can receive `channels`,
    by the scheduler's rules; on a course with branches, for someone who behaves as
    `route` says (opens as each email arrives, so a wait for an open ends at once), in
    `locale`, with no attributes. A skipped step counts as having happened when it was
    due: the next step's delay counts from then, as in the engine."""
    tz = ZoneInfo(zone)
    route = route or Route("", channels)
    opened: set[str] = set()
    rows, base = [], joined
    for step in campaign.steps:
        wanted = step.channels_for(channels)
        window = step_window(campaign, wanted, policy)
        situation = Situation(
            opened=frozenset(opened),
            clicked=frozenset(opened),
            asked_for_call=route.asked_for_call,
            channels=frozenset(channels),
            locale=campaign.locale_for(locale),
        )
        delay = timedelta(0) if step.branch.wait_is_over(situation) else step.delay
        due = next_allowed(base + delay, window, tz)
        why_not = step.branch.why_not(situation)
        rows.append(
            TimelineRow(step.index + 1, step.key, tuple(wanted), due.astimezone(tz), why_not)
        )
        if why_not is None and route.opens and Channel.EMAIL in wanted:
            opened.add(step.key)
        base = due
    return rows


def timeline_lines(rows: list[TimelineRow]) -> list[str]:
    width = max([16, *(len(r.key) for r in rows)])
    return [
        f"{r.number:>2}. {r.at:%a %d %b %H:%M %Z}  {r.key:<{width}} "
        + (f"skipped ({r.skipped})" if r.skipped else "+".join(r.channels))
        for r in rows
    ]


def timeline_text(
    campaign: Campaign, locale: str, zone: str, joined: datetime, policy: Policy
) -> str:
    """timeline.txt: each route through the course, one after another."""
    lines = [
        (
            f"{campaign.name_for(locale)} (v{campaign.version}): someone joining "
            f"{joined.astimezone(ZoneInfo(zone)):%a %d %b %Y %H:%M} in {zone}"
        ),
        (
            f"send window: {campaign.window.describe()}; texts only "
            f"{policy.sms_window.start:%H:%M}-{policy.sms_window.end:%H:%M} local"
        ),
    ]
    branching = [s for s in campaign.steps if s.branch.conditional or s.wait_for]
    if branching:
        lines += ["", "branches:"]
        for step in branching:
            parts = [p for p in (step.branch.describe(),) if p]
            if step.wait_for:
                parts.insert(0, f"waits {step.wait_for.describe()}")
            lines.append(f"{step.index + 1:>2}. {step.key}: {'; '.join(parts)}")
    for route in routes(campaign):
        lines += ["", f"{route.title}:"]
        lines += timeline_lines(
            timeline(campaign, joined, zone, route.channels, policy, route, locale)
        )
    return "\n".join(lines) + "\n"


def sms_variants(step) -> list[bool]:
    """The texts a step can send, as `text_only` values: a companion to the email (False)
    when it texts alongside mail, and the whole lesson by text (True) when a person
    without mail can get it by text at all."""
    variants = []
    if Channel.SMS in step.channels and Channel.EMAIL in step.channels:
        variants.append(False)
    if Channel.SMS in step.sends_on:
        variants.append(True)
    return variants


def write_preview(
    campaign: Campaign,
    renderer: Renderer,
    out: Path,
    *,
    locale: str,
    first_name: str | None,
    zone: str,
    joined: datetime,
    policy: Policy,
    base_url: str,
) -> list[Path]:
    folder = out / campaign.key / locale
    folder.mkdir(parents=True, exist_ok=True)
    signer = Signer(b"preview")
    recipient = Recipient(first_name, locale)
    written = []
    texts_so_far = 0
    # Each arm of an experiment is previewed: 03_welcome.b.html beside 03_welcome.a.html.
    for step in (version for s in campaign.steps for version in s.versions):
        stem = f"{step.index + 1:02d}_{step.key}" + (f".{step.variant}" if step.variant else "")
        links = links_for(base_url, signer, f"preview-{step.key}", step.answer_values)
        if Channel.EMAIL in step.channels:
            email = renderer.email(campaign, step, recipient, links)
            (folder / f"{stem}.html").write_text(email.html, encoding="utf-8")
            # The pages it links to, which the message shows as our redirect's links.
            pages = "".join(f"\n  {lid}: {url}" for lid, url in email.links)
            (folder / f"{stem}.txt").write_text(
                f"Subject: {email.subject}\nPreheader: {email.preheader}\n\n{email.text}"
                + (f"\nLinks (through our redirect, /l/.../<id>):{pages}\n" if pages else ""),
                encoding="utf-8",
            )
            written += [folder / f"{stem}.html", folder / f"{stem}.txt"]
        for text_only in sms_variants(step):
            text = renderer.sms(
                campaign,
                step,
                replace(recipient, text_only=text_only),
                links,
                show_stop_help=texts_so_far % 4 == 0,
            )
            texts_so_far += 1
            encoding, count = segments(text)
            name = f"{stem}.text-only.sms.txt" if text_only else f"{stem}.sms.txt"
            (folder / name).write_text(
                f"{text}\n\n-- {len(text)} characters, {encoding}, {count} segment(s)\n",
                encoding="utf-8",
            )
            written.append(folder / name)
    (folder / "timeline.txt").write_text(
        timeline_text(campaign, locale, zone, joined, policy), encoding="utf-8"
    )
    written.append(folder / "timeline.txt")
    return written
