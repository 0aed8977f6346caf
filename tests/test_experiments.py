"""Experiments (campaigns/sequences/experiments.py, campaigns/reporting/experiments.py,
campaigns/content/promote.py), on SQLite and PostgreSQL through the real tick, claim and
send path: sticky, weighted assignment recorded on the outbox row; the same arm in the
sent message, read online, the /l/ redirect and a test-send; the holdout's terminal rows;
schema errors naming file, step and field; lint and the review fingerprint over every
arm; the report's intervals and verdicts against scipy and the textbook formulas worked
out here; promoting the winner as a live edit that keeps its clinical review."""

from __future__ import annotations

import email
import math
import shutil
from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from scipy.stats import binomtest, chi2_contingency, norm
from sqlalchemy import select, update

from campaigns.content.lint import LintContext, lint_campaign
from campaigns.content.promote import PromoteError, promote
from campaigns.content.review import fingerprint, record_reviews, review_state
from campaigns.db import transaction
from campaigns.delivery import scheduler
from campaigns.delivery.sending import send_batch
from campaigns.delivery.testsend import SendTestRequest, send_test
from campaigns.models import Enrollment, Message, Subscriber
from campaigns.reporting.experiments import compare, interval
from campaigns.reporting.funnels import campaign_report
from campaigns.sequences.campaign import DefinitionError, parse_campaign
from campaigns.sequences.experiments import held_out, variant_for
from campaigns.sequences.registry import Registry
from campaigns.tracking.machine import Why
from campaigns.tracking.portal import NotFound, Visit, lesson, record_engagement
from campaigns.tracking.redirects import destination
from tests.conftest import FIXTURES
from tests.helpers import add_and_enroll, messages
from workers.cli.experiments import experiment_lines

TEMPLATES = FIXTURES / "templates"
EXAMPLE = FIXTURES / "experiments" / "trial.yaml"
STORY = "https://example.org/story-b"


def course(tmp_path, text: str | None = None) -> Registry:
    folder = tmp_path / "defs"
    folder.mkdir(exist_ok=True)
    (folder / "trial.yaml").write_text(text if text is not None else EXAMPLE.read_text())
    return Registry(folder, TEMPLATES)


def no_holdout(tmp_path) -> Registry:
    return course(tmp_path, EXAMPLE.read_text().replace("holdout: 10%\n", ""))


def tick(ctx, reg) -> None:
    ctx.registry = reg
    sent = []
    scheduler.tick(ctx.factory, ctx.clock, reg, ctx.policy, sent.append)
    for work in sent:
        send_batch(ctx, "email", work.email)
        send_batch(ctx, "sms", work.sms)


def enroll_many(ctx, reg, n: int) -> list[int]:
    return [
        add_and_enroll(
            ctx.factory, ctx.clock, reg, ctx.policy, campaign="trial",
            email=f"p{i}@example.com", first_name="Ana",
        )[1]
        for i in range(n)
    ]  # fmt: skip


def lesson_rows(ctx) -> list[Message]:
    return [m for m in messages(ctx.factory) if m.step_key == "lesson"]


def subject_of(outbox, message_id: int) -> str:
    raw = (outbox.folder / "email" / f"{message_id:08d}.eml").read_bytes()
    return str(email.message_from_bytes(raw, policy=email.policy.default)["Subject"])


# ---------------------------------------------------------------- assignment


def test_assignment_is_sticky_deterministic_and_follows_the_weights():
    campaign = parse_campaign(EXAMPLE, TEMPLATES)
    step = campaign.step("lesson")
    arms = [variant_for(campaign, step, i) for i in range(1, 10_001)]
    # The same person always gets the same arm, whoever asks and however often.
    assert arms == [variant_for(campaign, step, i) for i in range(1, 10_001)]
    share = arms.count("story") / len(arms)
    assert abs(share - 0.25) < 0.015, share  # weights 3:1; 3 standard errors is 0.013
    assert set(arms) == {"plain", "story"}
    assert variant_for(campaign, campaign.step("intro"), 1) is None  # no variants
    # Another experiment name is another split: about half of "story" stay "story".
    other = parse_campaign(EXAMPLE, TEMPLATES)
    renamed = other.step("lesson").__class__(**{**vars(step), "experiment": "lesson_story_2"})
    again = [variant_for(other, renamed, i) for i in range(1, 10_001)]
    both = sum(a == b == "story" for a, b in zip(arms, again, strict=True))
    assert 0.04 < both / 10_000 < 0.085  # independent: 0.25 * 0.25 = 0.0625
    held = sum(held_out(campaign, i) for i in range(1, 10_001)) / 10_000
    assert abs(held - 0.10) < 0.01, held


