"""Promoting an experiment's winner: the step keeps the winning arm's copy, and no variants.

    promote(path, templates_dir, step_key, variant, today) -> Promoted  (rewrites the file)

The campaign file is rewritten as a marketer would edit it by hand: the step's
`template`, `subject` and `preheader` become the arm's (what it did not change stays the
step's own), and `variants` and `experiment` go. The rest of the file, comments included,
is kept (ruamel's round trip, as `drip campaigns review` does). From there it is a
content edit like any other (campaigns/sequences/revisions.py, rule 2): the workers read
the new file, and every message not yet sent, queued ones included, goes with the winner's
copy; nobody is moved and nothing is sent twice.

Clinical review: the step's review signed every arm's copy (campaigns/content/review.py).
When it held before the promotion, and the promoted step's copy is byte for byte the arm's
copy that review covered (same fingerprint as the arm alone), the review is kept with the
new fingerprint; otherwise the step reads as changed since its review, as after any edit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from campaigns.content.review import (
    ReviewError,
    _dump,
    _replace,
    _round_tripper,
    fingerprint,
    review_state,
)
from campaigns.sequences.campaign import DefinitionError, parse_campaign


class PromoteError(ValueError):
    """The winner cannot be promoted; the message says why."""


@dataclass(frozen=True)
class Promoted:
    campaign: str
    step_key: str
    variant: str
    review_kept: bool
    sentence: str  # for people


def promote(path: Path, templates_dir: Path, step_key: str, variant: str, today: date) -> Promoted:
    try:
        campaign = parse_campaign(path, templates_dir)
    except DefinitionError as exc:
        raise PromoteError(str(exc)) from None
    step = campaign.step(step_key)
    if step is None:
        raise PromoteError(
            f"{campaign.key} has no step {step_key!r}"
            f" (its steps: {', '.join(s.key for s in campaign.steps)})"
        )
    arm = next((v for v in step.variants if v.name == variant), None)
    if arm is None:
        names = ", ".join(v.name for v in step.variants)
        raise PromoteError(
            f"step {step_key!r} has no variant {variant!r}"
            + (f" (its variants: {names})" if names else " (it has no variants)")
        )
    winner = replace(step.with_variant(variant), variants=(), experiment=None, variant=None)
    try:
        reviewed = review_state(campaign, step, templates_dir, today).ok
        winner_copy = fingerprint(campaign, winner, templates_dir)
    except ReviewError as exc:
        raise PromoteError(str(exc)) from None

    text = path.read_text(encoding="utf-8")
    rt = _round_tripper(text)
    data = rt.load(text)
    node = next(s for s in data["steps"] if s.get("key") == step_key)
    if arm.template:
        node["template"] = arm.template
    for kind in ("subject", "preheader"):
        if getattr(arm, kind) is not None:
            values = CommentedMap(
                (loc, DoubleQuotedScalarString(t)) for loc, t in getattr(winner, kind).items()
            )
            values.fa.set_flow_style()
            node[kind] = values
    for gone in ("variants", "experiment"):
        if gone in node:
            del node[gone]
    review = node.get("review")
    if reviewed and isinstance(review, dict):
        review["copy"] = DoubleQuotedScalarString(winner_copy)
    _replace(path, _dump(rt, data))

    try:  # read back as every worker will
        after = parse_campaign(path, templates_dir)
        promoted = after.step(step_key)
        kept = reviewed and review_state(after, promoted, templates_dir, today).ok
        same = fingerprint(after, promoted, templates_dir) == winner_copy
    except (DefinitionError, ReviewError) as exc:
        _replace(path, text)
        raise PromoteError(
            f"{path.name}: left as it was: the edit did not read back: {exc}"
        ) from None
    if not same:  # never expected: the rewrite changed the copy itself
        _replace(path, text)
        raise PromoteError(f"{path.name}: left as it was: the promoted copy is not the arm's")
    sentence = f"{campaign.key} {step_key}: variant {variant} promoted; " + (
        "its clinical review is kept (the same copy that was reviewed)"
        if kept
        else "the step needs a clinical review (it had none that held)"
    )
    return Promoted(campaign.key, step_key, variant, kept, sentence)
