"""`drip campaigns preview`: every step as the subscriber will see it, plus a timeline.

Files are written per locale: NN_step.html (the email as a browser shows it), NN_step.txt
(the plain-text part, with subject and preheader on top), NN_step.sms.txt (the text,
with its encoding and segment count), and timeline.txt: the local date and time each step
would reach someone who joins at a given moment in a given time zone, computed by the
same scheduling rules the workers use.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from campaigns.content.rendering import Recipient, Renderer
from campaigns.content.sms_text import segments
from campaigns.links import Signer, links_for
from campaigns.sequences.campaign import Campaign
from campaigns.sequences.timing import Policy, step_window
from campaigns.sequences.windows import next_allowed
from campaigns.states import CHANNELS, Channel


@dataclass(frozen=True)
class TimelineRow:
    number: int
    key: str
    channels: tuple[str, ...]
    at: datetime  # local time in the chosen zone


def timeline(
    campaign: Campaign, joined: datetime, zone: str, channels: tuple[str, ...], policy: Policy
) -> list[TimelineRow]:
    """When each step reaches someone who joins at `joined` and can receive `channels`."""
    tz = ZoneInfo(zone)
    rows, base = [], joined
    for step in campaign.steps:
        wanted = step.channels_for(channels)
        due = next_allowed(base + step.delay, step_window(campaign, wanted, policy), tz)
        rows.append(TimelineRow(step.index + 1, step.key, tuple(wanted), due.astimezone(tz)))
        base = due
    return rows


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
    for step in campaign.steps:
        stem = f"{step.index + 1:02d}_{step.key}"
        links = links_for(base_url, signer, f"preview-{step.key}")
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
    for title, channels in (("email and text", CHANNELS), ("text only", (Channel.SMS,))):
        lines += ["", f"{title}:"]
        lines += [
            f"{r.number:>2}. {r.at:%a %d %b %H:%M %Z}  {r.key:<16} {'+'.join(r.channels)}"
            for r in timeline(campaign, joined, zone, channels, policy)
        ]
    (folder / "timeline.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    written.append(folder / "timeline.txt")
    return written
