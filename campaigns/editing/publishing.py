"""What must hold before a campaign's files run for patients, whoever publishes them
(the workspace's editor, `drip campaigns push`, a rollback, an experiment's winner):

    check_bundle(bundle, ctx, known_keys)  -> Check: the lint's findings on these files,
                                              rendered for every step, channel and locale
    publish_checked(session, clock, actor, bundle, ctx, ...) -> Published, or PublishError

A publish is refused on any lint error, and (with `require_review`, the setting
PUBLISH_REQUIRES_REVIEW) while a step's copy has no current clinical review: the same
rule `drip campaigns lint --strict` enforces on the files in CI and in the image build.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.content.lint import Finding, LintContext, lint_campaign, lint_triggers
from campaigns.sequences.bundles import Bundle, scratch
from campaigns.sequences.campaign import Campaign, DefinitionError, parse_campaign
from campaigns.sequences.store import Published, PublishError, heads, publish
from campaigns.staff.audit import Actor


@dataclass(frozen=True)
class Check:
    campaign: Campaign | None  # None: the files do not parse (see findings)
    findings: list[Finding]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def for_step(self, key: str) -> list[Finding]:
        """A step's findings, its experiment arms' included ("welcome variant story")."""
        return [f for f in self.findings if f.step == key or f.step.startswith(f"{key} ")]

    @property
    def general(self) -> list[Finding]:
        return [f for f in self.findings if not f.step]


def check_bundle(
    bundle: Bundle, ctx: LintContext, shared_templates: Path, known_keys: set[str]
) -> Check:
    """Lint the bundle's files as `drip campaigns lint` lints a folder. `ctx.templates_dir`
    is replaced by the bundle's own; `known_keys` are the campaigns its triggers may name."""
    with scratch(bundle, shared_templates) as (path, templates):
        try:
            campaign = parse_campaign(path, templates)
        except DefinitionError as exc:
            return Check(
                None,
                [
                    Finding("error", bundle.file_name, "", "", "", p.split(": ", 1)[-1])
                    for p in exc.problems
                ],
            )
        findings = lint_campaign(campaign, replace(ctx, templates_dir=templates))
    findings += lint_triggers([campaign], known_keys | {campaign.key})
    return Check(campaign, findings)


def publish_checked(
    session: Session,
    clock: Clock,
    actor: Actor,
    bundle: Bundle,
    ctx: LintContext,
    shared_templates: Path,
    *,
    source: str,
    note: str | None = None,
    expect_head: int | None | bool = False,
    require_review: bool = True,
    check: Check | None = None,
) -> Published:
    """Check (unless a check of these very files is handed in), then publish."""
    ctx = replace(ctx, strict=require_review, today=ctx.today or clock.now().date())
    check = check or check_bundle(bundle, ctx, shared_templates, set(heads(session)))
    if check.errors:
        raise PublishError([str(f) for f in check.errors])
    return publish(
        session,
        clock,
        actor,
        bundle,
        shared_templates,
        source=source,
        note=note,
        expect_head=expect_head,
    )
