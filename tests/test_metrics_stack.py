"""Metrics from real processes: `drip web --workers 2` and `drip worker` (prefork pool) on
PostgreSQL and Redis, the fake SendGrid and Twilio behind the official SDKs, signed
webhooks posted over HTTP; both /metrics scraped over HTTP and read with
prometheus_client's parser. Each counter must have moved by exactly what happened,
whichever process of the web or the pool did it (multiprocess mode)."""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client.mmap_dict import MmapedDict
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from campaigns.models import Message
from campaigns.states import MessageStatus
from tests.fakes import FakeSendGrid, FakeTwilio, twilio_error
from tests.helpers import add_and_enroll
from tests.stack import ROOT, VIRTUAL_EPOCH, Stack, wait_until_done
from tests.test_deploy_metrics import names_used
from tests.test_ops_web import parse_prometheus
from tests.test_recovery import enroll, env_for
from tests.test_sendgrid_webhook import b64_public, signed
from workers.metrics import ENV
from workers.providers.sendgrid_webhook import REF_ARG
from workers.providers.twilio_webhook import SIGNATURE_HEADER

pytestmark = pytest.mark.slow

SID, TOKEN, SG_KEY = "AC" + "7" * 32, "tok-metrics", "SG.metrics-test-key"
PUBLIC = "https://care.example"
ADMIN = ("admin", "metrics-test-admin-password-0123456789")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def stack(tmp_path, clean_pg_url, redis_url):
    st = Stack(tmp_path, clean_pg_url, redis_url)
    yield st
    st.stop_all()


