"""Editing a live sequence: each rule in campaigns/revisions.py, with people at
different places in it, on SQLite and PostgreSQL."""

import os
import shutil
import time
from datetime import timedelta

import pytest
import yaml
from sqlalchemy import select

from campaigns.delivery import scheduler
from campaigns.delivery.sending import send_batch
from campaigns.models import Enrollment, Message
from campaigns.sequences.registry import Registry
from tests.conftest import FIXTURES, T0
from tests.helpers import add_and_enroll, messages


@pytest.fixture
def defs(tmp_path):
    folder = tmp_path / "definitions"
    shutil.copytree(FIXTURES / "definitions", folder)
    return folder


@pytest.fixture
def templates(tmp_path):
    folder = tmp_path / "templates"
    shutil.copytree(FIXTURES / "templates", folder)
    return folder


@pytest.fixture
def reg(defs, templates):
    return Registry(defs, templates)


def rewrite(defs, change):
    path = defs / "tiny.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    later = time.time_ns() + 10**9  # the registry notices edits by modification time
    os.utime(path, ns=(later, later))


def tick(factory, clock, reg, policy, ctx=None):
    """A scheduler tick; with a send context, its send tasks too (a step is claimed only
    once the previous one has gone: invariant 10)."""
    sent = []
    scheduler.tick(factory, clock, reg, policy, lambda work: sent.append(work))
    if ctx is not None:
        for work in sent:
            send_batch(ctx, "email", work.email)
            send_batch(ctx, "sms", work.sms)
    return sent


@pytest.fixture
def ctx(send_ctx, reg, templates):
    from campaigns.content.rendering import Renderer, Sender

    send_ctx.registry = reg
    send_ctx.renderer = Renderer(templates, Sender("Lunara", "x"))
    return send_ctx


def enrollment(factory, eid):
    with factory() as s:
        return s.get(Enrollment, eid)


def steps_of(factory, eid):
    return [
        m.step_key for m in messages(factory) if m.enrollment_id == eid and m.channel == "email"
    ] + [
        m.step_key
        for m in messages(factory)
        if m.enrollment_id == eid and m.channel == "sms" and m.step_key == "third"
    ]


def test_edited_delay_reschedules_people_waiting_on_that_step(
    factory, clock, reg, policy, defs, ctx
):
    _, eid = add_and_enroll(factory, clock, reg, policy, email="a@example.com")
    tick(factory, clock, reg, policy, ctx)  # 'hello' goes out at T0; 'second' due a day later
    assert enrollment(factory, eid).next_due_at == T0 + timedelta(days=1)
    rewrite(defs, lambda d: d["steps"][1].update(delay="3h"))
    tick(factory, clock, reg, policy, ctx)
    assert enrollment(factory, eid).next_due_at == T0 + timedelta(hours=3)
    clock.advance(hours=2)
    rewrite(defs, lambda d: d["steps"][1].update(delay="1h"))  # less than already waited
    tick(factory, clock, reg, policy, ctx)
    assert "second" in steps_of(factory, eid)  # due at once, and claimed by the same tick


def test_rewritten_copy_reaches_queued_and_future_messages(
    send_ctx, factory, clock, reg, policy, templates
):
    from campaigns.content.rendering import Renderer, Sender

    _, eid = add_and_enroll(factory, clock, reg, policy, email="a@example.com")
    (work,) = [w for w in tick(factory, clock, reg, policy) if w.email]
    (templates / "tiny" / "en" / "hello.html").write_text("<p>Brand new words.</p>")
    send_ctx.registry = reg
    send_ctx.renderer = Renderer(templates, Sender("Lunara", "x"))
    send_batch(send_ctx, "email", work.email)
    eml = next((send_ctx.email_provider.folder / "email").iterdir()).read_text()
    assert "Brand new words." in eml
    assert enrollment(factory, eid).next_step_key == "second"  # content edits move nobody


