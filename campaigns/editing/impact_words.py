"""An edit's impact (campaigns.editing.impact) in a marketer's words: what each change
does and to how many of the people enrolled now, by the live-edit rules (README,
"Changing a live sequence")."""

from __future__ import annotations

from campaigns.sequences.diffing import Change

# kind -> (what changes, who it reaches), filled with the change's step, detail, count.
SENTENCES = {
    "delay": "changes the delay of step {step} ({detail}) for {people} waiting on this step",
    "wait": "changes the wait of step {step} ({detail}) for {people} waiting on this step",
    "channels": "sends step {step} on {detail} to {people} it is still ahead of",
    "fallback": "changes step {step}'s fallback ({detail}) for {people} it is still ahead of",
    "condition": "changes whom step {step} is for ({detail}), judged for {people}",
    "copy": "new copy of step {step} ({detail}) reaches {people} who have not had it yet",
    "added": "adds step {step} ({detail}) for {people} who have not passed its place",
    "removed": "removes step {step}: {people} waiting on it move on to the next step",
    "reordered": "reorders the steps ({detail}) for {people} with steps still ahead",
    "variants": "changes step {step}'s experiment ({detail}) for {people} it is ahead of",
    "version": "bumps the version ({detail}): nobody moves",
    "window": "changes the send window ({detail}) for all {people} enrolled",
}


def people(count: int) -> str:
    return "1 person" if count == 1 else f"{count} people"


def sentence(change: Change) -> str:
    template = SENTENCES.get(change.kind, "{kind} step {step}: {detail} ({people} affected)")
    words = template.format(
        kind=change.kind,
        step=change.step or "",
        detail=change.detail,
        people=people(change.affected),
    )
    return words[0].upper() + words[1:]
