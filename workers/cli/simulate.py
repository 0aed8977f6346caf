"""`drip simulate`: a course's timing for a cohort, before it ships, with nothing sent.

    drip simulate hip_and_back                                  # the deployed course, sample people
    drip simulate drafts/hip_and_back.yaml --cohort people.csv  # a draft, your own people
    drip simulate hip_and_back --cohort 200 --zone Asia/Kolkata --zone America/Chicago

The engine runs in this process on a throwaway database (campaigns.reporting.simulation);
the deployment's database, queues and providers are never touched.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import click

from campaigns.audience.subscribers import InvalidSubscriber, check_textable, check_timezone
from campaigns.care.contact_queue import request_contact
from campaigns.content.rendering import Renderer
from campaigns.intake.imports import (
    ImportFileError,
    RowError,
    map_header,
    parse_row,
    read_records,
)
from campaigns.reporting.simulation import DEFAULT_ZONES, generated_cohort, simulate
from campaigns.reporting.timelines import (
    lateness,
    lateness_lines,
    step_count_lines,
    step_counts,
    timeline_lines,
)
from campaigns.sequences.campaign import DefinitionError, parse_campaign
from campaigns.sequences.registry import Registry
from workers.cli.context import Drip, pass_drip
from workers.runtime import sender_from


@click.command("simulate")
@click.argument("campaign_or_file")
@click.option(
    "--cohort",
    default="sample",
    show_default=True,
    help="'sample' (the demo's people, doing what they do in the demo), a CSV file (email, "
    "phone, first_name, timezone, locale; consent columns honoured when present; opens: "
    "yes, no or step keys; asks_for_call: a step key; attr_<name>: attributes), or a "
    "number of people to generate across zones, channels and languages (by turns "
    "opening every email and none).",
)
@click.option("--days", default=45.0, show_default=True, help="How long to run the course.")
@click.option(
    "--zone",
    "zones",
    multiple=True,
    help="Put the cohort in this time zone (repeat to spread it across several, by turns). "
    f"Generated people default to {len(DEFAULT_ZONES)} zones around the world.",
)
@click.option(
    "--joined",
    type=click.DateTime(formats=["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d"]),
    default=None,
    help="When the cohort joins, in UTC (default: now).",
)
@click.option(
    "--show",
    type=int,
    default=None,
    help="How many people's timelines to print (default: all up to 20, else 10).",
)
@click.option("--templates", type=click.Path(exists=True, file_okay=False), default=None)
@pass_drip
def simulate_command(drip: Drip, campaign_or_file, cohort, days, zones, joined, show, templates):
    """Run CAMPAIGN_OR_FILE (a deployed campaign's key, or a sequence file such as a draft)
    for a cohort on the scheduling engine, sending nothing; print each person's timeline
    in their own time and the per-step counts."""
    rt = drip.runtime(needs_database=False)
    s = rt.settings
    if days <= 0 or days > 3660:
        raise click.BadParameter("give a number of days from 1 to 3660", param_hint="--days")
    for zone in zones:
        try:
            check_timezone(zone)
        except InvalidSubscriber as exc:
            raise click.BadParameter(str(exc), param_hint="--zone") from None
    templates_dir = Path(templates) if templates else s.templates_dir
    start = (joined.replace(tzinfo=UTC) if joined else datetime.now(UTC)).replace(
        second=0, microsecond=0
    )
    people, label = _cohort(cohort, zones, start, s.sms_countries)
    with tempfile.TemporaryDirectory(prefix="drip-simulate-defs-") as scratch:
        registry, key, source = _registry(
            campaign_or_file, s.definitions_dir, templates_dir, scratch
        )
        if cohort == "sample":
            _sample_doings(people, registry.get(key))
        renderer = Renderer(templates_dir, sender_from(s)) if templates else rt.renderer
        try:
            sim = simulate(
                registry,
                key,
                people,
                start=start,
                days=days,
                policy=rt.policy,
                renderer=renderer,
                signer=rt.signer,
                base_url=s.public_base_url,
                default_country=s.default_country,
                call_request=_call_request(registry),
            )
        except DefinitionError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(
        f"Simulating {key} v{sim.campaign.version} ({source}) for {len(people)} people "
        f"({label}), joining {start:%a %d %b %Y %H:%M} UTC, over {days:g} days. "
        "Nothing is sent."
    )
    for person, why in sim.rejected:
        who = person.get("email") or person.get("phone") or person.get("first_name")
        click.echo(f"  left out: {who}: {why}")
    limit = show if show is not None else (len(sim.timelines) if len(sim.timelines) <= 20 else 10)
    for timeline in sim.timelines[: max(0, limit)]:
        click.echo("")
        for line in timeline_lines(timeline):
            click.echo(line)
    if limit < len(sim.timelines):
        click.echo(f"\n(timelines of {limit} of {len(sim.timelines)} people; --show N for more)")
    click.echo("\nPer step and channel:")
    for line in step_count_lines(step_counts(sim.timelines)):
        click.echo(line)
    click.echo("")
    for line in lateness_lines(lateness(sim.timelines)):
        click.echo(line)
    if sim.still_in_course:
        click.echo(
            f"{sim.still_in_course} people still had steps to come after {days:g} days "
            "(--days to run longer)."
        )
    click.echo(
        "Providers are assumed to answer at once and never fail: rate limits, provider "
        "latency and outages are not simulated."
    )


def _call_request(registry: Registry):
    """How a simulated person asks for a call: the care team's own queue (which also
    pauses or ends the course as the campaign says)."""

    def ask(session, clock, visit):
        return request_contact(
            session,
            clock,
            registry,
            visit,
            preferred_channel="phone",
            preferred_time=None,
            note=None,
        )

    return ask


def _sample_doings(people: list[dict], course) -> None:
    from workers.demo_people import sample_doings

    doings = sample_doings(course)
    for person in people:
        person.update(doings.get(person.get("email") or person.get("phone"), {}))


def _registry(
    target: str, definitions_dir: Path, templates_dir: Path, scratch: str
) -> tuple[Registry, str, str]:
    """A registry holding the course to run: a file given (a draft) alone in a scratch
    folder, so it never mixes with what is deployed; else the deployed set."""
    path = Path(target)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise click.BadParameter(f"no such file: {target}", param_hint="CAMPAIGN_OR_FILE")
        try:
            campaign = parse_campaign(path, templates_dir)
        except DefinitionError as exc:
            raise click.ClickException(str(exc)) from None
        shutil.copyfile(path, Path(scratch) / f"{campaign.key}.yaml")
        return Registry(Path(scratch), templates_dir), campaign.key, str(path)
    registry = Registry(definitions_dir, templates_dir)
    try:
        known = registry.campaigns()
    except DefinitionError as exc:
        raise click.ClickException(str(exc)) from None
    if target not in known:
        names = ", ".join(sorted(known)) or "none"
        raise click.BadParameter(
            f"no deployed campaign {target!r} (deployed: {names}); give a key or a file",
            param_hint="CAMPAIGN_OR_FILE",
        )
    return registry, target, "deployed"


def _cohort(
    cohort: str, zones: tuple[str, ...], now: datetime, sms_countries: tuple[str, ...]
) -> tuple[list[dict], str]:
    if cohort == "sample":
        from workers.demo import SAMPLE_PEOPLE

        people, label = [dict(p) for p in SAMPLE_PEOPLE], "the demo's sample people"
    elif cohort.isdigit():
        try:
            people = generated_cohort(int(cohort), zones or DEFAULT_ZONES)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--cohort") from None
        return people, "generated"
    else:
        people, label = _read_csv(Path(cohort), now, sms_countries), cohort
    if zones:
        for person, zone in zip(people, _by_turns(zones, len(people)), strict=True):
            person["timezone"] = zone
        label += f", moved to {', '.join(zones)}"
    return people, label


def _by_turns(zones: tuple[str, ...], n: int) -> list[str]:
    return [zones[i % len(zones)] for i in range(n)]


def _read_csv(path: Path, now: datetime, sms_countries: tuple[str, ...]) -> list[dict]:
    """People from a CSV, checked as `drip import` checks them; a bad row is an error
    (a simulation of people other than the ones in the file would mislead)."""
    if not path.is_file():
        raise click.BadParameter(
            f"{path} is not a file, a number or 'sample'", param_hint="--cohort"
        )
    people = []
    problems = []
    try:
        with path.open("rb") as stream:
            header, records = read_records(stream)
            index, _ = map_header(header)
            consent_given = "consent_email" in index or "consent_sms" in index
            extra = _doing_columns(header)
            for line, fields, unreadable in records:
                try:
                    if unreadable:
                        raise RowError(unreadable)
                    row = parse_row(line, fields, index, header, now, sms_countries)
                    doings = _doings(fields, extra)
                    if row.phone and not consent_given:
                        # Texts assumed wanted: the number must be one we may text.
                        try:
                            check_textable(row.phone, sms_countries)
                        except InvalidSubscriber as exc:
                            raise RowError(str(exc)) from None
                except RowError as exc:
                    problems.append(f"line {line}: {exc}")
                    continue
                person = {
                    "first_name": row.first_name,
                    "email": row.email,
                    "phone": row.phone,
                    "timezone": row.timezone,
                    "locale": row.locale,
                }
                if consent_given:
                    person["consent"] = tuple(row.consent)
                person.update(doings)
                if row.attributes:
                    person["attributes"] = dict(row.attributes)
                people.append(person)
    except ImportFileError as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--cohort") from None
    if problems:
        raise click.ClickException(
            f"{path} has rows that cannot be read:\n  " + "\n  ".join(problems[:20])
        )
    if not people:
        raise click.BadParameter(f"{path} lists nobody", param_hint="--cohort")
    return people


def _doing_columns(header: list[str]) -> dict[str, int]:
    """Where the CSV says what people do: `opens` and `asks_for_call` (`drip import`
    ignores both)."""
    names = [h.strip().lower() for h in header]
    return {name: names.index(name) for name in ("opens", "asks_for_call") if name in names}


def _doings(fields: list[str], columns: dict[str, int]) -> dict:
    out: dict = {}
    if "opens" in columns:
        value = fields[columns["opens"]].strip()
        word = value.lower()
        if word in ("yes", "y", "true", "1", "all"):
            out["opens"] = True
        elif word in ("", "no", "n", "false", "0", "none"):
            out["opens"] = False
        else:
            keys = set(value.replace(",", " ").split())
            if not all(re.fullmatch(r"[a-z][a-z0-9_]{0,62}", k) for k in keys):
                raise RowError(f"opens: {value!r} is not yes, no or step keys")
            out["opens"] = keys
    if "asks_for_call" in columns:
        value = fields[columns["asks_for_call"]].strip()
        if value and not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", value):
            raise RowError(f"asks_for_call: {value!r} is not a step key")
        out["asks_for_call"] = value or None
    return out
