"""The `drip` command as people type it: clear errors, non-zero exits, nothing half-done."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from settings import ROOT
from tests.conftest import FIXTURES


@pytest.fixture
def env(tmp_path, monkeypatch):
    defs = tmp_path / "definitions"
    shutil.copytree(FIXTURES / "definitions", defs)
    return {"DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}", "DEFINITIONS_DIR": str(defs),
            "TEMPLATES_DIR": str(FIXTURES / "templates"), "BROKER_DIR": str(tmp_path / "broker"),
            "OUTBOX_DIR": str(tmp_path / "outbox"), "PATH": "/usr/bin:/bin"}


def drip(env, *args):
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False, timeout=60)


def test_commands_on_an_unmigrated_database_say_how_to_fix_it(env):
    result = drip(env, "status")
    assert result.returncode == 1 and "run `drip db upgrade`" in result.stderr


def test_enroll_status_and_bad_input(env):
    assert drip(env, "db", "upgrade").returncode == 0
    ok = drip(env, "enroll", "--campaign", "tiny", "--email", "a@example.com", "--timezone", "Asia/Kolkata")
    assert ok.returncode == 0 and "next step hello" in ok.stdout
    bad = drip(env, "enroll", "--campaign", "tiny", "--email", "b@example.com", "--phone", "555")
    assert bad.returncode == 1 and "phone: '555' is not" in bad.stderr
    unknown = drip(env, "enroll", "--campaign", "nope", "--email", "c@example.com")
    assert unknown.returncode == 1 and "no campaign 'nope'" in unknown.stderr
    status = drip(env, "status")
    assert "enrollments: active 1" in status.stdout and "queues:" in status.stdout


def test_validate_names_file_step_and_field(env):
    path = Path(env["DEFINITIONS_DIR"]) / "tiny.yaml"
    path.write_text(path.read_text().replace("delay: 2d", "delay: -1d"))
    result = drip(env, "campaigns", "validate")
    assert result.returncode == 1
    assert "tiny.yaml: step 3 (third) field delay: delay must not be negative" in result.stderr


def test_channels_pause_and_resume(env):
    drip(env, "db", "upgrade")
    assert drip(env, "channels", "pause", "email", "--reason", "key rotation").returncode == 0
    assert "email: paused" in drip(env, "channels", "list").stdout
    assert drip(env, "channels", "resume", "email").returncode == 0
    assert "no channel is paused" in drip(env, "channels", "list").stdout


def test_settle_refuses_a_message_that_is_not_unconfirmed(env):
    drip(env, "db", "upgrade")
    result = drip(env, "outbox", "settle", "99", "--as", "resend")
    assert result.returncode == 1 and "no message 99" in result.stderr
