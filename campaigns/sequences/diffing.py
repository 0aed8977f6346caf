"""`drip campaigns diff`: what an edit changes, and for how many people already enrolled.

Counts come from the same rules `reconcile` applies (campaigns/revisions.py), run over
the active enrollments in the database, so the preview and the deploy agree. A changed
condition (`if`, `unless`) counts the people who have not reached its step yet (it is
judged when the step falls due); a changed wait (`wait_for`) counts those still to wait
on it, like a delay.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.models import Enrollment, Message
from campaigns.sequences.campaign import Campaign
from campaigns.sequences.conditions import Condition, ConditionSpec, WaitFor
from campaigns.sequences.delays import format_delay
from campaigns.sequences.revisions import remaining, structure
from campaigns.states import EnrollmentStatus


@dataclass(frozen=True)
class Change:
    kind: str
    step: str | None
    detail: str
    affected: int

    def __str__(self) -> str:
        where = f"step {self.step}: " if self.step else ""
        return f"{self.kind:<10} {where}{self.detail} -> {self.affected} enrolled people affected"


@dataclass(frozen=True)
class Person:
    received: frozenset[str]
    waiting_on: str | None


def people(session: Session, campaign_key: str) -> list[Person]:
    rows = session.execute(
        select(Enrollment.id, Enrollment.next_step_key).where(
            Enrollment.campaign_key == campaign_key,
            Enrollment.status.in_((EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED)),
        )
    ).all()
    received: dict[int, set[str]] = defaultdict(set)
    for eid, key in session.execute(
        select(Message.enrollment_id, Message.step_key)
        .join(Enrollment, Enrollment.id == Message.enrollment_id)
        .where(Enrollment.campaign_key == campaign_key)
    ):
        received[eid].add(key)
    return [Person(frozenset(received[eid]), waiting) for eid, waiting in rows]


def _fmt_delay(seconds: int) -> str:
    return format_delay(timedelta(seconds=seconds))


def _condition(part: str, data: dict | None) -> str:
    if not data:
        return f"no {part}"
    return f"{part} {Condition.from_spec(ConditionSpec.model_validate(data)).describe()}"


def _wait(step: dict) -> str:
    data = step.get("wait_for")
    if not data:
        return f"delay {_fmt_delay(step['delay'])}"
    wait = WaitFor(data["event"], data["step"], timedelta(seconds=data["at_most"]))
    return f"wait {wait.describe()}"


def holding_counts(old: list[dict], new: Campaign, everyone: list[Person]) -> dict[str, int]:
    """For each step of `new`, how many people it is still ahead of (they get it, or its
    new copy) once the edit lands."""
    old_order = [s["key"] for s in old]
    new_order = [s.key for s in new.steps]
    counts = dict.fromkeys(new_order, 0)
    for p in everyone:
        for key in remaining(new_order, set(p.received), p.waiting_on, old_order):
            counts[key] = counts.get(key, 0) + 1
    return counts


def diff(
    old: list[dict],
    new: Campaign,
    everyone: list[Person],
    old_campaign: Campaign | None = None,
    old_version: int | None = None,
) -> list[Change]:
    new_shape = structure(new)
    old_by = {s["key"]: s for s in old}
    new_by = {s["key"]: s for s in new_shape}
    old_order = [s["key"] for s in old]
    new_order = [s["key"] for s in new_shape]
    ahead_old = [remaining(old_order, set(p.received), p.waiting_on, old_order) for p in everyone]
    ahead_new = [remaining(new_order, set(p.received), p.waiting_on, old_order) for p in everyone]

    def holding(key: str, lists: list[list[str]]) -> int:
        return sum(1 for ahead in lists if key in ahead)

    changes: list[Change] = []
    for key in old_order:
        if key not in new_by:
            changes.append(
                Change(
                    "removed",
                    key,
                    "no longer sent; people waiting on it move on",
                    holding(key, ahead_old),
                )
            )
    for index, key in enumerate(new_order):
        if key not in old_by:
            after = new_order[index - 1] if index else "the start"
            changes.append(Change("added", key, f"inserted after {after}", holding(key, ahead_new)))
    for key in new_order:
        if key not in old_by:
            continue
        o, n = old_by[key], new_by[key]
        if o.get("wait_for") != n.get("wait_for"):
            changes.append(
                Change("wait", key, f"{_wait(o)} -> {_wait(n)}", holding(key, ahead_new))
            )
        elif o["delay"] != n["delay"]:
            changes.append(
                Change(
                    "delay",
                    key,
                    f"{_fmt_delay(o['delay'])} -> {_fmt_delay(n['delay'])}",
                    holding(key, ahead_new),
                )
            )
        if o["channels"] != n["channels"]:
            changes.append(
                Change(
                    "channels",
                    key,
                    f"{'+'.join(o['channels'])} -> {'+'.join(n['channels'])}",
                    holding(key, ahead_new),
                )
            )
        if o.get("fallback") != n.get("fallback"):
            changes.append(
                Change(
                    "fallback",
                    key,
                    f"{o.get('fallback') or 'none'} -> {n.get('fallback') or 'none'}",
                    holding(key, ahead_new),
                )
            )
        for part in ("if", "unless"):
            if o.get(part) != n.get(part):
                changes.append(
                    Change(
                        "condition",
                        key,
                        f"{_condition(part, o.get(part))} -> {_condition(part, n.get(part))}"
                        " (judged when the step falls due)",
                        holding(key, ahead_new),
                    )
                )
        copy = []
        if o.get("template") != n.get("template"):
            copy.append(f"template {o.get('template')} -> {n.get('template')}")
        if old_campaign is not None:
            os_, ns_ = old_campaign.step(key), new.step(key)
            if os_ and (os_.subject, os_.preheader) != (ns_.subject, ns_.preheader):
                copy.append("subject/preheader edited")
        if copy:
            changes.append(Change("copy", key, "; ".join(copy), holding(key, ahead_new)))
    common_old = [k for k in old_order if k in new_by]
    common_new = [k for k in new_order if k in old_by]
    if common_old != common_new:
        changes.append(
            Change(
                "reordered",
                None,
                " -> ".join(common_new),
                sum(
                    1
                    for new_ahead, old_ahead in zip(ahead_new, ahead_old, strict=True)
                    if [k for k in new_ahead if k in old_by]
                    != [k for k in old_ahead if k in new_by]
                ),
            )
        )
    if old_campaign is not None:
        changes.extend(_campaign_changes(old_campaign, new, len(everyone)))
        for key in new_order:
            os_, ns_ = old_campaign.step(key), new.step(key)
            if os_ is not None and ns_ is not None and _arms(os_) != _arms(ns_):
                changes.append(
                    Change(
                        "variants",
                        key,
                        f"{_arms(os_) or 'one copy'} -> {_arms(ns_) or 'one copy'}"
                        " (who had the step keeps their arm; the rest split anew)",
                        holding(key, ahead_new),
                    )
                )
    if old_version is not None and old_version != new.version:
        changes.append(Change("version", None, f"{old_version} -> {new.version}", 0))
    return changes


def _arms(step) -> str:
    """A step's experiment as a marketer reads it: "plain 50%, story 50%" ("" for none)."""
    variants = getattr(step, "variants", None) or ()
    total = sum(v.weight for v in variants) or 1
    return ", ".join(f"{v.name} {v.weight / total:.0%}" for v in variants)


