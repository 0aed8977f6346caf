"""Experiments from a terminal: their part of `drip report`, and `drip campaigns promote`."""

from __future__ import annotations

from pathlib import Path

import click

from campaigns.content.promote import PromoteError
from campaigns.db import transaction
from campaigns.editing import promoting
from campaigns.staff import audited
from workers.cli.context import Drip, cli_actor, pass_drip

LABELS = {"opens": "opens", "clicks": "clicks", "call_requests": "call requests", "goals": "goals"}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _rate(r) -> str:
    if r is None or r.base == 0:
        return "-"
    return f"{r.count} {_pct(r.rate)} [{_pct(r.low)}-{_pct(r.high)}]"


def _share(r) -> str:
    return "(-)" if r.base == 0 else f"({_pct(r.rate)} [{_pct(r.low)}-{_pct(r.high)}])"


def experiment_lines(experiments) -> list[str]:
    """Per step with variants: each arm's counts and rates with their 95% intervals, and
    whether the arms differ; then the holdout against the messaged. None without any."""
    if experiments is None:
        return []
    out = ["", "experiments: counts, rate of sent and [95% interval, Wilson]"]
    for s in experiments.steps:
        out.append(f"{s.step_key}/{s.channel}:")
        for a in s.arms:
            weight = "" if a.weight is None else f" (weight {a.weight:g})"
            parts = "; ".join(f"{LABELS[m]} {_rate(getattr(a, m))}" for m in LABELS)
            out.append(f"  {a.name}{weight}: sent {a.sent}; {parts}")
        verdicts = "; ".join(f"{LABELS[m]} {v.sentence}" for m, v in s.verdicts.items())
        out.append(f"  difference: {verdicts}")
    h = experiments.holdout
    if h is not None:
        goal = experiments.goal_event or "the goal"
        out.append(
            f"holdout ({h.share * 100:g}% of the people, never messaged): {goal} reached by "
            f"{h.held_out.count} of {h.held_out.base} held out {_share(h.held_out)}, "
            f"{h.messaged.count} of {h.messaged.base} messaged {_share(h.messaged)}; "
            f"{h.verdict.sentence}"
        )
    return out


@click.command("promote")
@click.argument("campaign")
@click.argument("step")
@click.argument("variant")
@click.option("--dir", "folder", type=click.Path(exists=True, file_okay=False), default=None)
@click.option("--templates", type=click.Path(exists=True, file_okay=False), default=None)
@pass_drip
def campaigns_promote(drip: Drip, campaign, step, variant, folder, templates) -> None:
    """Give STEP of CAMPAIGN the copy of its VARIANT, with no variants left: publishes the
    next revision (or, with SEQUENCES_SOURCE=files or --dir, rewrites the campaign file),
    which the workers then take as any live edit."""
    s = drip.settings
    rt = drip.runtime()
    if s.sequences_source == "database" and not folder:
        # The campaign runs from its revisions: the winner becomes the next revision.
        try:
            with transaction(rt.factory) as session:
                done = promoting.promote_running(
                    session, rt.clock, cli_actor(), campaign, step, variant, s.templates_dir
                )
        except PromoteError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(done.sentence)
        return
    folder = Path(folder) if folder else s.definitions_dir
    path = next(
        (p for p in (folder / f"{campaign}.yaml", folder / f"{campaign}.yml") if p.is_file()), None
    )
    if path is None:
        raise click.ClickException(f"no campaign {campaign!r} in {folder}")
    try:
        with transaction(rt.factory) as session:
            done = audited.promote_variant(
                session,
                rt.clock,
                cli_actor(),
                path,
                Path(templates) if templates else s.templates_dir,
                step,
                variant,
            )
    except PromoteError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(done.sentence)
