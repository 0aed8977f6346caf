"""LOG_FORMAT=json: a real worker's stderr is one JSON object a line, with a line per task
(name, id, message ids, duration, outcome) and the provider's ids beside ours; a real
uvicorn logs one line per request with its request id and the token cut short; and an
address in any log line is masked, in text and JSON alike."""

from __future__ import annotations

import io
import json
import logging
import socket
import subprocess
import sys
import time

import httpx
import pytest
from sqlalchemy import select

from campaigns.clock import ScaledClock
from campaigns.db import make_engine, make_session_factory
from campaigns.models import Message
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy
from tests.conftest import FIXTURES
from tests.helpers import add_and_enroll
from tests.stack import ROOT, VIRTUAL_EPOCH, open_stack, wait_until_done
from web.request_log import masked_path, request_id
from workers import logs
from workers.app import make_app

EMAIL, PHONE = "lena.marsh@example.com", "+12025550188"


@pytest.fixture(params=["embedded"])
def stack(request, tmp_path):
    st = open_stack(request, tmp_path)
    yield st
    st.stop_all()


def _json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines
    return [json.loads(line) for line in lines]  # every line, or this raises


def _spawn(stack, name: str, args: list[str], **env) -> tuple[subprocess.Popen, object]:
    err = open(stack.tmp / f"{name}.err", "wb")  # noqa: SIM115 (the child keeps it)
    out = open(stack.tmp / f"{name}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        args, cwd=ROOT, env=stack.env(**env), stdout=out, stderr=err, start_new_session=True
    )
    stack.procs.append(proc)
    return proc, stack.tmp / f"{name}.err"


