"""Clinical review as data (campaigns/content/review.py): the fingerprint of a step's copy,
the four review states, `drip campaigns review` writing the campaign file, the lint and
its --strict mode, and the admin page. Campaign files and templates are copied into
tmp_path and edited there; nothing here touches the shipped ones."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from campaigns.content.review import (
    ReviewError,
    copy_templates,
    fingerprint,
    record_reviews,
    review_state,
)
from campaigns.sequences.campaign import DefinitionError, parse_campaign
from settings import ROOT, Settings
from tests.conftest import FIXTURES, T0
from tests.test_admin import AUTH, make_app
from workers.cli import main

DAY = date(2026, 3, 2)
BY = "Ana Ruiz, PT"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


@pytest.fixture
def course(tmp_path):
    """The fixture campaigns and templates, with a shared partial that includes another."""
    shutil.copytree(FIXTURES / "definitions", tmp_path / "definitions")
    shutil.copytree(FIXTURES / "templates", tmp_path / "templates")
    partials = tmp_path / "templates" / "_partials" / "en"
    partials.mkdir(parents=True)
    (partials / "call_us.html").write_text(
        '<p>Questions? Ask us to call.</p>{% include "_partials/en/sign_off.html" %}\n'
    )
    (partials / "sign_off.html").write_text("<p>The Lunara care team</p>\n")
    edit(
        tmp_path / "templates/tiny/en/hello.html",
        "</p>",
        '</p>\n{% include "_partials/en/call_us.html" %}',
    )
    return tmp_path


def load(folder: Path, key: str = "tiny"):
    return parse_campaign(folder / "definitions" / f"{key}.yaml", folder / "templates")


def fp(folder: Path, step: str = "hello", key: str = "tiny") -> str:
    campaign = load(folder, key)
    return fingerprint(campaign, campaign.step(step), folder / "templates")


def state(folder: Path, step: str, today: date, key: str = "tiny"):
    campaign = load(folder, key)
    return review_state(campaign, campaign.step(step), folder / "templates", today)


def sign(folder: Path, steps=(), by=BY, on=DAY, today=DAY, key="tiny"):
    path = folder / "definitions" / f"{key}.yaml"
    return record_reviews(path, folder / "templates", list(steps), by, on, today)


# ---------------------------------------------------------------- the fingerprint


def test_the_copy_is_the_step_templates_in_every_channel_and_what_they_include(course):
    campaign = load(course)
    assert copy_templates(campaign, campaign.step("hello"), course / "templates") == [
        "_partials/en/call_us.html",
        "_partials/en/sign_off.html",
        "tiny/en/hello.html",
        "tiny/en/hello.sms.txt",
        "tiny/en/hello.txt",
    ]
    assert fp(course).startswith("sha256:") and len(fp(course)) == len("sha256:") + 16
    assert fp(course) == fp(course)  # the same copy, the same fingerprint


@pytest.mark.parametrize(
    "change",
    [
        ("definitions/tiny.yaml", 'subject: "Welcome', 'subject: "Hello'),
        ("definitions/tiny.yaml", 'preheader: "Lesson', 'preheader: "Class'),
        ("templates/tiny/en/hello.html", "Hello", "Hi"),
        ("templates/tiny/en/hello.txt", "\n", " \n"),
        ("templates/tiny/en/hello.sms.txt", "{{", "Read: {{"),
        ("templates/_partials/en/call_us.html", "call", "phone"),
        ("templates/_partials/en/sign_off.html", "care team", "team"),  # included by a partial
    ],
    ids=["subject", "preheader", "html", "text", "sms", "partial", "nested-partial"],
)
def test_an_edit_of_the_copy_changes_the_fingerprint(course, change):
    before = fp(course)
    edit(course / change[0], change[1], change[2])
    assert fp(course) != before


@pytest.mark.parametrize(
    "change",
    [
        ("templates/_layout/en/email.html", "Educational", "Education"),
        ("templates/_layout/en/email.txt", "\n", "\n\n"),
        ("templates/_layout/en/sms.txt", "{{", " {{"),
        ("templates/tiny/en/second.html", "<p>", "<p>Changed. "),  # another step's copy
        ("definitions/tiny.yaml", "delay: 0m", "delay: 5m"),  # timing, not copy
    ],
    ids=["layout-html", "layout-text", "layout-sms", "other-step", "delay"],
)
def test_layouts_and_other_steps_are_not_part_of_the_copy(course, change):
    before = fp(course)
    edit(course / change[0], change[1], change[2])
    assert fp(course) == before


def test_copy_that_cannot_be_followed_is_an_error_not_a_guess(course):
    hello = course / "templates/tiny/en/hello.html"
    hello.write_text('{% include "_partials/" ~ locale ~ "/call_us.html" %}')
    with pytest.raises(ReviewError, match="computed name"):
        fp(course)
    hello.write_text('{% include "_partials/en/gone.html" %}')
    with pytest.raises(ReviewError, match="_partials/en/gone.html: template not found"):
        fp(course)
    hello.write_text("{% if %}")
    with pytest.raises(ReviewError, match="tiny/en/hello.html:1: syntax error"):
        fp(course)


# ---------------------------------------------------------------- the four states


def test_never_reviewed(course):
    s = state(course, "hello", DAY)
    assert (s.state, s.by, s.on, s.ok, s.label) == ("never", None, None, False, "never reviewed")


def test_reviewed_then_changed_since(course):
    signed = sign(course, ["hello"], on=DAY - timedelta(days=3))
    assert [(r.step_key, r.by, r.on, r.copy) for r in signed] == [
        ("hello", BY, DAY - timedelta(days=3), fp(course))
    ]
    s = state(course, "hello", DAY)
    assert (s.state, s.by, s.on) == ("reviewed", BY, date(2026, 2, 27))
    assert s.sentence == "reviewed by Ana Ruiz, PT on 2026-02-27"
    assert state(course, "second", DAY).state == "never"  # only the step named

    edit(course / "templates/_partials/en/sign_off.html", "care team", "team")
    s = state(course, "hello", DAY)
    assert (s.state, s.label) == ("changed", "changed since review")
    assert s.sentence == "copy changed since Ana Ruiz, PT reviewed it on 2026-02-27"
    edit(course / "templates/_partials/en/sign_off.html", "team", "care team")
    assert state(course, "hello", DAY).state == "reviewed"  # the reviewed copy is back


def test_expired_counts_from_the_date_passed_in(course):
    on = date(2025, 3, 1)
    sign(course, on=on)
    assert state(course, "hello", on + timedelta(days=365)).state == "reviewed"
    s = state(course, "hello", on + timedelta(days=366))
    assert (s.state, s.label) == ("expired", "review over a year old")
    assert "366 days ago" in s.sentence
    assert state(course, "third", date(2030, 1, 1)).state == "expired"


def test_a_review_dated_in_the_future_is_not_counted(course):
    sign(course, on=DAY)
    assert state(course, "hello", DAY - timedelta(days=1)).state == "reviewed"  # time zones
    s = state(course, "hello", DAY - timedelta(days=2))
    assert s.state == "never" and "in the future" in s.sentence


def test_the_review_in_the_file_is_checked_like_every_other_field(course):
    path = course / "definitions/tiny.yaml"
    edit(
        path,
        "    template: second\n",
        "    template: second\n    review: {by: A, on: 2026-01-02}\n",
    )
    with pytest.raises(DefinitionError, match=r"step 2 \(second\) field review: write .*`date:`"):
        load(course)
    edit(path, "on: 2026-01-02", "date: 2026-13-02")
    with pytest.raises(DefinitionError, match="not a valid date"):
        load(course)
    edit(path, "date: 2026-13-02", 'date: 2026-01-02, copy: "sha256:12"')
    with pytest.raises(DefinitionError, match="field review.copy"):
        load(course)


# ---------------------------------------------------------------- recording a review


def test_signing_keeps_every_comment_field_and_blank_line(tmp_path):
    shutil.copytree(ROOT / "campaigns" / "definitions", tmp_path / "definitions")
    path = tmp_path / "definitions" / "hip_and_back.yaml"
    unsign(path)
    before = path.read_text()
    assert "# Hip and back pain" in before and "\n\n  - key: hip_pain" in before
    templates = ROOT / "templates"
    signed = record_reviews(path, templates, [], BY, DAY, DAY)
    after = path.read_text()
    added = [line for line in after.splitlines() if line not in before.splitlines()]
    assert len(signed) == 14 and len(added) == 14
    assert all(
        line.startswith('    review: {by: "Ana Ruiz, PT", date: 2026-03-02, copy: ')
        for line in added
    )
    assert [line for line in after.splitlines() if line not in added] == before.splitlines()
    campaign = parse_campaign(path, templates)
    assert all(review_state(campaign, s, templates, DAY).ok for s in campaign.steps)
    assert [s.subject for s in campaign.steps] == [
        s.subject
        for s in parse_campaign(ROOT / "campaigns/definitions/hip_and_back.yaml", templates).steps
    ]


def test_signing_flow_style_steps_and_re_signing_a_block_review(course):
    sign(course, key="quick")
    lines = (course / "definitions/quick.yaml").read_text().splitlines()
    assert lines[-1].startswith(
        "  - {key: three, delay: 0m, channels: [sms], template: third, review: {by:"
    )
    assert state(course, "three", DAY, key="quick").ok

    path = course / "definitions/tiny.yaml"
    edit(
        path,
        "    template: second\n",
        "    template: second\n"
        "    # signed on paper first, see ticket 12\n"
        "    review:\n"
        '      by: "Bo Li, MD"  # the first reviewer\n'
        "      date: 2026-01-05\n"
        '      copy: "sha256:0000000000000000"\n',
    )
    signed = sign(course, ["second"])
    assert signed[0].previous == "replaces the review by Bo Li, MD on 2026-01-05"
    text = path.read_text()
    assert (
        '    # signed on paper first, see ticket 12\n    review:\n      by: "Ana Ruiz, PT"' in text
    )
    assert '"Ana Ruiz, PT" # the first reviewer' in text and "date: 2026-03-02" in text
    assert state(course, "second", DAY).ok


def test_a_file_in_another_common_layout_keeps_it(course):
    path = course / "definitions/tiny.yaml"
    path.write_text(path.read_text().replace("\n  - key:", "\n- key:").replace("\n    ", "\n  "))
    before = path.read_text()
    assert "\n- key: third\n  delay: 2d\n" in before
    sign(course, ["third"])
    assert (
        path.read_text()
        == before + f'  review: {{by: "{BY}", date: 2026-03-02, copy: "{fp(course, "third")}"}}\n'
    )


def test_a_file_whose_layout_would_change_is_left_alone_and_the_lines_are_printed(course):
    path = course / "definitions/tiny.yaml"
    edit(
        path,
        'send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00"}',
        'send_window:\n      start: "00:00"',
    )
    before = path.read_text()
    assert load(course).step("third")  # a valid file, indented two ways
    with pytest.raises(ReviewError) as err:
        sign(course, ["third"])
    assert "cannot add the review without changing other parts" in str(err.value)
    line = f'third: review: {{by: "{BY}", date: 2026-03-02, copy: "{fp(course, "third")}"}}'
    assert line in str(err.value)
    assert path.read_text() == before


@pytest.mark.parametrize(
    "args, message",
    [
        ({"by": "  "}, "name the reviewer"),
        ({"by": "Ana Ruiz"}, "'Name, credential'"),
        ({"by": "Ana\nRuiz, PT"}, "control character"),
        ({"steps": ["hello", "nope"]}, "tiny has no step 'nope' (its steps: hello, second, third)"),
        ({"on": DAY + timedelta(days=1)}, "in the future"),
    ],
)
def test_signing_refuses_and_writes_nothing(course, args, message):
    path = course / "definitions/tiny.yaml"
    before = path.read_text()
    with pytest.raises(ReviewError) as err:
        sign(course, **args)
    assert message in str(err.value)
    assert path.read_text() == before


# ---------------------------------------------------------------- the command line


@pytest.fixture
def shipped(tmp_path):
    """A private copy of the shipped course with its reviews taken out (it lints clean
    but for them), and the env to run drip on it."""
    shutil.copytree(ROOT / "campaigns" / "definitions", tmp_path / "definitions")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    unsign(tmp_path / "definitions" / "hip_and_back.yaml")
    return tmp_path


def unsign(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.lstrip().startswith("review:")]
    # A review per step, but for a step added since the last signing (the lead signs it).
    assert len(lines) - len(kept) >= 11, "the shipped course should carry its reviews"
    path.write_text("".join(kept))


def test_the_shipped_course_passes_strict_as_it_is(tmp_path):
    shutil.copytree(ROOT / "campaigns" / "definitions", tmp_path / "definitions")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    strict = drip(tmp_path, "campaigns", "lint", "--strict")
    assert strict.exit_code == 0, strict.output
    assert "clinical review: 14 of 14 steps reviewed and unchanged" in strict.stdout
    # The record says what kind of check it was, for whoever signs it off clinically.
    assert "non-clinical source check" in strict.stdout


def drip(folder: Path, *args):
    env = {name.upper(): None for name in Settings.model_fields} | {
        "DEFINITIONS_DIR": str(folder / "definitions"),
        "TEMPLATES_DIR": str(folder / "templates"),
        "DATABASE_URL": f"sqlite:///{folder / 'cli.sqlite3'}",
    }
    return CliRunner().invoke(main, list(args), env=env)


def test_lint_warns_strict_fails_until_the_course_is_signed(shipped):
    result = drip(shipped, "campaigns", "lint")
    assert result.exit_code == 0, result.output
    assert (
        "warning: hip_and_back.yaml: step welcome: clinical review: never reviewed; "
        "sign: drip campaigns review hip_and_back welcome --by 'Name, credential'"
    ) in result.stdout
    assert "info: hip_and_back.yaml: clinical review: 0 of 14 steps reviewed" in result.stdout
    assert "0 error(s), 14 warning(s)" in result.stdout

    strict = drip(shipped, "campaigns", "lint", "--strict", "--quiet")
    assert strict.exit_code == 1
    assert (
        "error: hip_and_back.yaml: step next_step: clinical review: never reviewed" in strict.stderr
    )
    assert "14 error(s), 0 warning(s)" in strict.stdout

    signed = drip(shipped, "campaigns", "review", "hip_and_back", "--by", BY, "--on", "2026-03-01")
    assert signed.exit_code == 0, signed.output
    assert (
        "signed hip_and_back welcome: reviewed by Ana Ruiz, PT on 2026-03-01, copy sha256:"
        in signed.stdout
    )
    assert "14 step(s) signed in" in signed.stdout

    strict = drip(shipped, "campaigns", "lint", "--strict", "--quiet")
    assert strict.exit_code == 0, strict.output
    assert "0 error(s), 0 warning(s)" in strict.stdout
    everything = drip(shipped, "campaigns", "lint")
    held = "info: hip_and_back.yaml: step diagnosis: clinical review: reviewed by Ana Ruiz, PT on"
    assert f"{held} 2026-03-01\n" in everything.stdout

    edit(shipped / "templates/hip_and_back/es/diagnosis.txt", "\n", "\nUna frase nueva.\n")
    strict = drip(shipped, "campaigns", "lint", "--strict", "--quiet")
    assert strict.exit_code == 1
    assert (
        "error: hip_and_back.yaml: step diagnosis: clinical review: "
        "copy changed since Ana Ruiz, PT reviewed it on 2026-03-01"
    ) in strict.stderr
    assert "1 error(s)" in strict.stdout


def test_a_review_over_a_year_old_fails_strict(shipped):
    drip(
        shipped, "campaigns", "review", "hip_and_back", "welcome", "--by", BY, "--on", "2020-01-01"
    )
    strict = drip(shipped, "campaigns", "lint", "--strict", "--quiet")
    assert strict.exit_code == 1
    assert "step welcome: clinical review: reviewed by Ana Ruiz, PT on 2020-01-01" in strict.stderr
    assert "over a year, review again" in strict.stderr


def test_review_command_refusals(course):
    path = course / "definitions/tiny.yaml"
    before = path.read_text()
    for args, message in [
        (["tiny", "--by", ""], "name the reviewer"),
        (["tiny", "nope", "--by", BY], "tiny has no step 'nope'"),
        (["tiny", "--by", BY, "--on", "2999-01-01"], "is in the future"),
        (["tiny", "--by", BY, "--on", "01/02/2026"], "not a date like"),
        (["nope", "--by", BY], "no campaign 'nope'"),
    ]:
        result = drip(course, "campaigns", "review", *args)
        assert result.exit_code != 0 and message in result.stderr, (args, result.output)
    assert drip(course, "campaigns", "review", "tiny").exit_code == 2  # --by is required
    assert path.read_text() == before


# ---------------------------------------------------------------- the admin page


def test_admin_campaign_page_shows_each_steps_review(factory, clock, course):
    today = T0.date()
    sign(course, ["one"], on=date(2026, 3, 1), today=today, key="quick")
    sign(course, ["two"], on=date(2025, 2, 1), today=today, key="quick")
    sign(course, ["three"], on=date(2026, 2, 1), today=today, key="quick")
    edit(course / "templates/quick/en/third.sms.txt", "{{", "New line. {{")
    app = make_app(
        factory,
        clock,
        course,
        definitions_dir=course / "definitions",
        templates_dir=course / "templates",
    )
    client = TestClient(app)
    page = client.get("/admin/campaigns/quick", headers=AUTH)
    assert page.status_code == 200
    review = page.text.split('<h2 id="review">Clinical review</h2>')[1]
    rows = review.split("<tr>")[2:]
    assert "one" in rows[0] and '"badge reviewed">reviewed<' in rows[0]
    assert "reviewed by Ana Ruiz, PT on 2026-03-01" in rows[0]
    assert "two" in rows[1] and "review over a year old" in rows[1]
    assert "three" in rows[2] and "changed since review" in rows[2]
    assert "copy changed since Ana Ruiz, PT reviewed it on 2026-02-01" in rows[2]
    assert "1 of 3 steps reviewed and unchanged" in review
    assert '<a href="#review">clinical review: 1 of 3 steps</a>' in page.text

    tiny = client.get("/admin/campaigns/tiny", headers=AUTH).text
    assert tiny.count('"badge never">never reviewed<') == 3
