"""The whole app as the public edge sees it, every part configured (admin password,
Twilio auth token, SendGrid key), on a test's real database; with helpers that sign
webhook requests the way the providers do. Shared by the edge tests."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

from campaigns.db import transaction
from campaigns.delivery.claiming import claim_due
from campaigns.links import Signer, links_for
from campaigns.models import Message
from campaigns.states import MessageStatus
from settings import load_settings
from tests.conftest import FIXTURES
from tests.helpers import add_and_enroll
from web.app import create_app

BASE = "https://care.example"
SECRET = "e" * 40
TWILIO_TOKEN = "twilio-auth-token-for-edge-tests"
ADMIN_PASSWORD = "edge-admin-password-0123456789"
SG_SIG = "X-Twilio-Email-Event-Webhook-Signature"
SG_TS = "X-Twilio-Email-Event-Webhook-Timestamp"
ADMIN = {
    "Authorization": "Basic " + base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode(),
    "Origin": BASE,
}
# One key per test session: generating it is the slow part.
SG_KEY = ec.generate_private_key(ec.SECP256R1())


def _public_key_b64() -> str:
    der = SG_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def edge_client(factory, clock, tmp_path) -> TestClient:
    """raise_server_exceptions=False: a crash is seen as the 500 a visitor gets."""
    settings = load_settings(
        environment="test",
        secret_key=SECRET,
        public_base_url=BASE,
        definitions_dir=FIXTURES / "definitions",
        templates_dir=FIXTURES / "templates",
        broker_dir=tmp_path / "broker",
        signup_campaign="tiny",
        admin_password=ADMIN_PASSWORD,
        twilio_auth_token=TWILIO_TOKEN,
        sendgrid_webhook_public_key=_public_key_b64(),
    )
    app = create_app(settings, factory=factory, clock=clock)
    app.state.send_confirmation = lambda to, email: None
    app.state.queue_depths = lambda settings: {}
    return TestClient(app, raise_server_exceptions=False)


@dataclass
class Sent:
    subscriber_id: int
    message_id: int
    public_token: str

    def path(self, short: str) -> str:
        url = getattr(links_for(BASE, Signer(SECRET.encode()), self.public_token), short)
        return url[len(BASE) :]


def sent_email(factory, clock, registry, policy, email="ana@example.com") -> Sent:
    """A lesson that went out by email, so its links resolve."""
    sid, _ = add_and_enroll(
        factory, clock, registry, policy, email=email, first_name="Ana", locale="en"
    )
    with transaction(factory) as s:
        work = claim_due(s, clock, registry, policy)
        msg = s.get(Message, work.email[0])
        msg.status = MessageStatus.SENT
        return Sent(sid, msg.id, msg.public_token)


def twilio_post(client, path: str, params: dict, query: str = ""):
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(BASE + path + query, params)
    return client.post(path + query, data=params, headers={"X-Twilio-Signature": signature})


def sendgrid_headers(client, body: bytes, timestamp: str | None = None) -> dict[str, str]:
    timestamp = timestamp or str(int(client.app.state.clock.now().timestamp()))
    signature = SG_KEY.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        SG_SIG: base64.b64encode(signature).decode(),
        SG_TS: timestamp,
        "Content-Type": "application/json",
    }


def sendgrid_post(client, body: bytes):
    return client.post(
        "/webhooks/sendgrid/events", content=body, headers=sendgrid_headers(client, body)
    )