def test_inserted_step_reaches_only_people_before_its_place(factory, clock, reg, policy, defs, ctx):
    _, early = add_and_enroll(factory, clock, reg, policy, email="early@example.com")
    tick(factory, clock, reg, policy, ctx)  # early: had 'hello', waits on 'second'
    clock.advance(days=1)
    _, new = add_and_enroll(factory, clock, reg, policy, email="new@example.com")
    tick(factory, clock, reg, policy, ctx)  # early had 'second' too; new had 'hello'
    assert enrollment(factory, early).next_step_key == "third"
    extra = {
        "key": "extra",
        "delay": "2h",
        "channels": ["email"],
        "template": "second",
        "subject": "Extra",
    }
    rewrite(defs, lambda d: d["steps"].insert(1, extra))  # after 'hello'
    tick(factory, clock, reg, policy, ctx)
    assert enrollment(factory, new).next_step_key == "extra"
    assert enrollment(factory, new).next_due_at == T0 + timedelta(days=1, hours=2)
    assert enrollment(factory, early).next_step_key == "third"  # already past that place
    for _ in range(8):
        clock.advance(days=1)
        tick(factory, clock, reg, policy, ctx)
    assert steps_of(factory, new) == ["hello", "extra", "second", "third"]
    assert steps_of(factory, early) == ["hello", "second", "third"]


def test_removed_step_moves_waiting_people_on(factory, clock, reg, policy, defs):
    _, eid = add_and_enroll(
        factory, clock, reg, policy, email="a@example.com", phone="+12025550143"
    )
    tick(factory, clock, reg, policy)
    rewrite(defs, lambda d: d["steps"].pop(1))  # 'second' is gone
    tick(factory, clock, reg, policy)
    e = enrollment(factory, eid)
    assert e.next_step_key == "third"
    assert e.next_due_at == T0 + timedelta(days=2)  # third's own delay, from when hello went out


def test_reordered_steps_keep_place_and_never_resend(factory, clock, reg, policy, defs, ctx):
    _, eid = add_and_enroll(
        factory, clock, reg, policy, email="a@example.com", phone="+12025550143"
    )
    tick(factory, clock, reg, policy, ctx)
    clock.advance(days=1)
    tick(factory, clock, reg, policy, ctx)  # had hello and second; waits on third
    rewrite(defs, lambda d: d["steps"].insert(0, d["steps"].pop(2)))  # third, hello, second
    for _ in range(5):
        clock.advance(days=1)
        tick(factory, clock, reg, policy, ctx)
    with factory() as s:
        keys = s.execute(
            select(Message.step_key, Message.channel).where(Message.enrollment_id == eid)
        ).all()
    assert len(keys) == len(set(keys))
    assert sorted(k for k, _ in keys) == ["hello", "hello", "second", "third"]
    assert enrollment(factory, eid).status == "completed"


def test_reorder_ahead_of_someone_sends_in_the_new_order(factory, clock, reg, policy, defs):
    _, eid = add_and_enroll(
        factory, clock, reg, policy, email="a@example.com", phone="+12025550143"
    )
    tick(factory, clock, reg, policy)  # had hello; waits on second, then third
    rewrite(defs, lambda d: d["steps"].insert(1, d["steps"].pop(2)))  # hello, third, second
    tick(factory, clock, reg, policy)
    assert enrollment(factory, eid).next_step_key == "third"


def test_version_bump_alone_moves_nobody(factory, clock, reg, policy, defs, ctx):
    _, eid = add_and_enroll(factory, clock, reg, policy, email="a@example.com")
    tick(factory, clock, reg, policy, ctx)
    before = enrollment(factory, eid)
    rewrite(defs, lambda d: d.update(version=2))
    tick(factory, clock, reg, policy, ctx)
    after = enrollment(factory, eid)
    assert (after.next_step_key, after.next_due_at, after.campaign_revision) == (
        before.next_step_key,
        before.next_due_at,
        before.campaign_revision,
    )
    clock.advance(days=1)
    tick(factory, clock, reg, policy, ctx)
    assert {m.campaign_version for m in messages(factory) if m.step_key == "second"} == {2}


def test_completed_people_stay_completed_when_steps_are_appended(
    factory, clock, reg, policy, defs, ctx
):
    _, eid = add_and_enroll(factory, clock, reg, policy, email="a@example.com")
    for _ in range(4):
        tick(factory, clock, reg, policy, ctx)
        clock.advance(days=2)
    assert enrollment(factory, eid).status == "completed"
    extra = {
        "key": "bonus",
        "delay": "1d",
        "channels": ["email"],
        "template": "second",
        "subject": "Bonus",
    }
    rewrite(defs, lambda d: d["steps"].append(extra))
    clock.advance(days=2)
    tick(factory, clock, reg, policy, ctx)
    assert enrollment(factory, eid).status == "completed"
    assert "bonus" not in steps_of(factory, eid)