def start_drip(stack: Stack, name: str, *args: str, **extra) -> subprocess.Popen:
    """`drip <args>` as the deployment runs it, in a process group of its own."""
    env = stack.env(**extra)
    if ENV not in extra:
        env.pop(ENV, None)  # the command makes its own directory
    with open(stack.tmp / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", *args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    stack.procs.append(proc)
    return proc


def scrape(url: str, stack: Stack, auth=None, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = httpx.get(url, auth=auth, timeout=5)
            if answer.status_code == 200:
                return parse_prometheus(answer.text)
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} never answered 200\n{stack.logs()}")
        time.sleep(0.2)


def total(samples: dict, name: str, **labels) -> float:
    """The sum of a family's samples whose labels include these."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def virtual_now(stack: Stack) -> float:
    return VIRTUAL_EPOCH + (time.time() - stack.real_epoch)


def test_counters_from_a_real_web_and_worker_move_by_what_happened(stack):
    env = env_for(stack)
    enroll(env, 3)  # 12 messages: 6 emails, 6 texts (tests/fixtures quick.yaml)
    worker_port, web_port = free_port(), free_port()
    key = ec.generate_private_key(ec.SECP256R1())
    with (
        FakeTwilio(account_sid=SID, auth_token=TOKEN, clock=env[1].now) as twilio,
        FakeSendGrid(api_key=SG_KEY) as sendgrid,
    ):
        # The first text is answered 429: one transient 4xx, then a retry that goes through.
        twilio.enqueue(twilio_error(429, 20429, "Too Many Requests", {"Retry-After": "1"}))
        settings = {
            "SMS_PROVIDER": "twilio",
            "TWILIO_API_BASE_URL": twilio.url,
            "TWILIO_ACCOUNT_SID": SID,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "TWILIO_FROM_NUMBER": "+15557650002",
            "EMAIL_PROVIDER": "sendgrid",
            "SENDGRID_API_KEY": SG_KEY,
            "SENDGRID_API_HOST": sendgrid.url,
            "SENDGRID_WEBHOOK_PUBLIC_KEY": b64_public(key),
            "PUBLIC_BASE_URL": PUBLIC,
            "NO_PROXY": "127.0.0.1,localhost",
            "RETRY_BASE_SECONDS": 1,
            "RETRY_CAP_SECONDS": 2,
            "ADMIN_USER": ADMIN[0],
            "ADMIN_PASSWORD": ADMIN[1],
        }
        worker_args = ["worker", "-c", "2", "--beat", "-n", "m1@%h", "--without-heartbeat"]
        start_drip(stack, "worker", *worker_args, WORKER_METRICS_PORT=worker_port, **settings)
        start_drip(stack, "web", "web", "--port", str(web_port), "--workers", "2", **settings)
        rows = wait_until_done(env[0], expected_messages=12, timeout=90)
        texts, mails = twilio.sent_messages(), sendgrid.sent_mails()
        mail_calls = [r for r in sendgrid.requests if r.path.endswith("/mail/send")]
        text_calls = [
            r for r in twilio.requests if r.method == "POST" and r.path.endswith("/Messages.json")
        ]

    sent = collections.Counter(m.channel for m in rows if m.status == MessageStatus.SENT)
    assert sent == {"email": 6, "sms": 6}, stack.logs()

    # ---- the worker's own endpoint, served by its main process for the pool
    worker = scrape(f"http://127.0.0.1:{worker_port}/metrics", stack)
    outcomes = "drip_send_outcomes_total"
    assert total(worker, outcomes, channel="email", outcome="sent") == 6
    assert total(worker, outcomes, channel="sms", outcome="sent") == 6
    assert total(worker, outcomes, channel="sms", outcome="retry") == 1
    requests = "drip_provider_requests_total"
    assert len(text_calls) == 7 and len(texts) == 6
    assert total(worker, requests, channel="sms", provider="twilio") == 7
    assert total(worker, requests, channel="sms", outcome="accepted", code_class="2xx") == 6
    assert total(worker, requests, channel="sms", outcome="transient", code_class="4xx") == 1
    assert total(worker, requests, channel="email", provider="sendgrid") == len(mail_calls)
    assert (
        total(worker, requests, channel="email", outcome="accepted", code_class="2xx")
        == len(mails)
        == len(mail_calls)
    )
    latency = "drip_provider_request_duration_seconds_count"
    assert total(worker, latency, channel="sms") == 7
    assert total(worker, latency, channel="email") == len(mail_calls)
    assert total(worker, "drip_send_delay_seconds_count", channel="email") == 6
    assert total(worker, "drip_send_delay_seconds_count", channel="sms") == 6
    # Every message was due at enrollment; none waited longer than the test has run.
    assert 0 < total(worker, "drip_send_delay_seconds_sum") < 12 * (time.time() - stack.real_epoch)
    ticks = total(worker, "drip_ticks_total", result="ok")
    assert ticks >= 1 and total(worker, "drip_tick_duration_seconds_count") == ticks
    assert time.time() - total(worker, "drip_last_tick_timestamp_seconds") < 30

    # ---- webhooks to the web app (two uvicorn processes)
    base = f"http://127.0.0.1:{web_port}"
    scrape(f"{base}/metrics", stack, auth=ADMIN)  # up, and the first scrape answers
    sids = sorted(m.provider_message_id for m in rows if m.channel == "sms")[:3]
    status_url = f"{PUBLIC}/webhooks/twilio/status"
    with httpx.Client(base_url=base, timeout=10) as web:

        def twilio_post(url: str, form: dict, signature: str | None = None) -> int:
            sig = signature or RequestValidator(TOKEN).compute_signature(url, form)
            path = urlsplit(url).path
            return web.post(path, data=form, headers={SIGNATURE_HEADER: sig}).status_code

        for sid in [*sids, sids[0]]:  # three texts delivered, the first one's callback twice
            form = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": SID}
            assert twilio_post(status_url, form) == 200
        assert twilio_post(status_url, form, signature="forged") == 403
        inbound = f"{PUBLIC}/webhooks/twilio/inbound"
        for body, phone in (("STOP", texts[0]["To"]), ("Can someone call me?", texts[1]["To"])):
            form = {"MessageSid": "SM" + uuid.uuid4().hex, "From": phone, "Body": body}
            assert twilio_post(inbound, {**form, "To": "+15557650002", "AccountSid": SID}) == 200
        refs = [p["custom_args"][REF_ARG] for p in sendgrid_personalizations(mails)][:2]
        batch = json.dumps(
            [
                {"event": "delivered", "sg_event_id": f"ev-{n}", REF_ARG: ref}
                for n, ref in enumerate(refs)
            ]
        ).encode()
        stamp = int(virtual_now(stack))
        good = {**signed(key, batch, stamp), "Content-Type": "application/json"}
        assert web.post("/webhooks/sendgrid/events", content=batch, headers=good).status_code == 200
        forged = {**signed(key, b"[]", stamp), "Content-Type": "application/json"}
        assert (
            web.post("/webhooks/sendgrid/events", content=batch, headers=forged).status_code == 403
        )

    # Several scrapes: each lands on either process and must show the sum of both.
    for _ in range(4):
        web_samples = scrape(f"{base}/metrics", stack, auth=ADMIN)
        deliveries = "drip_webhook_deliveries_total"
        assert total(web_samples, deliveries, provider="twilio", result="accepted") == 6
        assert total(web_samples, deliveries, provider="twilio", result="refused") == 1
        assert total(web_samples, deliveries, provider="sendgrid", result="accepted") == 1
        assert total(web_samples, deliveries, provider="sendgrid", result="refused") == 1
        events = "drip_webhook_events_total"
        assert total(web_samples, events, provider="twilio", result="applied") == 3
        assert total(web_samples, events, provider="twilio", result="duplicate") == 1
        assert total(web_samples, events, provider="sendgrid", result="applied") == 2
        assert total(web_samples, "drip_inbound_texts_total", kind="opt_out") == 1
        assert total(web_samples, "drip_inbound_texts_total", kind="inbox") == 1
        # The database gauges in the same scrape.
        assert total(web_samples, "drip_messages", channel="sms", status="delivered") == 3
        assert total(web_samples, "drip_inbox_open") == 1
        assert total(web_samples, "drip_database_up") == total(web_samples, "drip_broker_up") == 1
    # The web app sends nothing: the worker's counters are not in its scrape.
    assert not [k for k in web_samples if k[0] == "drip_send_outcomes_total"]
    with env[0]() as s:
        delivered = s.scalars(
            select(Message.id).where(Message.status == MessageStatus.DELIVERED)
        ).all()
    assert len(delivered) == 5  # three texts, two emails

    # Every metric the alert rules and the dashboard ask for is in one of these scrapes.
    exposed = {name for name, _ in worker} | {name for name, _ in web_samples}
    missing = {where: names - exposed for where, names in names_used().items() if names - exposed}
    assert not missing, missing


def sendgrid_personalizations(mails: list[dict]) -> list[dict]:
    return [p for mail in mails for p in mail.get("personalizations", [])]


def sent_by_process(folder: Path) -> dict[int, float]:
    """drip_send_outcomes_total{outcome="sent"} as each process's own file holds it."""
    counts = {}
    for path in folder.glob("counter_*.db"):
        pid = int(path.stem.removeprefix("counter_"))
        counts[pid] = sum(
            value
            for key, value, *_ in MmapedDict.read_all_values_from_file(str(path))
            if json.loads(key)[0] == "drip_send_outcomes" and '"sent"' in key
        )
    return counts


def test_a_counter_adds_up_across_pool_processes_that_come_and_go(stack, tmp_path):
    """Two pool processes send, are killed, and two new ones send more: the worker's scrape
    counts every message, the dead processes' too (their files stay and are added up).
    And a file an earlier run left in the given PROMETHEUS_MULTIPROC_DIR is removed at
    start, so it adds nothing."""
    env = env_for(stack)
    enroll(env, 4)  # 16 messages on the local outbox
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"stale from an earlier run")
    port = free_port()
    start_drip(
        stack,
        "worker",
        *("worker", "-c", "2", "--beat", "-n", "m2@%h", "--without-heartbeat"),
        WORKER_METRICS_PORT=port,
        **{ENV: str(folder)},
    )
    wait_until_done(env[0], expected_messages=16, timeout=90)
    url = f"http://127.0.0.1:{port}/metrics"
    assert total(scrape(url, stack), "drip_send_outcomes_total", outcome="sent") == 16
    assert not (folder / "counter_1.db").exists()
    first = {pid for pid, n in sent_by_process(folder).items() if n}
    assert first and sum(sent_by_process(folder).values()) == 16
    for pid in first:
        os.kill(pid, signal.SIGKILL)  # the pool replaces them

    add_and_enroll_more(env)  # 16 more, sent by the new pool processes
    rows = wait_until_done(env[0], expected_messages=32, timeout=90)
    assert collections.Counter(m.status for m in rows) == {MessageStatus.SENT: 32}
    samples = scrape(url, stack)
    assert total(samples, "drip_send_outcomes_total", outcome="sent") == 32, stack.logs()
    by_process = sent_by_process(folder)
    later = {pid for pid, n in by_process.items() if n} - first
    assert later and not any(Path(f"/proc/{pid}").exists() for pid in first)
    assert sum(by_process[pid] for pid in first) + sum(by_process[pid] for pid in later) == 32


