"""The `drip` command as people type it: clear errors, non-zero exits, nothing half-done.

Commands run in this process through Click's runner, with the environment a fresh shell
would give them (every setting unset but the test's own). Two run as real processes, to
show that `python -m workers.cli` (and so the `drip` script) starts and exits as promised.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from settings import ROOT, Settings
from tests.conftest import FIXTURES
from workers.cli import main


@pytest.fixture
def env(tmp_path):
    defs = tmp_path / "definitions"
    shutil.copytree(FIXTURES / "definitions", defs)
    return {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
        "DEFINITIONS_DIR": str(defs),
        "TEMPLATES_DIR": str(FIXTURES / "templates"),
        "BROKER_DIR": str(tmp_path / "broker"),
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        # The fixture campaigns are not lint-clean, so they would not be seeded as
        # revisions: these commands run them from the files.
        "SEQUENCES_SOURCE": "files",
    }


def drip(env, *args):
    unset = {name.upper(): None for name in Settings.model_fields}
    return CliRunner().invoke(main, list(args), env=unset | env)


def drip_process(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        cwd=ROOT,
        env=env | {"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_the_command_starts_as_a_process(env):
    result = drip_process(env, "--help")
    assert result.returncode == 0 and "db" in result.stdout and "outbox" in result.stdout


def test_commands_on_an_unmigrated_database_say_how_to_fix_it(env):
    result = drip_process(env, "status")
    assert result.returncode == 1 and "run `drip db upgrade`" in result.stderr
    result = drip(env, "status")
    assert result.exit_code == 1 and "run `drip db upgrade`" in result.stderr


def test_enroll_status_and_bad_input(env):
    assert drip(env, "db", "upgrade").exit_code == 0
    ok = drip(
        env,
        "enroll",
        "--campaign",
        "tiny",
        "--email",
        "a@example.com",
        "--timezone",
        "Asia/Kolkata",
    )
    assert ok.exit_code == 0 and "next step hello" in ok.stdout
    bad = drip(env, "enroll", "--campaign", "tiny", "--email", "b@example.com", "--phone", "555")
    assert bad.exit_code == 1 and "phone: '555' is not" in bad.stderr
    unknown = drip(env, "enroll", "--campaign", "nope", "--email", "c@example.com")
    assert unknown.exit_code == 1 and "no campaign 'nope'" in unknown.stderr
    status = drip(env, "status")
    assert "enrollments: active 1" in status.stdout and "queues:" in status.stdout


def test_validate_names_file_step_and_field(env):
    path = Path(env["DEFINITIONS_DIR"]) / "tiny.yaml"
    path.write_text(path.read_text().replace("delay: 2d", "delay: -1d"))
    result = drip(env, "campaigns", "validate")
    assert result.exit_code == 1
    assert "tiny.yaml: step 3 (third) field delay: delay must not be negative" in result.stderr


def test_channels_pause_and_resume(env):
    drip(env, "db", "upgrade")
    assert drip(env, "channels", "pause", "email", "--reason", "key rotation").exit_code == 0
    assert "email: paused" in drip(env, "channels", "list").stdout
    assert drip(env, "channels", "resume", "email").exit_code == 0
    assert "no channel is paused" in drip(env, "channels", "list").stdout


def test_settle_refuses_a_message_that_is_not_unconfirmed(env):
    drip(env, "db", "upgrade")
    result = drip(env, "outbox", "settle", "99", "--as", "resend")
    assert result.exit_code == 1 and "no message 99" in result.stderr


@pytest.mark.parametrize("args", [["status"], ["worker", "--help"]])
def test_a_bad_setting_is_one_message_naming_it_not_a_traceback(tmp_path, args):
    # The console script imports the Celery app before any command reads settings.
    env = {
        **{k: v for k, v in os.environ.items() if k != "TICK_SECONDS"},
        "TICK_SECONDS": "-1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'd.sqlite3'}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done
    assert "TICK_SECONDS" in done.stderr and "Traceback" not in done.stderr, done.stderr
