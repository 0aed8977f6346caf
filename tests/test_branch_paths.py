"""Branches seen before and after they ship: live edits of conditions and waits
(campaigns/sequences/revisions.py), `drip campaigns diff`, `drip campaigns preview
--timeline` (one timeline per route through the course) and `drip simulate` with a
cohort that says who opens and who asks for a call, each showing both paths; on the
shipped course too."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from campaigns.care.contact_queue import request_contact
from campaigns.content.preview import Route, routes, timeline, timeline_text
from campaigns.content.rendering import Renderer, Sender
from campaigns.links import Signer
from campaigns.reporting.simulation import generated_cohort, simulate
from campaigns.reporting.timelines import timeline_lines
from campaigns.sequences.campaign import parse_campaign
from campaigns.sequences.diffing import diff, people
from campaigns.sequences.registry import Registry
from campaigns.sequences.revisions import revision_of, structure
from campaigns.sequences.timing import Policy
from settings import ROOT
from tests.conftest import FIXTURES, T0
from tests.test_conditions import (
    BOTH,
    BY_TEXT,
    FOLLOW,
    LESSON,
    OTHER,
    ask_for_call,
    course,
    cursor,
    engage,
    enroll,
    rows,
    skipped_by_condition,
    tick,
    went,
)
from workers.cli import main

CALL_PUSH = (
    "  - {key: call_push, delay: 1d, unless: {asked_for_call: true}, channels: [email], "
    'template: note, subject: "A call?"}\n'
)
SHIPPED = Registry(ROOT / "campaigns" / "definitions", ROOT / "templates")


@pytest.fixture
def ctx(send_ctx):
    return send_ctx


def rewrite(folder: Path, change) -> None:
    path = folder / "branchy.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    later = time.time_ns() + 10**9  # the registry notices edits by modification time
    os.utime(path, ns=(later, later))


# ---------------------------------------------------------------- live edits


def test_a_wait_added_live_reschedules_the_people_waiting_on_its_step(ctx, tmp_path):
    """The step after the lesson had a plain two-day delay; the edit makes it wait up to a
    day for an open instead. Someone still waiting is due a day after their lesson and
    waits for the open; someone who already opened is due at once and skips it."""
    text_later = (
        "  - {key: lesson_by_text, delay: 2d, unless: {opened: lesson}, channels: [sms], "
        "template: note}\n"
    )
    reg = course(tmp_path, LESSON + text_later + FOLLOW)
    waiting, opener = enroll(ctx, reg, **BOTH), enroll(ctx, reg, **OTHER)
    tick(ctx, reg)
    ctx.clock.advance(hours=1)
    engage(ctx, opener, "lesson")
    assert cursor(ctx.factory, opener).next_due_at == T0 + timedelta(days=2)  # nothing waits
    old = parse_campaign(tmp_path / "defs" / "branchy.yaml", reg.templates_dir)
    rewrite(
        tmp_path / "defs",
        lambda d: (
            d["steps"][1].pop("delay"),
            d["steps"][1].update(wait_for={"event": "opened", "step": "lesson", "at_most": "1d"}),
        ),
    )
    new = parse_campaign(tmp_path / "defs" / "branchy.yaml", reg.templates_dir)
    assert revision_of(structure(new)) != revision_of(structure(old))
    with ctx.factory() as s:
        changes = {(c.kind, c.step): (c.detail, c.affected) for c in
                   diff(structure(old), new, people(s, "branchy"), old, old.version)}  # fmt: skip
    assert changes == {
        ("wait", "lesson_by_text"): ("delay 2d -> wait up to 1d for an open of lesson", 2)
    }
    tick(ctx, reg)  # the reconcile moves both onto the new shape, then the claim
    w = cursor(ctx.factory, waiting)
    assert (w.next_due_at, w.waiting_for) == (
        T0 + timedelta(days=1),
        "opened:lesson>lesson_by_text",
    )
    skipped_by_condition(ctx.factory, opener, "lesson_by_text")  # due at once, and claimed
    ctx.clock.advance(hours=2)
    engage(ctx, waiting, "lesson")  # the new wait ends on the open
    tick(ctx, reg)
    skipped_by_condition(ctx.factory, waiting, "lesson_by_text")


def test_a_condition_edited_live_applies_to_everyone_who_has_not_reached_its_step(ctx, tmp_path):
    reg = course(tmp_path, LESSON + FOLLOW + CALL_PUSH)
    before, after = enroll(ctx, reg, **BOTH), enroll(ctx, reg, **OTHER)
    tick(ctx, reg)
    ctx.clock.current = T0 + timedelta(days=1)
    tick(ctx, reg)  # both had `follow`, both wait on `call_push`
    ctx.clock.advance(hours=1)
    ask_for_call(ctx, reg, before, "follow")
    old = parse_campaign(tmp_path / "defs" / "branchy.yaml", reg.templates_dir)

    # The marketer turns it around: the push goes only to people who asked (a reminder).
    def turn_around(data):
        data["steps"][2].pop("unless")
        data["steps"][2]["if"] = {"asked_for_call": True}

    rewrite(tmp_path / "defs", turn_around)
    new = parse_campaign(tmp_path / "defs" / "branchy.yaml", reg.templates_dir)
    with ctx.factory() as s:
        changes = diff(structure(old), new, people(s, "branchy"), old, old.version)
    later = " (judged when the step falls due)"
    assert [(c.kind, c.step, c.detail, c.affected) for c in changes] == [
        ("condition", "call_push", "no if -> if asked for a call" + later, 2),
        ("condition", "call_push", "unless asked for a call -> no unless" + later, 2),
    ]
    ctx.clock.current = T0 + timedelta(days=2, hours=1)
    tick(ctx, reg)
    assert went(ctx.factory, before, "call_push")
    assert skipped_by_condition(ctx.factory, after, "call_push") == [
        "condition: if asked for a call, which does not hold"
    ]
    # A step already sent or skipped is never judged again (rule 1).
    rewrite(tmp_path / "defs", lambda d: d["steps"][2].pop("if"))
    ctx.clock.advance(days=1)
    tick(ctx, reg)
    assert [m.status for m in rows(ctx.factory, after, "call_push")] == ["skipped"]


# ---------------------------------------------------------------- preview --timeline


def test_the_timeline_shows_each_route_through_the_branches(tmp_path):
    reg = course(tmp_path, LESSON + BY_TEXT + FOLLOW + CALL_PUSH)
    campaign = reg.get("branchy")
    assert [r.title for r in routes(campaign)] == [
        "email and text, opens every email",
        "email and text, opens no email",
        "email and text, opens every email, asked for a call",
        "email only, opens every email",
        "text only",
    ]
    joined = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 10:00 in New York
    both = ("email", "sms")

    def route(**kw):
        rows_ = timeline(campaign, joined, "America/New_York", kw.pop("channels", both),
                         Policy(), Route("", both, **kw))  # fmt: skip
        return {r.key: (f"{r.at:%a %H:%M}", r.skipped) for r in rows_}

    opener, non_opener, caller = route(), route(opens=False), route(asked_for_call=True)
    assert opener["lesson_by_text"] == ("Mon 10:00", "unless opened lesson, which holds")
    assert opener["follow"][0] == "Tue 10:00"  # a day after the skip, at once
    assert non_opener["lesson_by_text"] == ("Wed 10:00", None)  # two days later, by text
    assert non_opener["follow"] == ("Thu 10:00", None)
    assert opener["call_push"] == ("Wed 10:00", None)
    assert caller["call_push"] == ("Wed 10:00", "unless asked for a call, which holds")
    text = timeline_text(campaign, "en", "America/New_York", joined, Policy())
    assert "branches:\n 2. lesson_by_text: waits up to 2d for an open of lesson; if has email " \
           "and text, unless opened lesson" in text  # fmt: skip
    assert "lesson_by_text   skipped (if has email and text, which does not hold)" in text


def test_a_straight_course_keeps_its_two_timelines():
    tiny = Registry(FIXTURES / "definitions", FIXTURES / "templates").get("tiny")
    assert [r.title for r in routes(tiny)] == ["email and text", "text only"]
    text = timeline_text(tiny, "en", "UTC", T0, Policy())
    assert "branches:" not in text and "skipped" not in text


def test_preview_timeline_of_the_shipped_course_shows_the_opener_and_the_non_opener(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        main,
        ["campaigns", "preview", "hip_and_back", "--timeline", "--locale", "en",
         "--timezone", "America/Chicago", "--joined", "2026-03-02T10:00"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = result.output
    opener = out.split("email and text, opens every email:")[1].split("\n\n")[0]
    non_opener = out.split("email and text, opens no email:")[1].split("\n\n")[0]
    caller = out.split("asked for a call:")[1].split("\n\n")[0]
    assert "diagnosis_by_text skipped (unless opened diagnosis, which holds)" in opener
    assert "10. Mon 23 Mar 09:00 CDT  diagnosis_by_text sms" in non_opener  # Fri + 2d, Sun off
    assert re.search(r"13\. Mon 30 Mar 11:00 CDT  next_step +email\+sms", opener)
    assert re.search(r"next_step +skipped \(unless asked for a call, which holds\)", caller)
    assert list(tmp_path.iterdir()) == []  # --timeline writes no files


# ---------------------------------------------------------------- simulate


def _simulate(reg, key, people_, days=10):
    def ask(session, clock, visit):
        return request_contact(session, clock, reg, visit, preferred_channel="phone",
                               preferred_time=None, note=None)  # fmt: skip

    return simulate(
        reg,
        key,
        people_,
        start=T0,
        days=days,
        policy=Policy(default_timezone="America/New_York"),
        renderer=Renderer(reg.templates_dir, Sender("Lunara", "1 Test Street")),
        signer=Signer(b"test-secret-key-for-links-0123456789"),
        base_url="https://care.example",
        default_country="US",
        call_request=ask,
    )


def test_simulate_runs_each_person_down_their_own_path(tmp_path):
    reg = course(tmp_path, LESSON + BY_TEXT + FOLLOW + CALL_PUSH)
    cohort = [
        {**BOTH, "opens": True},
        {**OTHER, "opens": False},
        {"email": "cal@example.com", "phone": "+12025550147", "first_name": "Cal",
         "opens": True, "asks_for_call": "lesson"},
    ]  # fmt: skip
    sim = _simulate(reg, "branchy", cohort)
    by = {t.first_name: t for t in sim.timelines}
    ana = {e.step_key: e for e in by["Ana"].entries}
    ben = {e.step_key: e for e in by["Ben"].entries}
    cal = {e.step_key: e for e in by["Cal"].entries}
    assert ana["lesson_by_text"].status == "skipped"
    assert ana["lesson_by_text"].reason == "condition: unless opened lesson, which holds"
    assert ana["lesson_by_text"].due_at == T0 + timedelta(hours=1)  # her open ended the wait
    assert ben["lesson_by_text"].sent_at == T0 + timedelta(days=2)  # by text, two days on
    assert ana["follow"].sent_at == T0 + timedelta(days=1, hours=1)
    assert ben["follow"].sent_at == T0 + timedelta(days=3)
    assert cal["call_push"].reason == "condition: unless asked for a call, which holds"
    assert ana["call_push"].sent_at is not None and ben["call_push"].sent_at is not None
    lines = "\n".join(timeline_lines(by["Ana"]) + timeline_lines(by["Cal"]))
    assert "opened the email of step 1 (lesson, email)" in lines
    assert "asked for a call from step 1 (lesson, email)" in lines
    assert "skipped: condition: unless opened lesson, which holds" in lines
    assert sim.still_in_course == 0


def test_simulate_on_the_shipped_course_with_the_sample_people_shows_both_branches():
    """`drip simulate hip_and_back`: the demo's people doing what they do in the demo. Sam
    opens only his first and third emails, so the diagnosis lesson reaches him by text
    too; Maria asks for a call from it, so she skips the last lesson's push."""
    result = CliRunner().invoke(main, ["simulate", "hip_and_back", "--joined", "2026-03-02 15:00"])
    assert result.exit_code == 0, result.output
    out = result.output
    people_ = {block.split(":")[0]: block for block in out.split("\n\n") if ": " in block[:40]}
    sam = people_["(no name)"]
    assert "diagnosis_by_text  sms" in sam and "sent" in sam.split("diagnosis_by_text")[1][:120]
    maria = people_["Maria"]
    assert "asked for a call from step 9 (diagnosis, email)" in maria
    assert "skipped: condition: unless asked for a call, which holds" in maria
    assert "skipped: condition: unless opened diagnosis, which holds" in maria
    assert "diagnosis_by_text/sms not sent: skipped: condition:" in out


