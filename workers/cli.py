"""The `drip` command."""

from __future__ import annotations

import json
import os
import sys

import click

from settings import SettingsError, get_settings


def _settings():
    try:
        return get_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def _runtime():
    from campaigns.migrate import SchemaError
    from workers.runtime import runtime

    _settings()
    try:
        return runtime()
    except SchemaError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def main() -> None:
    """Patient-education drip campaigns: scheduler, workers and tools."""


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations to DATABASE_URL."""
    from campaigns.migrate import upgrade

    s = _settings()
    upgrade(s.database_url)
    click.echo("database is at the latest schema")


@main.group()
def campaigns() -> None:
    """Sequence files: validate, lint, preview, test-send, diff."""


@campaigns.command("validate")
@click.option("--dir", "folder", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of campaign YAML files (default: DEFINITIONS_DIR).")
def campaigns_validate(folder) -> None:
    """Check every campaign file; name the file, step and field of each error."""
    from pathlib import Path

    from campaigns.sequences.campaign import DefinitionError, load_all

    s = _settings()
    try:
        found = load_all(Path(folder) if folder else s.definitions_dir, s.templates_dir)
    except DefinitionError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(1)
    for c in found.values():
        click.echo(f"ok: {c.key} v{c.version}: {len(c.steps)} steps, locales {', '.join(c.locales)}")


@campaigns.command("lint")
@click.option("--dir", "folder", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of campaign YAML files (default: DEFINITIONS_DIR).")
@click.option("--templates", type=click.Path(exists=True, file_okay=False), default=None,
              help="Templates folder (default: TEMPLATES_DIR).")
@click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors.")
def campaigns_lint(folder, templates, quiet) -> None:
    """Render every step, channel and locale and check it; exit 1 on any error."""
    from pathlib import Path

    from campaigns.content.lint import LintContext, lint_folder

    s = _settings()
    ctx = LintContext(Path(templates) if templates else s.templates_dir, s.public_base_url,
                      s.brand_name, s.postal_address)
    findings = lint_folder(Path(folder) if folder else s.definitions_dir, ctx)
    for f in findings:
        if not (quiet and f.severity == "info"):
            click.echo(str(f), err=f.severity == "error")
    errors = sum(f.severity == "error" for f in findings)
    warnings = sum(f.severity == "warning" for f in findings)
    click.echo(f"{errors} error(s), {warnings} warning(s)")
    sys.exit(1 if errors else 0)


@campaigns.command("preview")
@click.argument("campaign")
@click.option("--locale", default=None, help="Default: every locale of the campaign.")
@click.option("--first-name", default="Maria")
@click.option("--timezone", "zone", default=None, help="IANA zone for the timeline (default: DEFAULT_TIMEZONE).")
@click.option("--joined", default=None, help="When the sample person joins, ISO 8601 (default: now).")
@click.option("--out", default="preview", show_default=True)
def campaigns_preview(campaign, locale, first_name, zone, joined, out) -> None:
    """Write every step as the subscriber will see it, and when each would arrive."""
    from datetime import UTC, datetime
    from pathlib import Path

    from campaigns.sequences.campaign import DefinitionError, Registry
    from campaigns.content.preview import write_preview
    from campaigns.content.rendering import Renderer, RenderError, Sender
    from campaigns.delivery.claiming import Policy
    from campaigns.audience.subscribers import InvalidSubscriber, check_timezone

    s = _settings()
    try:
        c = Registry(s.definitions_dir, s.templates_dir).get(campaign)
        zone = check_timezone(zone) or s.default_timezone
        when = datetime.fromisoformat(joined) if joined else datetime.now(UTC)
        if when.tzinfo is None:
            from zoneinfo import ZoneInfo
            when = when.replace(tzinfo=ZoneInfo(zone))
        renderer = Renderer(s.templates_dir, Sender(s.brand_name, s.postal_address))
        for loc in ([locale] if locale else c.locales):
            if loc not in c.locales:
                raise click.ClickException(f"{campaign} has no locale {loc!r} (it has {', '.join(c.locales)})")
            files = write_preview(c, renderer, Path(out), locale=loc, first_name=first_name or None,
                                  zone=zone, joined=when, policy=Policy.from_settings(s), base_url=s.public_base_url)
            click.echo(f"{loc}: {len(files)} files in {files[0].parent}/")
            click.echo((files[0].parent / "timeline.txt").read_text())
    except (DefinitionError, RenderError, InvalidSubscriber, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


@campaigns.command("diff")
@click.argument("new_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--against", "old_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="An older copy of the file (default: the shape deployed in the database).")
def campaigns_diff(new_file, old_file) -> None:
    """Say what an edited campaign file changes and how many enrolled people each change affects."""
    from pathlib import Path

    from sqlalchemy import select

    from campaigns.sequences.campaign import DefinitionError, parse_campaign
    from campaigns.sequences.diffing import diff, people
    from campaigns.models import CampaignRevision
    from campaigns.sequences.revisions import structure
    rt = _runtime()
    try:
        new = parse_campaign(Path(new_file), rt.settings.templates_dir)
        old_campaign = parse_campaign(Path(old_file), rt.settings.templates_dir) if old_file else None
    except DefinitionError as exc:
        raise click.ClickException(str(exc)) from None
    with rt.factory() as session:
        if old_campaign is not None:
            old_shape, old_version, label = structure(old_campaign), old_campaign.version, old_file
        else:
            row = session.scalar(select(CampaignRevision).where(CampaignRevision.campaign_key == new.key)
                                 .order_by(CampaignRevision.id.desc()).limit(1))
            if row is None:
                raise click.ClickException(f"{new.key} has not been deployed yet; nothing to compare with")
            old_shape, old_version, label = row.structure, row.version, f"deployed revision {row.revision}"
        everyone = people(session, new.key)
    changes = diff(old_shape, new, everyone, old_campaign, old_version)
    click.echo(f"{new.key}: {label} -> {new_file}; {len(everyone)} people enrolled and not finished")
    for change in changes:
        click.echo(f"  {change}")
    if not changes:
        click.echo("  no changes to the sequence's shape or copy settings")


@campaigns.command("test-send")
@click.argument("campaign")
@click.argument("steps", nargs=-1)
@click.option("--email")
@click.option("--phone")
@click.option("--locale", default="en", show_default=True)
@click.option("--first-name", default="Maria", show_default=True)
@click.option("--force", is_flag=True, help="Send even to a suppressed address.")
def campaigns_test_send(campaign, steps, email, phone, locale, first_name, force) -> None:
    """Send STEPS (default: every step) of CAMPAIGN to your own address, marked [TEST]."""
    from campaigns.sequences.campaign import DefinitionError
    from campaigns.content.rendering import RenderError
    from campaigns.audience.subscribers import InvalidSubscriber
    from campaigns.content.testsend import SendTestRequest, send_test

    rt = _runtime()
    ctx = rt.send
    try:
        with rt.factory() as session:
            results = send_test(session, rt.registry, ctx.renderer, ctx.signer, ctx.base_url,
                                ctx.email_provider, ctx.sms_provider,
                                SendTestRequest(campaign, list(steps), locale, email, phone, first_name or None), force)
    except (DefinitionError, InvalidSubscriber, RenderError) as exc:
        raise click.ClickException(str(exc)) from None
    for r in results:
        click.echo(f"{r.outcome.value}: {r.provider_message_id or ''} {r.error or ''}".rstrip())
    if any(r.outcome.value != "accepted" for r in results):
        sys.exit(1)


@main.command()
@click.option("--campaign", required=True)
@click.option("--email")
@click.option("--phone")
@click.option("--first-name")
@click.option("--timezone", "tz")
@click.option("--locale")
def enroll(campaign, email, phone, first_name, tz, locale) -> None:
    """Add a subscriber (consenting to the channels given) and enroll them."""
    from campaigns.db import transaction
    from campaigns.sequences.campaign import DefinitionError
    from campaigns.delivery.claiming import enroll as do_enroll
    from campaigns.audience.subscribers import InvalidSubscriber, upsert_subscriber
    rt = _runtime()
    consent = tuple(c for c, v in (("email", email), ("sms", phone)) if v)
    try:
        with transaction(rt.factory) as session:
            sub = upsert_subscriber(session, rt.clock, email=email, phone=phone, first_name=first_name,
                                    timezone=tz, locale=locale, consent=consent, source="cli")
            e = do_enroll(session, rt.clock, rt.registry, sub, campaign, rt.policy, source="cli")
            click.echo(f"enrollment {e.id}: next step {e.next_step_key} due {e.next_due_at:%Y-%m-%d %H:%M} UTC")
    except (InvalidSubscriber, DefinitionError) as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--json", "as_json", is_flag=True)
def status(as_json) -> None:
    """Due backlog, oldest due age, outbox counts by status, queue depths."""
    from campaigns.reporting.overview import read_status
    from workers.queues import queue_depths
    rt = _runtime()
    with rt.factory() as session:
        st = read_status(session, rt.clock)
    depths = queue_depths(rt.settings)
    if as_json:
        click.echo(json.dumps({"due_backlog": st.due_backlog, "oldest_due_age_seconds": st.oldest_due_age_seconds,
                               "enrollments": st.enrollments, "messages": st.messages, "queues": depths}))
        return
    age = "-" if st.oldest_due_age_seconds is None else f"{st.oldest_due_age_seconds:.0f}s"
    click.echo(f"due backlog: {st.due_backlog} enrollments; oldest due: {age}")
    click.echo("enrollments: " + (", ".join(f"{k} {v}" for k, v in sorted(st.enrollments.items())) or "none"))
    click.echo("messages:    " + (", ".join(f"{k} {v}" for k, v in sorted(st.messages.items())) or "none"))
    click.echo("queues:      " + ", ".join(f"{k} {v}" for k, v in depths.items()))


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--queues", "-Q", default="schedule,email,sms,events", show_default=True)
@click.option("--concurrency", "-c", default=2, show_default=True)
@click.option("--beat", is_flag=True, help="Also run the scheduler in this process (one machine only).")
@click.pass_context
def worker(ctx, queues, concurrency, beat) -> None:
    """Run a Celery worker (add more processes or machines to scale out)."""
    _settings()
    args = [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", queues,
            "-c", str(concurrency), "-l", "info", "--without-mingle", "--without-gossip"]
    if beat:
        args += ["-B", "-s", str(_settings().broker_dir.parent / "celerybeat-schedule")]
    os.execv(sys.executable, args + list(ctx.args))


@main.command()
def beat() -> None:
    """Run the scheduler (exactly one per deployment)."""
    s = _settings()
    s.broker_dir.parent.mkdir(parents=True, exist_ok=True)
    os.execv(sys.executable, [sys.executable, "-m", "celery", "-A", "workers.app", "beat", "-l", "info",
                              "-s", str(s.broker_dir.parent / "celerybeat-schedule")])


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
@click.option("--workers", "processes", default=1, show_default=True)
def web(host, port, processes) -> None:
    """Run the web app: subscriber pages, provider webhooks, admin pages, /metrics, /healthz."""
    _settings()
    os.execv(sys.executable, [sys.executable, "-m", "uvicorn", "--factory", "web.app:create_app",
                              "--host", host, "--port", str(port), "--workers", str(processes),
                              "--proxy-headers", "--no-server-header"])


@main.group()
def channels() -> None:
    """Pause and resume a whole channel (a provider outage, a credential change)."""


@channels.command("list")
def channels_list() -> None:
    from campaigns.delivery.pauses import all_paused

    with _runtime().factory() as session:
        paused = all_paused(session)
    for row in paused:
        click.echo(f"{row.channel}: paused since {row.created_at:%Y-%m-%d %H:%M} UTC by {row.paused_by}: {row.reason}")
    if not paused:
        click.echo("no channel is paused")


@channels.command("pause")
@click.argument("channel", type=click.Choice(["email", "sms"]))
@click.option("--reason", required=True)
def channels_pause(channel, reason) -> None:
    """Stop sending on CHANNEL; messages wait, queued, until it is resumed."""
    from campaigns.delivery.pauses import pause
    from campaigns.db import transaction

    rt = _runtime()
    with transaction(rt.factory) as session:
        pause(session, rt.clock, channel, reason, by="ops")
    click.echo(f"{channel} paused")


@channels.command("resume")
@click.argument("channel", type=click.Choice(["email", "sms"]))
def channels_resume(channel) -> None:
    """Resume CHANNEL and hand its waiting messages back to the workers."""
    from campaigns.delivery.pauses import resume
    from campaigns.db import transaction
    from workers.tasks import dispatch

    rt = _runtime()
    with transaction(rt.factory) as session:
        work = resume(session, rt.clock, channel)
    dispatch(work)
    click.echo(f"{channel} resumed; {len(work)} waiting messages handed to the workers")


@main.group()
def outbox() -> None:
    """Inspect and settle outbox messages."""


@outbox.command("list")
@click.option("--status", "status_", default="unconfirmed", show_default=True)
@click.option("--limit", default=50, show_default=True)
def outbox_list(status_, limit) -> None:
    from sqlalchemy import select

    from campaigns.models import Message

    with _runtime().factory() as session:
        rows = session.scalars(select(Message).where(Message.status == status_).order_by(Message.id).limit(limit))
        for m in rows:
            click.echo(f"#{m.id} {m.campaign_key}/{m.step_key} {m.channel} attempts={m.attempts} "
                       f"provider_id={m.provider_message_id or '-'} reason={m.reason}")


@outbox.command("settle")
@click.argument("message_id", type=int)
@click.option("--as", "outcome", type=click.Choice(["sent", "failed", "resend"]), required=True)
def outbox_settle(message_id, outcome) -> None:
    """Decide an unconfirmed message after checking the provider's own logs."""
    from campaigns.db import transaction
    from campaigns.delivery.unconfirmed import OpsError, settle
    from workers.tasks import dispatch

    rt = _runtime()
    try:
        with transaction(rt.factory) as session:
            work = settle(session, rt.clock, message_id, outcome)
    except OpsError as exc:
        raise click.ClickException(str(exc)) from None
    dispatch(work)
    click.echo(f"message {message_id}: {outcome}")


@main.command()
@click.option("--seconds", default=60, show_default=True, help="Real seconds the four weeks take.")
@click.option("--workdir", default="var/demo", show_default=True)
def demo(seconds, workdir) -> None:
    """Run the whole hip-and-back sequence for sample subscribers, time compressed."""
    from workers.demo import run_demo

    sys.exit(run_demo(seconds=seconds, workdir=workdir))


from workers.cli_import import import_command
from workers.cli_reports import contacts_command, report_command

main.add_command(import_command)
main.add_command(report_command)
main.add_command(contacts_command)

if __name__ == "__main__":
    main()