def add_and_enroll_more(env) -> None:
    for i in range(4):  # env is (factory, clock, registry, policy)
        add_and_enroll(
            *env, campaign="quick", email=f"later{i}@example.com", phone=f"+1202556{i:04d}"
        )


def test_a_metrics_dir_that_cannot_be_made_is_a_one_line_cli_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = subprocess.run(
        [sys.executable, "-m", "workers.cli", "web", "--port", str(free_port())],
        cwd=ROOT,
        env={
            **os.environ,
            ENV: str(blocker / "metrics"),
            "ENVIRONMENT": "test",
            "SECRET_KEY": "metrics-test-secret-key-0123456789abcdef",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'drip.sqlite3'}",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert f"{ENV}={blocker / 'metrics'}" in result.stderr


def test_a_metrics_port_in_use_is_one_log_line_and_the_worker_still_sends(stack):
    env = env_for(stack)
    enroll(env, 1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        start_drip(
            stack,
            "worker",
            *("worker", "-c", "1", "--beat", "-n", "m3@%h", "--without-heartbeat"),
            WORKER_METRICS_PORT=port,
        )
        rows = wait_until_done(env[0], expected_messages=4, timeout=60)
    assert {m.status for m in rows} == {MessageStatus.SENT}
    log = (stack.tmp / "worker.log").read_text()
    assert f"WORKER_METRICS_PORT {port} on 127.0.0.1: Address already in use" in log, log
    assert "Traceback" not in log