@pytest.mark.slow
def test_worker_logs_json_lines_that_follow_a_message(stack):
    engine = make_engine(stack.database_url)
    factory = make_session_factory(engine)
    clock = ScaledClock(stack.real_epoch, VIRTUAL_EPOCH, 1.0)
    registry = Registry(FIXTURES / "definitions", FIXTURES / "templates")
    add_and_enroll(factory, clock, registry, Policy(), campaign="quick", email=EMAIL, phone=PHONE)
    args = [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-B"]
    args += ["-s", str(stack.tmp / "beat"), "-Q", "schedule,email,sms,events", "-c", "1"]
    args += ["--without-mingle", "--without-gossip", "--without-heartbeat", "-l", "info"]
    _, err = _spawn(stack, "w1", args, LOG_FORMAT="json", LOG_LEVEL="info")
    rows = wait_until_done(factory, expected_messages=4)
    # The daily retention task, run now by this worker (nothing is old enough to prune).
    make_app(stack.settings()).send_task("drip.retention")
    deadline = time.monotonic() + 30
    while '"drip.retention"' not in err.read_text() and time.monotonic() < deadline:
        time.sleep(0.3)
    time.sleep(1.0)  # the last task's line is written just after its rows commit
    stack.stop_all()
    engine.dispose()
    text = err.read_text()
    lines = _json_lines(text)
    assert EMAIL not in text and PHONE not in text
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line)
    # Celery's own lines are JSON too.
    assert any(line["logger"].startswith("celery") for line in lines), text[-2000:]

    tasks = [line for line in lines if line["logger"] == "drip.tasks"]
    ticks = [t for t in tasks if t["task"] == "drip.tick" and t["outcome"] == "SUCCESS"]
    assert ticks and all(t["task_id"] and t["duration_ms"] >= 0 for t in ticks)
    assert any(t["result"]["claimed"] > 0 for t in ticks)
    (pruned,) = [t for t in tasks if t["task"] == "drip.retention"]
    assert pruned["outcome"] == "SUCCESS" and pruned["result"]["events_deleted"] == 0
    email = next(m for m in rows if m.channel == "email" and m.step_key == "one")
    sends = [t for t in tasks if t["task"] == "drip.send_email" and email.id in t["message_ids"]]
    assert len(sends) == 1 and sends[0]["outcome"] == "SUCCESS"
    # ... handed out by a tick that claimed it.
    assert sends[0]["parent_task_id"] in {t["task_id"] for t in ticks if t["result"]["email"]}
    assert sends[0]["result"]["sent"] == 1
    # The send task's own lines carry its task id; one names the provider's id for it.
    recorded = [
        line
        for line in lines
        if line.get("task_id") == sends[0]["task_id"] and "provider_ids" in line
    ]
    with factory() as s:
        provider_id = s.scalar(select(Message.provider_message_id).where(Message.id == email.id))
    assert recorded and recorded[0]["provider_ids"][str(email.id)] == provider_id


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_web_request_is_one_json_line_with_its_id_and_no_whole_token(stack):
    port = _free_port()
    args = [sys.executable, "-m", "workers.cli", "web", "--port", str(port)]
    proc, err = _spawn(stack, "web", args, LOG_FORMAT="json")
    token = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA.abcdefghijklmnop"
    deadline = time.monotonic() + 30
    while True:
        try:
            answer = httpx.get(
                f"http://127.0.0.1:{port}/o/{token}", headers={"X-Request-ID": "trace-0001-abcd"}
            )
            break
        except httpx.TransportError:
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.2)
    assert answer.headers["x-request-id"] == "trace-0001-abcd"
    made_up = httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"X-Request-ID": "bad id\x7f"})
    generated = made_up.headers["x-request-id"]
    assert generated != "bad id\x7f" and len(generated) == 32
    time.sleep(0.5)
    stack.stop_all()
    text = err.read_text()
    lines = _json_lines(text)
    assert token not in text
    mine = [line for line in lines if line.get("request_id") == "trace-0001-abcd"]
    requests = [line for line in mine if line["logger"] == "drip.web"]
    assert len(requests) == 1, text
    line = requests[0]
    assert line["path"] == f"/o/{token[:6]}***" and line["method"] == "GET"
    assert line["status"] == answer.status_code and line["duration_ms"] >= 0
    assert any(x.get("request_id") == generated and x.get("path") == "/healthz" for x in lines)
    assert not any(x["logger"] == "uvicorn.access" for x in lines)  # ours instead
    assert any(x["logger"].startswith("uvicorn") for x in lines)  # uvicorn's own, as JSON


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_an_address_in_a_log_line_is_masked(fmt):
    out = io.StringIO()
    logs.configure(fmt, "INFO", stream=out)
    try:
        log = logging.getLogger("tests.masking")
        log.info("sending to %s, then %s", EMAIL, PHONE, extra={"to": EMAIL})
        log.warning("call (202) 555-0188 or write to " + EMAIL)
        try:
            raise ValueError(f"provider refused {EMAIL}")
        except ValueError:
            log.exception("failed on 2026-03-02 15:00:00 after 1234567 ms")
    finally:
        logs.configure("text", "WARNING")
    text = out.getvalue()
    assert EMAIL not in text and PHONE not in text and "555-0188" not in text
    assert "l***@example.com" in text and "+***88" in text
    assert "2026-03-02 15:00:00 after 1234567 ms" in text  # dates and numbers stay
    if fmt == "json":
        first = json.loads(text.splitlines()[0])
        assert first["message"] == "sending to l***@example.com, then +***88"
        assert first["to"] == "l***@example.com" and first["level"] == "INFO"


def test_token_paths_and_request_ids():
    assert masked_path("/l/abcdefghijkl.sig/7") == "/l/abcdef***/7"
    assert masked_path("/confirm/abcdefghij/stop") == "/confirm/abcdef***/stop"
    assert masked_path("/admin/campaigns/quick") == "/admin/campaigns/quick"
    assert masked_path("/o/") == "/o/"
    assert request_id([(b"x-request-id", b"req-12345678")]) == "req-12345678"
    for bad in (b"short", b"x" * 65, b"has space in it", b"\xff\xfe" * 5):
        assert request_id([(b"x-request-id", bad)]) != bad.decode("latin-1")


def test_log_settings():
    from settings import SettingsError, load_settings

    s = load_settings(log_format="JSON", log_level="debug")
    assert (s.log_format, s.log_level) == ("json", "DEBUG")
    with pytest.raises(SettingsError, match="LOG_FORMAT"):
        load_settings(log_format="xml")
