"""Sequences in the database: files pushed become revisions and come back byte for byte,
every process runs the newest revision without a restart, a publish is checked and
audited, history only grows, and `drip campaigns diff` shows copy and body edits."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from campaigns.clock import ScaledClock
from campaigns.content.rendering import Renderer, Sender
from campaigns.db import make_engine, make_session_factory, transaction
from campaigns.editing.publishing import publish_checked
from campaigns.models import AuditEntry, SequenceRevision
from campaigns.sequences import store
from campaigns.sequences.bundles import Bundle, read_bundle
from campaigns.sequences.deployed import DeployedRegistry
from campaigns.sequences.timing import Policy
from campaigns.staff.audit import Actor
from settings import load_settings
from tests.conftest import FIXTURES
from tests.helpers import add_and_enroll
from tests.stack import VIRTUAL_EPOCH, open_stack
from tests.test_live_edits import tick
from workers.cli import main
from workers.cli.context import Drip
from workers.runtime import build_runtime, lint_context

ROOT = Path(__file__).resolve().parent.parent
NINA = Actor("nina", "marketer", "127.0.0.1")


@pytest.fixture
def course(tmp_path):
    """A copy of the shipped course (its comments, quoting and both languages)."""
    defs, templates = tmp_path / "defs", tmp_path / "templates"
    shutil.copytree(ROOT / "campaigns" / "definitions", defs)
    shutil.copytree(ROOT / "templates", templates)
    return defs, templates


def _cli(factory, clock, defs, templates, *args, **env):
    settings = load_settings(
        environment="test",
        secret_key="store-test-secret-key-0123456789abcdef",
        definitions_dir=defs,
        templates_dir=templates,
        sequences_source="database",
        **env,
    )
    rt = build_runtime(settings, factory=factory, clock=clock)
    return CliRunner().invoke(main, list(args), obj=Drip.around(rt), catch_exceptions=False)


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_push_then_pull_gives_back_every_file_byte_for_byte(clean_pg_url, clock, course, tmp_path):
    factory = make_session_factory(make_engine(clean_pg_url))
    defs, templates = course
    # Line endings, non-ASCII text and a file no step names travel too.
    (templates / "hip_and_back" / "es" / "nota.txt").write_bytes("año\r\nseñal\r\n".encode())
    pushed = _cli(factory, clock, defs, templates, "campaigns", "push", "--no-bodies")
    assert pushed.exit_code == 0, pushed.output
    assert pushed.output.count("published revision 1") == 2
    history = _cli(factory, clock, defs, templates, "campaigns", "history", "hip_and_back")
    assert "push     cli:" in history.output and "(running)" in history.output

    out_defs, out_templates = tmp_path / "pulled" / "defs", tmp_path / "pulled" / "templates"
    shutil.copytree(ROOT / "templates" / "_layout", out_templates / "_layout")
    pulled = _cli(factory, clock, out_defs, out_templates, "campaigns", "pull")
    assert pulled.exit_code == 0, pulled.output
    assert _tree(out_defs) == _tree(defs)
    for key in ("hip_and_back", "check_in"):
        assert _tree(out_templates / key) == _tree(templates / key)
    assert "año\r\nseñal\r\n".encode() == (out_templates / "hip_and_back/es/nota.txt").read_bytes()

    again = _cli(factory, clock, defs, templates, "campaigns", "push", "--no-bodies")
    assert again.output.count("unchanged: the files are revision 1") == 2
    # A pull over edited files puts them back and removes what the revision lacks.
    (out_templates / "hip_and_back" / "en" / "stray.html").write_text("x")
    (out_defs / "hip_and_back.yaml").write_text("key: nope\n")
    _cli(factory, clock, out_defs, out_templates, "campaigns", "pull", "hip_and_back")
    assert _tree(out_templates / "hip_and_back") == _tree(templates / "hip_and_back")
    assert (out_defs / "hip_and_back.yaml").read_bytes() == (
        defs / "hip_and_back.yaml"
    ).read_bytes()


def test_push_is_refused_whole_on_a_lint_error_and_on_unreviewed_copy(clean_pg_url, clock, course):
    factory = make_session_factory(make_engine(clean_pg_url))
    defs, templates = course
    assert _cli(factory, clock, defs, templates, "campaigns", "push").exit_code == 0
    welcome = templates / "hip_and_back" / "en" / "welcome.html"
    welcome.write_text(welcome.read_text() + "<p>{{ first_nmae }}</p>")
    broken = _cli(factory, clock, defs, templates, "campaigns", "push", "hip_and_back")
    assert broken.exit_code == 1
    assert "first_nmae" in broken.output and "nothing published" in broken.output

    welcome.write_text(welcome.read_text().replace("<p>{{ first_nmae }}</p>", "<p>Hi.</p>"))
    unreviewed = _cli(factory, clock, defs, templates, "campaigns", "push", "hip_and_back")
    assert unreviewed.exit_code == 1
    assert "clinical review: copy changed since" in unreviewed.output
    with factory() as s:
        assert store.heads(s) == {"hip_and_back": 1, "check_in": 1}

    dry = _cli(
        factory, clock, defs, templates, "campaigns", "push", "hip_and_back", "--dry-run",
        publish_requires_review=False,
    )  # fmt: skip
    assert "dry run: 0 error(s); nothing published" in dry.output
    assert "+<p>Hi.</p>" in dry.output
    ok = _cli(
        factory, clock, defs, templates, "campaigns", "push", "hip_and_back", "--note", "hi",
        publish_requires_review=False,
    )  # fmt: skip
    assert ok.exit_code == 0 and "published revision 2" in ok.output
    with factory() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "sequence.publish")).all()
        assert [(e.target_id, e.before, e.after["revision"]) for e in entry][-1] == (
            "hip_and_back",
            {"revision": 1},
            2,
        )
        assert entry[-1].actor.startswith("cli:")


def test_every_process_runs_the_newest_revision_without_a_restart(db_url, clock, tmp_path):
    factory = make_session_factory(make_engine(db_url))
    defs = tmp_path / "defs"
    defs.mkdir()
    shutil.copy(FIXTURES / "definitions" / "tiny.yaml", defs)
    with transaction(factory) as s:
        assert store.seed(s, clock, defs, FIXTURES / "templates", FIXTURES / "templates") == [
            "tiny"
        ]
    registry = DeployedRegistry(factory, clock, defs, FIXTURES / "templates", refresh_seconds=60)
    assert set(registry.campaigns()) == {"tiny"} and registry.running == {"tiny": 1}
    with factory() as s:
        assert store.head(s, "tiny").source == "seed"

    bundle = read_bundle(defs, FIXTURES / "templates", "tiny")
    edited = bundle.replace(
        definition=bundle.definition.replace("delay: 1d", "delay: 3h"),
        templates={**bundle.templates, "en/hello.html": "<p>Brand new words.</p>"},
    )
    with transaction(factory) as s:
        done = store.publish(s, clock, NINA, edited, FIXTURES / "templates", source="browser")
    assert (done.number, done.previous, done.unchanged) == (2, 1, False)
    # The file it seeded from changes nothing now: the revision is what runs.
    (defs / "tiny.yaml").write_text((defs / "tiny.yaml").read_text().replace("Tiny", "File"))
    registry.refresh()
    assert registry.running == {"tiny": 2}
    assert registry.get("tiny").step("second").delay.total_seconds() == 3 * 3600

    renderer = Renderer(registry.templates_dir, Sender("Lunara", "1 Test Street"))
    from campaigns.delivery.sending import SendContext
    from campaigns.links import Signer
    from workers.providers.outbox import LocalOutbox

    outbox = LocalOutbox(tmp_path / "outbox")
    ctx = SendContext(
        factory=factory, clock=clock, registry=registry, renderer=renderer,
        signer=Signer(b"test-secret-key-for-links-0123456789"), policy=Policy(),
        base_url="https://care.example", email_provider=outbox, sms_provider=outbox,
    )  # fmt: skip
    add_and_enroll(factory, clock, registry, Policy(), email="a@example.com")
    tick(factory, clock, registry, Policy(), ctx)
    eml = next((outbox.folder / "email").iterdir()).read_text()
    assert "Brand new words." in eml

    # A rollback runs revision 1's files again, as revision 3.
    with transaction(factory) as s:
        back = store.rollback(s, clock, NINA, "tiny", 1, FIXTURES / "templates")
        assert store.head(s, "tiny").digest == bundle.digest
    registry.refresh()
    assert back.number == 3 and registry.running == {"tiny": 3}
    assert registry.get("tiny").step("second").delay.total_seconds() == 86400
    assert (
        "Brand new words." not in renderer.templates_dir.joinpath("tiny/en/hello.html").read_text()
    )


def test_a_publish_is_refused_when_stale_broken_or_a_rollback_to_what_runs(clean_pg_url, clock):
    factory = make_session_factory(make_engine(clean_pg_url))
    shared = FIXTURES / "templates"
    bundle = read_bundle(FIXTURES / "definitions", shared, "tiny")
    with transaction(factory) as s:
        store.publish(s, clock, NINA, bundle, shared, source="push", expect_head=None)
    changed = bundle.replace(definition=bundle.definition.replace("Tiny", "Small"))
    with transaction(factory) as s, pytest.raises(store.PublishError, match="after this draft"):
        store.publish(s, clock, NINA, changed, shared, source="browser", expect_head=0)
    missing = bundle.replace(
        templates={k: v for k, v in bundle.templates.items() if "second" not in k}
    )
    with transaction(factory) as s, pytest.raises(store.PublishError, match="second.html"):
        store.publish(s, clock, NINA, missing, shared, source="push")
    wrong = Bundle("tiny", "key: other\n", bundle.templates)
    with transaction(factory) as s, pytest.raises(store.PublishError):
        store.publish(s, clock, NINA, wrong, shared, source="push")
    with transaction(factory) as s, pytest.raises(store.PublishError, match="is the one running"):
        store.rollback(s, clock, NINA, "tiny", 1, shared)
    with transaction(factory) as s, pytest.raises(store.PublishError, match="no revision 7"):
        store.rollback(s, clock, NINA, "tiny", 7, shared)
    with transaction(factory) as s:
        same = store.publish(s, clock, NINA, bundle, shared, source="push")
    assert same.unchanged and same.number == 1
    # History is never edited: a rollback is a new revision.
    with pytest.raises(ValueError, match="history"), transaction(factory) as s:
        s.scalars(select(SequenceRevision)).first().note = "rewritten"
        s.flush()


def test_publish_checked_refuses_lint_errors_and_unreviewed_copy(clean_pg_url, clock):
    factory = make_session_factory(make_engine(clean_pg_url))
    shared = ROOT / "templates"
    bundle = read_bundle(ROOT / "campaigns" / "definitions", shared, "hip_and_back")
    settings = load_settings(environment="test", secret_key="x" * 40)
    ctx = lint_context(settings)
    curly = bundle.templates["en/welcome.sms.txt"].replace("'", "\u2019") + " it\u2019s"
    with transaction(factory) as s, pytest.raises(store.PublishError, match="GSM-7"):
        texts = {**bundle.templates, "en/welcome.sms.txt": curly}
        publish_checked(
            s, clock, NINA, bundle.replace(templates=texts), ctx, shared,
            source="browser", require_review=False,
        )  # fmt: skip
    plain = bundle.templates["en/welcome.html"].replace("Welcome", "Hello")
    edited = bundle.replace(templates={**bundle.templates, "en/welcome.html": plain})
    with transaction(factory) as s, pytest.raises(store.PublishError, match="clinical review"):
        publish_checked(s, clock, NINA, edited, ctx, shared, source="browser")
    with transaction(factory) as s:
        done = publish_checked(
            s, clock, NINA, edited, ctx, shared, source="browser", require_review=False
        )
    assert done.number == 1


def test_diff_shows_subject_and_body_edits_with_and_without_against(
    clean_pg_url, clock, course, tmp_path
):
    factory = make_session_factory(make_engine(clean_pg_url))
    defs, templates = course
    assert _cli(factory, clock, defs, templates, "campaigns", "push").exit_code == 0
    old_copy = tmp_path / "old.yaml"
    shutil.copy(defs / "hip_and_back.yaml", old_copy)
    old_templates = tmp_path / "old_templates"
    shutil.copytree(templates, old_templates)
    yaml_path = defs / "hip_and_back.yaml"
    text = yaml_path.read_text()
    assert "Welcome to your four-week course" in text
    yaml_path.write_text(text.replace("Welcome to your four-week course", "Your course starts"))
    body = templates / "hip_and_back" / "es" / "diagnosis.html"
    body.write_text(body.read_text() + "<p>Una línea nueva.</p>\n")

    against_db = _cli(factory, clock, defs, templates, "campaigns", "diff", str(yaml_path))
    files = _cli(
        factory, clock, defs, templates, "campaigns", "diff", str(yaml_path),
        "--against", str(old_copy), "--against-templates", str(old_templates),
    )  # fmt: skip
    for out in (against_db.output, files.output):
        assert "copy       step welcome: subject (en) 'Welcome to your four-week course'" in out
        assert "'Your course starts'" in out
        assert "copy       step diagnosis: body es/diagnosis.html" in out
        assert "+<p>Una línea nueva.</p>" in out
    assert "running revision 1" in against_db.output

    # In a git checkout, --against-rev reads the file and its templates at that revision.
    repo = tmp_path / "repo"
    (repo / "campaigns").mkdir(parents=True)
    shutil.copytree(old_templates, repo / "templates")
    shutil.copytree(tmp_path / "defs", repo / "campaigns" / "definitions")
    shutil.copy(old_copy, repo / "campaigns" / "definitions" / "hip_and_back.yaml")
    body_in_repo = repo / "templates" / "hip_and_back" / "es" / "diagnosis.html"
    body_in_repo.write_bytes((old_templates / "hip_and_back/es/diagnosis.html").read_bytes())
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "-C", str(repo), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "old"], check=True)
    shutil.copy(yaml_path, repo / "campaigns" / "definitions" / "hip_and_back.yaml")
    body_in_repo.write_bytes(body.read_bytes())
    rev = _cli(
        factory, clock, repo / "campaigns" / "definitions", repo / "templates", "campaigns",
        "diff", str(repo / "campaigns" / "definitions" / "hip_and_back.yaml"),
        "--against-rev", "HEAD",
    )  # fmt: skip
    assert "'Your course starts'" in rev.output and "+<p>Una línea nueva.</p>" in rev.output


def test_deployed_says_which_files_differ_from_what_runs(clean_pg_url, clock, course):
    factory = make_session_factory(make_engine(clean_pg_url))
    defs, templates = course
    first = _cli(factory, clock, defs, templates, "campaigns", "deployed")
    assert "hip_and_back: no revision (seeded on the next start, or push it)" in first.output
    # A command never publishes: a dry run of new files leaves the database as it was.
    dry = _cli(factory, clock, defs, templates, "campaigns", "push", "--dry-run")
    assert dry.exit_code == 0 and "dry run: 0 error(s); nothing published" in dry.output
    assert _cli(factory, clock, defs, templates, "campaigns", "history", "check_in").output == (
        "check_in: no revisions yet (its file seeds one at the next start)\n"
    )
    # The long-running processes seed as they start.
    rt = build_runtime(
        load_settings(
            environment="test", secret_key="s" * 40, definitions_dir=defs,
            templates_dir=templates, sequences_source="database",
        ),
        factory=factory, clock=clock,
    )  # fmt: skip
    assert sorted(rt.seed_sequences()) == ["check_in", "hip_and_back"]
    assert rt.registry.running == {"check_in": 1, "hip_and_back": 1}
    other = defs.parent / "other"
    other.mkdir()
    (other / "extra.yaml").write_text((FIXTURES / "definitions" / "tiny.yaml").read_text())
    listed = _cli(factory, clock, defs, templates, "campaigns", "deployed", "--dir", str(other))
    assert "check_in: revision 1 (seed by system); no file here" in listed.output
    assert "extra: no revision (seeded on the next start, or push it); file here" in listed.output
    out = _cli(factory, clock, defs, templates, "campaigns", "deployed").output
    assert "hip_and_back: revision 1 (seed by system); files equal it" in out
    (templates / "check_in" / "en" / "check_in.html").write_text("<p>x</p>")
    out = _cli(factory, clock, defs, templates, "campaigns", "deployed").output
    assert "check_in: revision 1 (seed by system); files differ: push or pull" in out
    history = _cli(factory, clock, defs, templates, "campaigns", "history", "nothing")
    assert history.exit_code == 2
    assert "Invalid value for 'KEY': no campaign 'nothing' (known: check_in, hip_and_back)" in (
        history.output
    )


@pytest.fixture(params=["embedded", "redis-postgres"])
def stack(request, tmp_path):
    st = open_stack(request, tmp_path)
    yield st
    st.stop_all()


@pytest.mark.slow
def test_a_running_worker_sends_a_published_edit_with_no_restart(stack, tmp_path):
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "live.yaml").write_text(
        "key: live\nversion: 1\nname: Live\nlocales: [en]\n"
        "frequency_cap: {per_day: 0, per_week: 0}\n"
        "steps:\n  - {key: one, delay: 0m, channels: [email], template: hello, subject: Hi}\n"
    )
    templates = tmp_path / "templates"
    shutil.copytree(FIXTURES / "templates" / "_layout", templates / "_layout")
    shutil.copytree(FIXTURES / "templates" / "tiny", templates / "live")
    factory = make_session_factory(make_engine(stack.database_url))
    clock = ScaledClock(stack.real_epoch, VIRTUAL_EPOCH, 1.0)
    with transaction(factory) as s:
        store.seed(s, clock, defs, templates, templates)
    registry = DeployedRegistry(factory, clock, defs, templates, refresh_seconds=0.2)
    stack.start_worker(
        "w1", DEFINITIONS_DIR=defs, TEMPLATES_DIR=templates, SEQUENCES_SOURCE="database",
        SEQUENCES_REFRESH_SECONDS="0.5",
    )  # fmt: skip

    def emails(n):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = sorted((stack.outbox / "email").glob("*.eml"))
            if len(found) >= n:
                return [p.read_text() for p in found]
            time.sleep(0.1)
        raise AssertionError(f"{n} emails not sent in 60 s\n{stack.logs()}")

    add_and_enroll(factory, clock, registry, Policy(), campaign="live", email="a@example.com")
    assert "Brand new words" not in emails(1)[0]
    bundle = read_bundle(defs, templates, "live")
    with transaction(factory) as s:
        words = {**bundle.templates, "en/hello.html": "<p>Brand new words.</p>"}
        store.publish(s, clock, NINA, bundle.replace(templates=words), templates, source="browser")
    time.sleep(1.5)  # longer than the worker's refresh: its next send reads revision 2
    add_and_enroll(factory, clock, registry, Policy(), campaign="live", email="b@example.com")
    assert sum("Brand new words." in e for e in emails(2)) == 1


def test_the_impact_names_a_changed_send_window_for_everyone_enrolled(db_url, clock, tmp_path):
    from campaigns.editing.impact import impact
    from campaigns.editing.impact_words import sentence

    factory = make_session_factory(make_engine(db_url))
    defs = tmp_path / "defs"
    defs.mkdir()
    shutil.copy(FIXTURES / "definitions" / "tiny.yaml", defs)
    with transaction(factory) as s:
        store.seed(s, clock, defs, FIXTURES / "templates", FIXTURES / "templates")
    registry = DeployedRegistry(factory, clock, defs, FIXTURES / "templates")
    for who in ("a", "b"):
        add_and_enroll(factory, clock, registry, Policy(), email=f"{who}@example.com")
    old = read_bundle(defs, FIXTURES / "templates", "tiny")
    new = old.replace(
        definition=old.definition.replace(
            '[mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00"',
            '[mon, tue, wed, thu, fri], start: "09:00", end: "17:00"',
        )
    )
    with factory() as s:
        found = impact(s, old, new, FIXTURES / "templates")
    (change,) = found.changes
    assert (change.kind, change.affected) == ("window", 2)
    assert sentence(change) == (
        "Changes the send window (mon,tue,wed,thu,fri,sat,sun 00:00-24:00 -> "
        "mon,tue,wed,thu,fri 09:00-17:00 (judged at each send, in each person's own time)) "
        "for all 2 people enrolled"
    )


def test_a_campaign_renders_from_the_revision_it_came_from_and_a_bad_one_stops_no_other(
    db_url, clock, tmp_path
):
    """A batch holding revision 1's campaign renders revision 1's bodies even after
    revision 2 lands in the same process; a revision that cannot be installed (a file name
    leading out of its folder) leaves the other campaigns, and its own last good one,
    running."""
    factory = make_session_factory(make_engine(db_url))
    shared = FIXTURES / "templates"
    with transaction(factory) as s:
        store.seed(s, clock, FIXTURES / "definitions", shared, shared)
    registry = DeployedRegistry(factory, clock, FIXTURES / "definitions", shared)
    renderer = Renderer(registry.templates_dir, Sender("Lunara", "1 Test Street"))
    from campaigns.content.rendering import Recipient
    from campaigns.links import Signer, links_for

    links = links_for("https://care.example", Signer(b"k" * 32), "tok", range(0))
    first = registry.get("tiny")
    bundle = read_bundle(FIXTURES / "definitions", shared, "tiny")
    words = {**bundle.templates, "en/hello.html": "<p>Revision two's words.</p>"}
    with transaction(factory) as s:
        store.publish(s, clock, NINA, bundle.replace(templates=words), shared, source="push")
    registry.refresh()
    second = registry.get("tiny")
    old = renderer.email(first, first.step("hello"), Recipient("Ana", "en"), links).html
    new = renderer.email(second, second.step("hello"), Recipient("Ana", "en"), links).html
    assert "Revision two's words." in new and "Revision two's words." not in old

    # A row no publish would write: its templates name a file outside the folder.
    from campaigns.models import SequenceRevision

    evil = dict(words, **{"../../escaped.txt": "x"})
    with transaction(factory) as s:
        s.add(
            SequenceRevision(
                campaign_key="tiny", number=3, file_name="tiny.yaml",
                definition=bundle.definition, templates=evil, digest="d" * 64,
                source="push", published_by="x", published_at=clock.now(),
            )
        )  # fmt: skip
    registry.refresh()
    assert set(registry.campaigns()) == {"tiny", "quick"}
    assert registry.running["tiny"] == 3 and registry.get("tiny") == second
    assert "not a plain path" in registry.errors["tiny"][0]
    assert not (registry.root / "escaped.txt").exists()
    assert not (registry.templates_dir / "escaped.txt").exists()


def test_two_publishes_at_once_refuse_the_later_cleanly(clean_pg_url, clock):
    import threading

    factory = make_session_factory(make_engine(clean_pg_url))
    shared = FIXTURES / "templates"
    bundle = read_bundle(FIXTURES / "definitions", shared, "tiny")
    flushed, outcome = threading.Event(), {}

    def first():
        with transaction(factory) as s:
            store.publish(s, clock, NINA, bundle, shared, source="push")
            flushed.set()
            time.sleep(0.5)  # the second waits on the unique key meanwhile

    thread = threading.Thread(target=first)
    thread.start()
    flushed.wait(10)
    with transaction(factory) as s:
        try:
            store.publish(s, clock, NINA, bundle, shared, source="push")
        except store.PublishError as exc:
            outcome["refused"] = exc.problems
        # The transaction is still usable: the caller can go on and commit.
        outcome["heads"] = store.heads(s)
    thread.join()
    assert "at the same moment" in outcome["refused"][0]
    assert outcome["heads"] == {"tiny": 1}


def test_cli_rollback_is_checked_like_any_publish(clean_pg_url, clock, course):
    factory = make_session_factory(make_engine(clean_pg_url))
    defs, templates = course
    assert _cli(factory, clock, defs, templates, "campaigns", "push").exit_code == 0
    welcome = templates / "hip_and_back" / "en" / "welcome.html"
    original = welcome.read_text()
    welcome.write_text(original.replace("Welcome", "Hello"))
    unreviewed = _cli(
        factory, clock, defs, templates, "campaigns", "push", "hip_and_back",
        publish_requires_review=False,
    )  # fmt: skip
    assert "published revision 2" in unreviewed.output
    welcome.write_text(original)
    assert (
        "published revision 3" in _cli(factory, clock, defs, templates, "campaigns", "push").output
    )
    refused = _cli(factory, clock, defs, templates, "campaigns", "rollback", "hip_and_back", "2")
    assert refused.exit_code == 1 and "clinical review" in refused.output
    assert "refused: nothing published" in refused.output
    same = _cli(factory, clock, defs, templates, "campaigns", "rollback", "hip_and_back", "1")
    assert same.exit_code == 0 and "unchanged: revision 3 already has these files" in same.output
    with factory() as s:
        assert store.heads(s)["hip_and_back"] == 3


def test_pull_keeps_file_modes_and_diff_against_rev_reads_any_name(
    clean_pg_url, clock, course, tmp_path
):
    factory = make_session_factory(make_engine(clean_pg_url))
    defs, templates = course
    _cli(factory, clock, defs, templates, "campaigns", "push")
    out = tmp_path / "out"
    (out / "templates").mkdir(parents=True)
    _cli(factory, clock, out / "defs", out / "templates", "campaigns", "pull", "check_in")
    assert (out / "defs" / "check_in.yaml").stat().st_mode & 0o777 == 0o644
    # A git checkout whose campaign folder holds a name with accents and a file that is not
    # UTF-8: the first is read, the second refused in one line.
    repo = tmp_path / "repo"
    shutil.copytree(defs, repo / "defs")
    shutil.copytree(templates, repo / "templates")
    (repo / "templates" / "check_in" / "es" / "café.txt").write_text("sí")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    (repo / "templates" / "check_in" / "es" / "café.txt").write_text("sí, claro")
    args = ["campaigns", "diff", str(repo / "defs" / "check_in.yaml"), "--against-rev", "HEAD"]
    found = _cli(factory, clock, repo / "defs", repo / "templates", *args)
    assert found.exit_code == 0, found.output
    assert "+sí, claro" in found.output and "-sí" in found.output
    (repo / "templates" / "check_in" / "es" / "latin1.txt").write_bytes("añ".encode("latin-1"))
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "y"], check=True)
    (repo / "templates" / "check_in" / "es" / "latin1.txt").unlink()  # only in git now
    bad = _cli(factory, clock, repo / "defs", repo / "templates", *args)
    assert bad.exit_code == 1 and "not UTF-8 text" in bad.output
    assert "Traceback" not in bad.output
