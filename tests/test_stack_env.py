"""The test stack's processes (tests/stack.py) are immune to a deployment's `.env`: a
checkout where someone ran compose's `cp .env.example .env` and filled it in must not
give the tests' workers SendGrid, Twilio, real keys or another Redis."""

from __future__ import annotations

import subprocess
import sys

from tests.stack import ROOT, Stack

HOSTILE = """\
ENVIRONMENT=production
EMAIL_PROVIDER=sendgrid
SMS_PROVIDER=twilio
SENDGRID_API_KEY=SG.a-real-key
REDIS_URL=redis://127.0.0.1:1/0
PUBLIC_BASE_URL=https://drip.example.org
"""
SHOW = (
    "from settings import get_settings; s = get_settings(); "
    "print(s.environment, s.email_provider, s.sms_provider, s.redis_url, s.public_base_url)"
)


def test_the_stacks_processes_run_outside_the_checkout_and_state_their_providers(tmp_path):
    stack = Stack(tmp_path, f"sqlite:///{tmp_path / 'drip.sqlite3'}", None)
    assert stack.cwd != ROOT and not (stack.cwd / ".env").exists()
    # Even with a hostile .env where they run, what the stack states wins.
    (stack.cwd / ".env").write_text(HOSTILE)
    shown = subprocess.run(
        [sys.executable, "-c", SHOW],
        cwd=stack.cwd,
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert shown[:3] == ["test", "outbox", "outbox"], shown


def test_the_stacks_settings_ignore_a_env_in_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text(HOSTILE)
    monkeypatch.chdir(tmp_path)
    settings = Stack(tmp_path, f"sqlite:///{tmp_path / 'drip.sqlite3'}", None).settings()
    assert (settings.environment, settings.email_provider, settings.sms_provider) == (
        "test",
        "outbox",
        "outbox",
    )
    assert settings.redis_url is None
    assert settings.public_base_url == "http://localhost:8000"