def test_simulate_takes_what_people_do_from_the_csv(tmp_path):
    defs = tmp_path / "defs"
    course(tmp_path, LESSON + BY_TEXT + FOLLOW + CALL_PUSH)
    csv = tmp_path / "people.csv"
    csv.write_text(
        "email,phone,first_name,timezone,opens,asks_for_call,attr_plan\n"
        "a@example.com,+12025550101,Ana,America/New_York,yes,,x\n"
        "b@example.com,+12025550102,Ben,America/New_York,no,lesson,\n"
        "c@example.com,+12025550103,Cy,America/New_York,lesson follow,,\n"
    )
    result = CliRunner().invoke(
        main,
        ["simulate", str(defs / "branchy.yaml"), "--cohort", str(csv),
         "--joined", "2026-03-02 15:00", "--days", "6"],
        env={"TEMPLATES_DIR": str(FIXTURES / "templates")},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = result.output
    ana, ben = out.split("\nAna: ")[1].split("\n\n")[0], out.split("\nBen: ")[1].split("\n\n")[0]
    assert "unless opened lesson, which holds" in ana
    assert "lesson_by_text  sms" in ben and "asked for a call from step 1" in ben
    assert "unless asked for a call, which holds" in ben
    bad = tmp_path / "bad.csv"
    bad.write_text("email,opens\nz@example.com,maybe?\n")
    result = CliRunner().invoke(
        main, ["simulate", str(defs / "branchy.yaml"), "--cohort", str(bad)],
        env={"TEMPLATES_DIR": str(FIXTURES / "templates")},
    )  # fmt: skip
    assert result.exit_code == 1 and "line 2: opens: 'maybe?'" in result.output, result.output


def test_a_generated_cohort_takes_both_paths():
    people_ = generated_cohort(6)
    assert [p["opens"] for p in people_] == [True, False] * 3
    sim = _simulate(SHIPPED, "hip_and_back", people_, days=45)
    got = {
        (t.first_name, e.status, e.reason)
        for t in sim.timelines
        for e in t.entries
        if e.step_key == "diagnosis_by_text"
    }
    # Person 3 (email and text, opens) skips the text version; person 6 (email and text,
    # opens nothing) gets it; the email-only and text-only people never wait for it.
    assert ("Person 3", "skipped", "condition: unless opened diagnosis, which holds") in got
    assert ("Person 6", "sent", "accepted by provider") in got
    never = "condition: if has email and text, which does not hold"
    assert {n for n, _, r in got if r == never} == {"Person 1", "Person 2", "Person 4", "Person 5"}


def test_people_who_ask_need_a_way_to_ask(tmp_path):
    reg = course(tmp_path, LESSON + CALL_PUSH)
    with pytest.raises(ValueError, match="call_request"):
        simulate(
            reg,
            "branchy",
            [{**BOTH, "opens": True, "asks_for_call": "lesson"}],
            start=T0,
            days=3,
            policy=Policy(),
            renderer=Renderer(reg.templates_dir, Sender("Lunara", "x")),
            signer=Signer(b"x" * 32),
            base_url="https://care.example",
            default_country="US",
        )


def test_drip_campaigns_diff_names_changed_conditions_and_waits(tmp_path):
    from campaigns.migrate import upgrade

    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    course(tmp_path, LESSON + BY_TEXT + FOLLOW + CALL_PUSH, "old")
    course(tmp_path, LESSON + BY_TEXT + FOLLOW + CALL_PUSH, "new")

    def edit(data):
        data["steps"][1]["wait_for"]["at_most"] = "1d"
        data["steps"][3]["unless"] = {"any": [{"asked_for_call": True}, {"clicked": "lesson"}]}

    rewrite(new_dir, edit)
    url = f"sqlite:///{tmp_path / 'drip.sqlite3'}"
    upgrade(url)
    result = CliRunner().invoke(
        main,
        ["campaigns", "diff", str(new_dir / "branchy.yaml"), "--against",
         str(old_dir / "branchy.yaml")],
        env={"DATABASE_URL": url, "TEMPLATES_DIR": str(FIXTURES / "templates")},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "wait       step lesson_by_text: wait up to 2d for an open of lesson -> wait up to 1d "
        "for an open of lesson -> 0 enrolled people affected"
    ) in result.output
    assert (
        "condition  step call_push: unless asked for a call -> unless (asked for a call or "
        "clicked lesson) (judged when the step falls due) -> 0 enrolled people affected"
    ) in result.output


def test_diff_names_a_changed_goal_cap_holdout_and_arms(tmp_path):
    """The campaign-wide settings and a step's experiment, against the file before."""
    templates = FIXTURES / "templates"
    before = tmp_path / "trial.yaml"
    text = (FIXTURES / "experiments" / "trial.yaml").read_text()
    before.write_text(text)
    data = yaml.safe_load(text)
    data["holdout"] = "20%"
    data["goal"] = {"event": "visit_booked", "then": "exit"}
    data["frequency_cap"] = {"per_day": 1}
    data["steps"][1]["variants"][0]["weight"] = 1  # plain 3:1 -> 1:1
    after = tmp_path / "edited" / "trial.yaml"
    after.parent.mkdir()
    after.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    old, new = parse_campaign(before, templates), parse_campaign(after, templates)
    changes = {(c.kind, c.step): c.detail for c in diff(structure(old), new, [], old, 1)}
    assert changes == {
        ("goal", None): "none -> visit_booked, then exit",
        ("frequency cap", None): "the settings' -> 1 a day (from the next tick)",
        ("holdout", None): "10% -> 20% (judged at each step: people already in move in or "
        "out from their next)",
        ("variants", "lesson"): "plain 75%, story 25% -> plain 50%, story 50% (who had the "
        "step keeps their arm; the rest split anew)",
    }
    assert diff(structure(old), old, [], old, 1) == []  # the same file: nothing