def test_diff_counts_whom_each_change_affects(factory, clock, reg, policy, defs):
    from campaigns.sequences.campaign import parse_campaign
    from campaigns.sequences.diffing import diff, people
    from campaigns.sequences.revisions import structure

    for i in range(3):
        add_and_enroll(factory, clock, reg, policy, email=f"p{i}@example.com")
    tick(factory, clock, reg, policy)  # all three had hello, wait on second
    clock.advance(days=1)
    add_and_enroll(factory, clock, reg, policy, email="late@example.com")  # waits on hello
    old = reg.get("tiny")

    def change(d):
        d["steps"][1]["delay"] = "2d"
        d["steps"][1]["subject"] = "A new subject"
        d["steps"][0]["channels"] = ["email"]
        d["steps"].insert(
            1,
            {
                "key": "intro",
                "delay": "1h",
                "channels": ["email"],
                "template": "second",
                "subject": "Intro",
            },
        )
        d["steps"].insert(
            0,
            {
                "key": "preface",
                "delay": "0m",
                "channels": ["email"],
                "template": "second",
                "subject": "Preface",
            },
        )
        d["version"] = 2

    rewrite(defs, change)
    new = parse_campaign(defs / "tiny.yaml", reg.templates_dir)
    with factory() as s:
        everyone = people(s, "tiny")
    found = {
        (c.kind, c.step): c.affected for c in diff(structure(old), new, everyone, old, old.version)
    }
    assert found == {
        ("added", "intro"): 4,  # nobody has passed the place after 'hello'
        ("added", "preface"): 1,  # only the late joiner has not passed the start
        ("delay", "second"): 4,
        ("channels", "hello"): 1,
        ("copy", "second"): 4,
        ("version", None): 0,
    }


def test_people_paused_by_ops_stay_put_and_hold_nobody_back(factory, clock, reg, policy, defs):
    from campaigns.db import transaction
    from campaigns.sequences.revisions import reconcile

    ids = [
        add_and_enroll(factory, clock, reg, policy, email=f"p{i}@example.com")[1] for i in range(4)
    ]
    tick(factory, clock, reg, policy)  # all four had hello and wait on second
    with transaction(factory) as s:
        for eid in ids[:3]:  # the first three by id: paused by ops
            e = s.get(Enrollment, eid)
            e.status, e.exit_reason = "paused", "paused by ops"
    before = enrollment(factory, ids[0])
    rewrite(defs, lambda d: d["steps"][1].update(delay="3h"))
    with transaction(factory) as s:  # a batch of one: the paused must not fill it
        report = reconcile(s, clock, reg, policy, limit=1)
    assert report.moved == 1
    moved = enrollment(factory, ids[3])
    assert moved.next_due_at == T0 + timedelta(hours=3)
    assert moved.campaign_revision != before.campaign_revision
    kept = enrollment(factory, ids[0])
    assert (kept.status, kept.campaign_revision, kept.next_due_at) == (
        "paused",
        before.campaign_revision,
        before.next_due_at,
    )


def test_people_paused_for_a_removed_step_resume_on_the_next_deploy(
    factory, clock, reg, policy, defs
):
    from campaigns.db import transaction
    from campaigns.reasons import missing_step

    _, eid = add_and_enroll(factory, clock, reg, policy, email="a@example.com")
    tick(factory, clock, reg, policy)  # had hello; waits on second
    with transaction(factory) as s:  # as the claim leaves someone whose step was gone
        e = s.get(Enrollment, eid)
        e.status, e.exit_reason, e.campaign_revision = "paused", missing_step("second"), "0" * 16
    tick(factory, clock, reg, policy)
    e = enrollment(factory, eid)
    assert (e.status, e.exit_reason, e.next_step_key) == ("active", None, "second")
    assert e.next_due_at == T0 + timedelta(days=1)


def test_a_message_whose_copy_breaks_for_one_reader_fails_alone(
    factory, clock, reg, policy, templates, ctx
):
    """Copy that raises as it renders for one person (a range too big for the sandbox,
    only when the name is Ana) fails that person's message; the batch's others go."""
    (templates / "tiny" / "en" / "hello.html").write_text(
        '<p>Hi.{% if first_name == "Ana" %}{{ range(10**7)|length }}{% endif %}</p>'
    )
    ids = {
        name: add_and_enroll(factory, clock, reg, policy, email=f"{name}@example.com",
                             first_name=name)[1]
        for name in ("Bea", "Ana", "Carl")
    }  # fmt: skip
    tick(factory, clock, reg, policy, ctx)
    status = {m.enrollment_id: m.status for m in messages(factory) if m.channel == "email"}
    assert status[ids["Ana"]] == "failed"
    assert status[ids["Bea"]] == status[ids["Carl"]] == "sent"
