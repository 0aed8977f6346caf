"""`drip status [--json]`: what ops asks first, on one screen.

Due backlog and its oldest age, enrollments and messages by status, queue depths, paused
channels (since when, by whom, why), open contact requests (how many, the oldest's age,
how many are over CONTACT_RESPONSE_TARGET_HOURS), unconfirmed messages (all, and those
waiting for ops), texts waiting in the inbox, and the schedulers: who leads, each one's
heartbeat, and how long ago the last tick was published. `--json` has all of it.
"""

from __future__ import annotations

import json
from datetime import timedelta

import click

from campaigns.clock import SystemClock
from campaigns.reporting.overview import Overview, read_overview
from workers.cli.context import Drip, pass_drip
from workers.cli.delivery import age_text
from workers.queues import queue_depths


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _as_json(ov: Overview, depths: dict, now, target_hours: float) -> dict:
    st, sched = ov.status, ov.schedulers
    return {
        "due_backlog": st.due_backlog,
        "oldest_due_age_seconds": st.oldest_due_age_seconds,
        "enrollments": st.enrollments,
        "messages": st.messages,
        "queues": depths,
        "paused_channels": [
            {"channel": p.channel, "since": p.since.isoformat(), "by": p.by, "reason": p.reason}
            for p in ov.paused
        ],
        "contact_requests_open": ov.contacts.count,
        "oldest_contact_request_age_seconds": _seconds(
            None if ov.contacts.oldest is None else (now - ov.contacts.oldest).total_seconds()
        ),
        "contact_requests_over_target": ov.contacts_over_target,
        "contact_response_target_hours": target_hours,
        "unconfirmed": ov.unconfirmed,
        "unconfirmed_for_ops": ov.unconfirmed_for_ops,
        "oldest_unconfirmed_for_ops_seconds": ov.oldest_unconfirmed_for_ops_seconds,
        "inbox_waiting": st.inbox.count,
        "oldest_inbox_age_seconds": _seconds(
            None if st.inbox.oldest is None else (now - st.inbox.oldest).total_seconds()
        ),
        "scheduler": {
            "leader": sched.leader,
            "term": sched.term,
            "leader_heartbeat_age_seconds": _seconds(sched.leader_heartbeat_age_seconds),
            "last_tick_age_seconds": _seconds(sched.last_tick_age_seconds),
            "instances": [
                {
                    "holder": i.holder,
                    "role": i.role if i.alive else "gone",
                    "heartbeat_age_seconds": _seconds(i.heartbeat_age_seconds),
                    "alive": i.alive,
                }
                for i in sched.instances
            ],
        },
    }


def _lines(ov: Overview, depths: dict, now, target_hours: float) -> list[str]:
    st, sched = ov.status, ov.schedulers
    age = "-" if st.oldest_due_age_seconds is None else f"{st.oldest_due_age_seconds:.0f}s"
    out = [
        f"due backlog: {st.due_backlog} enrollments; oldest due: {age}",
        "enrollments: "
        + (", ".join(f"{k} {v}" for k, v in sorted(st.enrollments.items())) or "none"),
        "messages:    " + (", ".join(f"{k} {v}" for k, v in sorted(st.messages.items())) or "none"),
        "queues:      " + ", ".join(f"{k} {v}" for k, v in depths.items()),
    ]
    for p in ov.paused:
        out.append(
            f"paused:      {p.channel} since {p.since:%Y-%m-%d %H:%M} UTC by {p.by}: {p.reason}"
        )
    if not ov.paused:
        out.append("paused:      no channel is paused")
    if ov.contacts.count:
        waited = age_text((now - ov.contacts.oldest).total_seconds())
        out.append(
            f"contacts:    {ov.contacts.count} open request(s), oldest {waited}; "
            f"{ov.contacts_over_target} over the {target_hours:g}h target: drip contacts"
        )
    else:
        out.append("contacts:    no open request")
    if ov.unconfirmed_for_ops:
        out.append(
            f"unconfirmed: {ov.unconfirmed_for_ops} wait for ops (no provider answer), oldest "
            f"{age_text(ov.oldest_unconfirmed_for_ops_seconds)}: drip outbox list; "
            f"drip outbox settle-all --as ..."
        )
    out.append(f"unconfirmed: {ov.unconfirmed} in all, {ov.unconfirmed_for_ops} waiting for ops")
    if st.inbox.count:
        waited = age_text((now - st.inbox.oldest).total_seconds())
        out.append(f"inbox:       {st.inbox.count} text(s) wait for a person, oldest {waited}")
    else:
        out.append("inbox:       nothing waits")
    if sched.leader is None:
        out.append("scheduler:   no leader (no scheduler holds the lease): is `drip beat` running?")
    else:
        out.append(
            f"scheduler:   {sched.leader} leads (term {sched.term}), heartbeat "
            f"{age_text(sched.leader_heartbeat_age_seconds)} ago"
        )
    for i in sched.instances:
        if i.holder != sched.leader:
            beat = age_text(i.heartbeat_age_seconds)
            role = i.role if i.alive else "gone"
            out.append(f"             {i.holder} {role}, heartbeat {beat} ago")
    tick = sched.last_tick_age_seconds
    out.append("last tick:   " + ("never published" if tick is None else f"{age_text(tick)} ago"))
    return out


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Everything, as one JSON object.")
@pass_drip
def status(drip: Drip, as_json) -> None:
    """Backlog, messages, queues, paused channels, contact requests, unconfirmed messages,
    the inbox and the schedulers."""
    rt = drip.runtime()
    target_hours = rt.settings.contact_response_target_hours
    with rt.factory() as session:
        ov = read_overview(
            session,
            rt.clock,
            SystemClock(),
            timedelta(hours=target_hours),
            rt.settings.scheduler_lease_seconds,
        )
    depths = queue_depths(rt.settings)
    now = rt.clock.now()
    if as_json:
        click.echo(json.dumps(_as_json(ov, depths, now, target_hours)))
        return
    for line in _lines(ov, depths, now, target_hours):
        click.echo(line)