# ---------------------------------------------------------------- schema and lint


@pytest.mark.parametrize(
    "old, new, expected",
    [
        (
            "      - {name: plain, weight: 3}\n",
            "",
            "trial.yaml: step 2 (lesson) field variants: an experiment needs at least two",
        ),
        ("name: plain, weight: 3", "name: story, weight: 3", "a variant name is used twice"),
        ("name: plain, weight: 3", "name: plain, weight: 0", "step 2 (lesson) field variants.0"),
        ("name: plain, weight: 3", "name: Plain!, weight: 3", "field variants.0.name"),
        (
            "template: lesson_story",
            "template: lesson_nowhere",
            "trial.yaml: step 2 (lesson) field variants.story.template: unknown template, "
            "trial/en/lesson_nowhere.html does not exist",
        ),
        (
            'subject: {en: "A story about your back", es: "Una historia sobre su espalda"}',
            'subject: {en: "A story about your back", es: ""}',
            "trial.yaml: step 2 (lesson) field variants.story.subject: no subject for locale 'es'",
        ),
        ("holdout: 10%", "holdout: 60%", "trial.yaml: field holdout: a holdout is between"),
        ("holdout: 10%", "holdout: ten", "trial.yaml: field holdout: 'ten' is not a share"),
        ("experiment: lesson_story_1", "experiment: 'a b'", "step 2 (lesson) field experiment"),
        ("weight: 1\n", "weight: 1\n        colour: red\n", "field variants.1.colour"),
    ],
)
def test_schema_errors_name_file_step_and_field(tmp_path, old, new, expected):
    text = EXAMPLE.read_text()
    assert old in text
    path = tmp_path / "trial.yaml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(DefinitionError) as err:
        parse_campaign(path, TEMPLATES)
    assert any(expected in p for p in err.value.problems), err.value.problems