def _campaign_changes(old: Campaign, new: Campaign, enrolled: int) -> list[Change]:
    """What a file changes for the whole campaign: its goal, its triggers, re-entry, its
    frequency cap and its holdout. They apply to everyone still in the course."""

    def goal(c: Campaign) -> str:
        g = getattr(c, "goal", None)
        return f"{g.event}, then {g.then}" if g else "none"

    def triggers(c: Campaign) -> str:
        found = getattr(c, "enroll_on", None) or ()
        return "; ".join(t.describe() for t in found) or "none"

    def cap(c: Campaign) -> str:
        override = getattr(c, "frequency_cap", None)
        if override is None:
            return "the settings'"
        parts = [
            f"{n} a {unit}"
            for n, unit in ((override.per_day, "day"), (override.per_week, "week"))
            if n is not None
        ]
        return ", ".join(parts) or "the settings'"

    def holdout(c: Campaign) -> str:
        return f"{getattr(c, 'holdout', 0.0):.0%}"

    def window(c: Campaign) -> str:
        return c.window.describe()

    out = []
    for kind, read, note in (
        ("window", window, " (judged at each send, in each person's own time)"),
        ("goal", goal, ""),
        ("triggers", triggers, " (moments from now on)"),
        ("reentry", lambda c: "allowed" if getattr(c, "reentry", False) else "not allowed", ""),
        ("frequency cap", cap, " (from the next tick)"),
        (
            "holdout",
            holdout,
            " (judged at each step: people already in move in or out from their next)",
        ),
    ):
        before, after = read(old), read(new)
        if before != after:
            out.append(Change(kind, None, f"{before} -> {after}{note}", enrolled))
    return out