def test_lint_renders_every_variant_in_every_locale(tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    # Only the story arm's Spanish copy is broken: the lint must render that arm to see it.
    (templates / "trial" / "es" / "lesson_story.html").write_text("<p>{{ no_such_field }}</p>\n")
    campaign = parse_campaign(EXAMPLE, templates)
    ctx = LintContext(templates, "https://care.example", "Lunara", "1 Test Street")
    findings = lint_campaign(campaign, ctx)
    broken = {(f.step, f.locale) for f in findings if "no_such_field" in f.message}
    assert broken == {("lesson variant story", "es")}, findings
    assert next(f for f in findings if "no_such_field" in f.message).severity == "error"
    # Every arm in every locale was rendered and checked (the fixture layout lacks some
    # footer links, so each rendering has findings of its own to show it was looked at).
    looked_at = {(f.step, f.locale) for f in findings}
    for arm in ("plain", "story"):
        for locale in ("en", "es"):
            assert (f"lesson variant {arm}", locale) in looked_at
    assert not any(f.step == "lesson" for f in findings)  # the step's own copy is not an arm


def test_review_fingerprint_covers_every_variant(tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    campaign = parse_campaign(EXAMPLE, templates)
    step = campaign.step("lesson")
    before = fingerprint(campaign, step, templates)
    # The step's own copy alone is another fingerprint: the arms are part of the copy.
    plain = step.__class__(**{**vars(step), "variants": ()})
    assert fingerprint(campaign, plain, templates) != before
    story = templates / "trial" / "en" / "lesson_story.txt"
    story.write_text(story.read_text() + "One more line.\n")
    assert fingerprint(campaign, step, templates) != before  # only the arm's text changed
    changed = tmp_path / "trial.yaml"
    changed.write_text(EXAMPLE.read_text().replace("A story about your back", "A back story"))
    new, old = parse_campaign(changed, TEMPLATES), parse_campaign(EXAMPLE, TEMPLATES)
    assert fingerprint(new, new.step("lesson"), TEMPLATES) != fingerprint(
        old, old.step("lesson"), TEMPLATES
    )  # only an arm's subject changed


# ---------------------------------------------------------------- sending and re-rendering


def test_the_arm_is_on_the_row_and_in_every_rendering(send_ctx, tmp_path, outbox):
    ctx = send_ctx
    reg = no_holdout(tmp_path)
    ids = enroll_many(ctx, reg, 12)
    tick(ctx, reg)
    ctx.clock.advance(days=1, minutes=1)
    tick(ctx, reg)
    campaign = reg.get("trial")
    rows = lesson_rows(ctx)
    assert sorted(m.enrollment_id for m in rows) == sorted(ids)
    assert {m.variant for m in rows} == {"plain", "story"}  # 12 people: both arms (fixed ids)
    subjects = {"plain": "Your lesson", "story": "A story about your back"}
    for m in rows:
        assert m.variant == variant_for(campaign, campaign.step("lesson"), m.enrollment_id)
        assert m.status == "sent"
        assert subject_of(outbox, m.id) == subjects[m.variant]  # as sent
    assert all(m.variant is None for m in messages(ctx.factory) if m.step_key == "intro")
    base = "https://care.example"
    story_id = dict((u, i) for i, u in _story_links(reg, ctx, base, rows))[STORY]
    for m in rows:
        with ctx.factory() as s:
            visit = Visit(s.get(Message, m.id), s.get(Subscriber, m.subscriber_id))
            page = lesson(reg, ctx.renderer, ctx.signer, base, visit)  # read online
            assert page.subject == subjects[m.variant]
            story_link = dict((url, lid) for lid, url in page.links).get(STORY)
            if m.variant == "story":
                assert destination(reg, ctx.renderer, ctx.signer, base, visit, story_link) == STORY
            else:
                assert story_link is None
                with pytest.raises(NotFound):  # the plain arm never held that link
                    destination(reg, ctx.renderer, ctx.signer, base, visit, story_id)


def _story_links(reg, ctx, base, rows):
    m = next(r for r in rows if r.variant == "story")
    with ctx.factory() as s:
        visit = Visit(s.get(Message, m.id), s.get(Subscriber, m.subscriber_id))
        return lesson(reg, ctx.renderer, ctx.signer, base, visit).links


def test_test_send_of_a_variant(send_ctx, tmp_path, outbox):
    ctx = send_ctx
    reg = no_holdout(tmp_path)
    with ctx.factory() as s:
        results = send_test(
            s, reg, ctx.renderer, ctx.signer, "https://care.example", outbox, outbox,
            SendTestRequest("trial", ["lesson"], "es", email="me@example.com", variant="story"),
        )  # fmt: skip
        assert [r.outcome.value for r in results] == ["accepted"]
        sent = next((outbox.folder / "adhoc").glob("email-*.eml")).read_bytes()
        subject = email.message_from_bytes(sent, policy=email.policy.default)["Subject"]
        assert str(subject) == "[TEST] Una historia sobre su espalda"
        for bad in (["intro"], ["lesson"]):
            with pytest.raises(ValueError, match="variant"):
                send_test(
                    s, reg, ctx.renderer, ctx.signer, "https://care.example", outbox, outbox,
                    SendTestRequest("trial", bad, "en", email="me@example.com",
                                    variant="story" if bad == ["intro"] else "nope"),
                )  # fmt: skip


# ---------------------------------------------------------------- holdout


def test_holdout_is_enrolled_but_never_messaged(send_ctx, tmp_path):
    ctx = send_ctx
    reg = course(tmp_path, EXAMPLE.read_text().replace("holdout: 10%", "holdout: 40%"))
    ids = enroll_many(ctx, reg, 20)
    tick(ctx, reg)
    ctx.clock.advance(days=1, minutes=1)
    tick(ctx, reg)
    campaign = reg.get("trial")
    held = {i for i in ids if held_out(campaign, i)}
    assert 0 < len(held) < len(ids)
    rows = messages(ctx.factory)
    for m in rows:
        if m.enrollment_id in held:
            assert (m.status, m.reason_code) == ("skipped", "holdout")  # a terminal row
        else:
            assert m.status == "sent"
    assert {(m.enrollment_id, m.step_key) for m in rows} == {
        (i, k) for i in ids for k in ("intro", "lesson")
    }  # every step of everyone ends in a row (invariant 3)
    with ctx.factory() as s:
        assert {e.status for e in s.scalars(select(Enrollment))} == {"completed"}
        report = campaign_report(s, reg, "trial")
    h = report.experiments.holdout
    assert (h.held_out.base, h.messaged.base) == (len(held), len(ids) - len(held))


# ---------------------------------------------------------------- the report


def wilson(k: int, n: int, z: float = norm.ppf(0.975)) -> tuple[float, float]:
    """Wilson's score interval, from the formula (Wilson 1927), not from scipy."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def two_proportion_p(k1, n1, k2, n2) -> float:
    """The pooled two-proportion z-test's two-sided p (the textbook formula)."""
    pooled = (k1 + k2) / (n1 + n2)
    z = (k1 / n1 - k2 / n2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return 2 * norm.sf(abs(z))


def test_report_per_variant_with_intervals_and_verdicts(send_ctx, tmp_path):
    ctx = send_ctx
    text = EXAMPLE.read_text().replace("holdout: 10%", "holdout: 20%")
    reg = course(tmp_path, text.replace("weight: 3", "weight: 1"))
    enroll_many(ctx, reg, 80)
    tick(ctx, reg)
    ctx.clock.advance(days=1, minutes=1)
    tick(ctx, reg)
    rows = [m for m in lesson_rows(ctx) if m.status == "sent"]
    arms = {a: [m for m in rows if m.variant == a] for a in ("plain", "story")}
    n = {a: len(ms) for a, ms in arms.items()}
    assert min(n.values()) >= 20, n
    opens = {"plain": 3, "story": 16}
    clicks = {"plain": 1, "story": 2}
    with transaction(ctx.factory) as s:
        for arm, ms in arms.items():
            for i, m in enumerate(ms):
                visit = Visit(s.get(Message, m.id), s.get(Subscriber, m.subscriber_id))
                if i < opens[arm]:
                    record_engagement(s, ctx.clock, visit, "opened", {"route": "o"})
                    record_engagement(s, ctx.clock, visit, "opened", {"route": "o"})  # twice
                if i < clicks[arm]:
                    record_engagement(s, ctx.clock, visit, "clicked", {"route": "m"})
                # A scanner opens every message: left out, as in the funnel.
                record_engagement(s, ctx.clock, visit, "opened", {"route": "o"}, why=Why.SCANNER)
        goals = {"plain": 2, "story": 5}
        for arm, ms in arms.items():
            for m in ms[: goals[arm]]:
                s.execute(
                    update(Enrollment)
                    .where(Enrollment.id == m.enrollment_id)
                    .values(goal_reached_at=ctx.clock.now() + timedelta(hours=1))
                )
    with ctx.factory() as s:
        report = campaign_report(s, reg, "trial")
    (step,) = report.experiments.steps
    assert (step.step_key, step.channel) == ("lesson", "email")
    got = {a.name: a for a in step.arms}
    funnel = next(f for f in report.steps if f.step_key == "lesson")
    assert sum(a.opens.count for a in step.arms) == funnel.opens == 19  # machine-free, unique
    assert sum(a.sent for a in step.arms) == funnel.sent
    for arm in ("plain", "story"):
        a = got[arm]
        assert (a.sent, a.opens.count, a.clicks.count, a.goals.count) == (
            n[arm],
            opens[arm],
            clicks[arm],
            goals[arm],
        )
        assert a.call_requests.count == 0
        ci = binomtest(opens[arm], n[arm]).proportion_ci(method="wilson")
        assert (a.opens.low, a.opens.high) == pytest.approx((ci.low, ci.high), abs=1e-12)
        assert (a.opens.low, a.opens.high) == pytest.approx(wilson(opens[arm], n[arm]), abs=1e-9)
    p = two_proportion_p(opens["plain"], n["plain"], opens["story"], n["story"])
    table = [[opens[a], n[a] - opens[a]] for a in ("plain", "story")]
    assert step.verdicts["opens"].p_value == pytest.approx(p, rel=1e-9)
    assert step.verdicts["opens"].p_value == pytest.approx(
        chi2_contingency(table, correction=False).pvalue, rel=1e-12
    )
    assert p < 0.05 and step.verdicts["opens"].significant
    assert step.verdicts["clicks"].sentence == "too few to tell"  # 3 clicks in all
    assert not step.verdicts["call_requests"].significant
    lines = experiment_lines(report.experiments)
    print("\n".join(lines))
    assert any(line.startswith("  difference: opens significant (p = ") for line in lines)
    assert f"  story (weight 1): sent {n['story']}; opens 16 " in "\n".join(lines)
    # And through the JSON the CLI prints.
    data = report.to_dict()["experiments"]
    assert data["steps"][0]["differences"]["opens"]["significant"] is True
    assert data["holdout"]["share"] == 0.2


def test_compare_edge_cases():
    assert compare([interval(0, 10), interval(0, 12)]).sentence.startswith("no difference")
    assert compare([interval(3, 10)]).sentence == "nothing to compare yet"
    assert compare([interval(40, 100), interval(42, 100)]).significant is False
    assert interval(0, 0).low is None


# ---------------------------------------------------------------- promote the winner


def test_promote_is_a_live_edit_that_keeps_the_review(send_ctx, tmp_path, outbox):
    ctx = send_ctx
    reg = no_holdout(tmp_path)
    path = reg.definitions_dir / "trial.yaml"
    today = ctx.clock.now().date()
    record_reviews(path, TEMPLATES, [], "Ana Ruiz, PT", today, today)
    assert review_state(reg.get("trial"), reg.get("trial").step("lesson"), TEMPLATES, today).ok
    ids = enroll_many(ctx, reg, 6)
    tick(ctx, reg)  # the intro goes; the lesson is a day away
    done = promote(path, TEMPLATES, "lesson", "story", today)
    assert done.review_kept
    text = path.read_text()
    assert "variants" not in text and "experiment:" not in text
    assert "template: lesson_story" in text
    assert "# An example experiment" in text  # comments kept
    campaign = reg.get("trial")  # the workers read the new file as after any edit
    step = campaign.step("lesson")
    assert not step.variants
    assert review_state(campaign, step, TEMPLATES, today).ok
    ctx.clock.advance(days=1, minutes=1)
    tick(ctx, reg)
    rows = lesson_rows(ctx)
    assert sorted(m.enrollment_id for m in rows) == sorted(ids)
    for m in rows:
        assert m.variant is None
        assert subject_of(outbox, m.id) == "A story about your back"
    assert len(messages(ctx.factory)) == 12  # nothing twice
    with pytest.raises(PromoteError, match="no variants"):
        promote(path, TEMPLATES, "lesson", "story", today)
    with pytest.raises(PromoteError, match="no step 'nope'"):
        promote(path, TEMPLATES, "nope", "story", today)


def test_promote_without_a_holding_review_needs_one(tmp_path):
    path = tmp_path / "trial.yaml"
    path.write_text(EXAMPLE.read_text())
    with pytest.raises(PromoteError, match="no variant 'gold'.*plain, story"):
        promote(path, TEMPLATES, "lesson", "gold", date(2026, 3, 2))
    done = promote(path, TEMPLATES, "lesson", "plain", date(2026, 3, 2))
    assert not done.review_kept and "needs a clinical review" in done.sentence
    campaign = parse_campaign(path, TEMPLATES)
    assert campaign.step("lesson").template == "lesson"
    assert campaign.step("lesson").subject["en"] == "Your lesson"


def test_admin_page_and_promote_button(factory, clock, tmp_path):
    from tests.test_admin import AUTH, POST, make_app

    folder = tmp_path / "defs"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "trial.yaml")
    client = TestClient(make_app(factory, clock, tmp_path, definitions_dir=folder))
    page = client.get("/admin/campaigns/trial", headers=AUTH)
    assert page.status_code == 200
    assert 'id="experiments"' in page.text and "Promote" in page.text
    assert 'aria-label="Experiment ' in page.text and '<table class="experiment">' in page.text
    url = "/admin/campaigns/trial/promote"
    assert (
        client.post(url, data={"step": "lesson", "variant": "x"}, headers=POST).status_code == 400
    )
    assert client.post(url, data={"step": "lesson", "variant": "x" * 300},
                       headers=POST).status_code in (400, 422)  # fmt: skip
    evil = {**AUTH, "Origin": "https://evil.example"}
    assert client.post(url, data={"step": "lesson", "variant": "story"},
                       headers=evil).status_code == 403  # fmt: skip
    assert client.post("/admin/campaigns/none/promote", data={"step": "a", "variant": "b"},
                       headers=POST).status_code == 404  # fmt: skip
    ok = client.post(url, data={"step": "lesson", "variant": "story"}, headers=POST)
    assert ok.status_code == 200 and "promoted" in ok.text
    assert "variants" not in (folder / "trial.yaml").read_text()


def test_promote_button_publishes_the_next_revision_where_it_runs_from_the_database(
    factory, clock, tmp_path
):
    from campaigns.db import transaction
    from campaigns.models import SequenceRevision
    from campaigns.sequences.store import seed
    from tests.test_admin import AUTH, POST, make_app

    folder = tmp_path / "defs"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "trial.yaml")
    with transaction(factory) as s:  # the fixture's copy is not lint-clean: seeded as is
        seed(s, clock, folder, TEMPLATES, TEMPLATES)
    client = TestClient(
        make_app(factory, clock, tmp_path, definitions_dir=folder, sequences_source="database")
    )
    url = "/admin/campaigns/trial/promote"
    page = client.get("/admin/campaigns/trial", headers=AUTH)
    assert '<button type="submit">Promote</button>' in page.text
    bad = client.post(url, data={"step": "lesson", "variant": "gold"}, headers=POST)
    assert bad.status_code == 400 and "no variant" in bad.text
    ok = client.post(url, data={"step": "lesson", "variant": "story"}, headers=POST)
    assert ok.status_code == 200 and "promoted" in ok.text
    assert "variants" in (folder / "trial.yaml").read_text()  # the seed file is not edited
    with factory() as s:
        sources = [r.source for r in s.query(SequenceRevision).order_by(SequenceRevision.number)]
    assert sources == ["seed", "promote"]
    before = client.get("/admin/campaigns/trial", headers=AUTH)
    assert before.status_code == 200  # this process runs the new revision at once: no arms
    assert '<button type="submit">Promote</button>' not in before.text


def _trial_for_the_cli(tmp_path, source: str):
    defs = tmp_path / "definitions"
    defs.mkdir()
    shutil.copy(EXAMPLE, defs / "trial.yaml")
    return defs, {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
        "DEFINITIONS_DIR": str(defs),
        "TEMPLATES_DIR": str(TEMPLATES),
        "BROKER_DIR": str(tmp_path / "broker"),
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        "SEQUENCES_SOURCE": source,
    }


def test_drip_campaigns_promote(tmp_path):
    from tests.test_cli import drip

    # The campaign runs from its file: the file is edited.
    defs, settings = _trial_for_the_cli(tmp_path, "files")
    assert drip(settings, "db", "upgrade").exit_code == 0  # the promotion is audited there
    bad = drip(settings, "campaigns", "promote", "trial", "lesson", "gold")
    assert bad.exit_code == 1 and "no variant 'gold'" in bad.output
    assert drip(settings, "campaigns", "promote", "nope", "a", "b").exit_code == 1
    ok = drip(settings, "campaigns", "promote", "trial", "lesson", "story")
    assert ok.exit_code == 0, ok.output
    assert "variant story promoted" in ok.output
    assert parse_campaign(defs / "trial.yaml", TEMPLATES).step("lesson").template == "lesson_story"


def test_drip_campaigns_promote_publishes_the_next_revision(tmp_path):
    """Where the campaign runs from the database, the winner becomes its next revision;
    the file it was seeded from is left as it was."""
    from campaigns.clock import SystemClock
    from campaigns.db import make_engine, make_session_factory, transaction
    from campaigns.models import AuditEntry, SequenceRevision
    from campaigns.sequences.bundles import Bundle, parse_bundle
    from campaigns.sequences.store import seed
    from tests.test_cli import drip

    defs, settings = _trial_for_the_cli(tmp_path, "database")
    assert drip(settings, "db", "upgrade").exit_code == 0
    factory = make_session_factory(make_engine(settings["DATABASE_URL"]))
    with transaction(factory) as s:  # the fixture's copy is not lint-clean: seeded as is
        seed(s, SystemClock(), defs, TEMPLATES, TEMPLATES)
    bad = drip(settings, "campaigns", "promote", "trial", "lesson", "gold")
    assert bad.exit_code == 1 and "no variant 'gold'" in bad.output
    ok = drip(settings, "campaigns", "promote", "trial", "lesson", "story")
    assert ok.exit_code == 0, ok.output
    assert "variants" in (defs / "trial.yaml").read_text()
    with factory() as s:
        rows = s.query(SequenceRevision).order_by(SequenceRevision.number).all()
        assert [(r.number, r.source) for r in rows] == [(1, "seed"), (2, "promote")]
        latest = Bundle("trial", rows[-1].definition, rows[-1].templates, rows[-1].file_name)
        actions = [e.action for e in s.query(AuditEntry).order_by(AuditEntry.id)]
    assert parse_bundle(latest, TEMPLATES).step("lesson").template == "lesson_story"
    assert actions[-2:] == ["campaign.promote", "sequence.publish"]
