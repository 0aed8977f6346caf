"""One typed settings object, read from the environment (and an optional `.env` file).

Every value has an embedded default so `drip demo` runs on a bare machine: a SQLite file,
an embedded file-system broker and the local outbox. Production sets DATABASE_URL,
REDIS_URL, SECRET_KEY and the provider credentials; a bad value stops start-up with a
message that names the environment variable.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from babel.core import get_global
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent

# Values that mean "nobody chose a secret": refused outside development.
PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "changethis", "secret", "dev-insecure-key"}
# A secret made by a generator (`secrets.token_urlsafe(48)`) uses dozens of different
# characters; one typed or padded by hand (32 spaces, "aaaa...") uses a few.
MIN_SECRET_LENGTH = 32
MIN_SECRET_DISTINCT = 12
EXAMPLE_POSTAL_ADDRESS = "Lunara Care, 100 Main Street, Suite 200, Springfield, IL 62701, USA"
# A fictional number (the 555-01xx range): lessons and HELP replies must carry the real one.
EXAMPLE_CARE_PHONE = "+18005550199"
_DAY = "(?:mon|tue|wed|thu|fri|sat|sun)"
CARE_HOURS = re.compile(
    rf"^\s*{_DAY}(?:\s*-\s*{_DAY})?\s+(\d{{1,2}}):(\d{{2}})\s*-\s*(\d{{1,2}}):(\d{{2}})\s*$"
)
EXAMPLE_LEGAL_DIR = ROOT / "web" / "legal"
# Domains reserved for documentation (RFC 2606): nobody receives or replies there.
EXAMPLE_DOMAINS = ("example", "example.com", "example.org", "example.net", "invalid", "test")


class SettingsError(RuntimeError):
    """Start-up configuration is unusable; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    environment: Literal["development", "test", "production"] = "development"

    # Storage and broker
    database_url: str = f"sqlite:///{ROOT / 'var' / 'drip.sqlite3'}"
    redis_url: str | None = None
    # Lets several environments (or test runs) share one Redis without sharing queues.
    redis_key_prefix: str = ""
    broker_dir: Path = ROOT / "var" / "broker"
    # Redis redelivers unacknowledged messages after this; sends never come near it.
    broker_visibility_timeout: int = Field(3600, ge=60)

    secret_key: SecretStr = SecretStr("dev-insecure-key")

    # Who the messages come from (CAN-SPAM needs the postal address in every email)
    brand_name: str = "Lunara"
    public_base_url: str = "http://localhost:8000"
    postal_address: str = EXAMPLE_POSTAL_ADDRESS
    email_from: str = "care@lunara.example"
    default_timezone: str = "America/New_York"
    # Linked from the footer of every subscriber page. Unset: our own /privacy and /terms
    # pages, which show the texts in LEGAL_DIR (privacy.<lang>.txt, terms.<lang>.txt). The
    # shipped texts are examples: production needs the URLs or a folder of your own texts.
    privacy_url: str = ""
    terms_url: str = ""
    legal_dir: Path = EXAMPLE_LEGAL_DIR
    default_locale: str = "en"
    # Whose emergency number a person is told when neither their phone nor their time zone
    # says where they are (ISO country code); unset: DEFAULT_TIMEZONE's country.
    default_country: str = ""

    # How patients reach the care team: shown in the last lesson, on the call-request page
    # and in HELP replies. Hours are local to CARE_TEAM_TIMEZONE.
    care_team_phone: str = EXAMPLE_CARE_PHONE
    care_team_hours: str = "mon-fri 08:00-18:00"
    care_team_timezone: str = "America/New_York"
    # How many business days a call request waits at most (the promise patients read).
    care_team_reply_days: int = Field(1, ge=1, le=10)
    # The contact queue's own target: a request open this many hours is overdue, and is
    # flagged "due soon" in the last quarter of it (web/contacts.py).
    contact_response_target_hours: float = Field(24.0, gt=0, le=24 * 30)
    # How long after a check-in question a text that is a bare number still answers it.
    question_reply_days: int = Field(3, ge=1, le=30)

    # Where things live. With SEQUENCES_SOURCE=database (the default) the campaigns that run
    # are their newest revisions in the database (campaigns.sequences.store), published
    # from the workspace or by `drip campaigns push`; the files here seed a campaign that
    # has no revision yet. With `files` they run straight from these folders, re-read when
    # a file changes (development), and the workspace's editor only shows them.
    sequences_source: Literal["database", "files"] = "database"
    # How often each process looks for a newly published revision.
    sequences_refresh_seconds: float = Field(2.0, gt=0, le=300)
    # A publish is refused while a step's copy has no current clinical review.
    publish_requires_review: bool = True
    definitions_dir: Path = ROOT / "campaigns" / "definitions"
    templates_dir: Path = ROOT / "templates"
    outbox_dir: Path = ROOT / "var" / "outbox"

    # Scheduler and workers
    tick_seconds: float = Field(5.0, gt=0)
    # A worker's own /metrics (send outcomes, provider calls, ticks: workers/metrics.py),
    # served over HTTP by its main process for all its pool processes. Unset: not served.
    # Bound to loopback unless WORKER_METRICS_HOST says otherwise; it has no access check.
    worker_metrics_port: int | None = Field(None, ge=1, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    # The reaper's pass: lost tasks requeued, expired leases, provider look-ups.
    reap_seconds: float = Field(10.0, gt=0)
    # Several schedulers may run; one leads through a lease row (campaigns.delivery.
    # leadership). Each renews or tries to take it every SCHEDULER_RENEW_SECONDS; a dead
    # leader's lease runs out after SCHEDULER_LEASE_SECONDS, and a standby takes over at
    # its next turn. A leader whose renewals fail stops publishing RENEW seconds before
    # its lease can run out (workers/beat.py), hence LEASE >= 3 x RENEW.
    scheduler_lease_seconds: float = Field(10.0, gt=0, le=600)
    scheduler_renew_seconds: float = Field(2.0, gt=0, le=200)
    claim_batch_size: int = Field(500, ge=1, le=10_000)
    email_batch_size: int = Field(100, ge=1, le=1000)
    sms_batch_size: int = Field(20, ge=1, le=500)
    # A send's lease must outlast the slowest provider call of a whole batch.
    lease_seconds: int = Field(300, ge=1)
    # A queued message held by a task a worker took, untouched this long, is enqueued
    # again (its worker died); one no task holds is enqueued again at the next pass.
    requeue_after_seconds: int = Field(30, ge=1)
    # Unconfirmed messages: first asked of the provider this long after, and shown to ops
    # (flagged needs_ops, with their age) when still undecided after this long.
    unconfirmed_lookup_seconds: float = Field(30.0, ge=0)
    unconfirmed_alert_seconds: int = Field(900, ge=1)
    max_attempts: int = Field(6, ge=1, le=50)
    retry_base_seconds: float = Field(30.0, gt=0)
    retry_cap_seconds: float = Field(3600.0, gt=0)

    # Texts only between these local hours (TCPA); campaign windows may narrow, never widen.
    sms_earliest_hour: int = Field(8, ge=0, le=23)
    sms_latest_hour: int = Field(21, ge=1, le=24)
    # No provider call starts this close to a window's end, so a chunk's calls all land
    # inside it (the window is judged again right before each chunk's call).
    send_window_margin_seconds: float = Field(5.0, ge=0, le=300)
    # Messages one person gets across every campaign (campaigns.delivery.frequency_cap): at
    # most this many on one day of their own, and over seven (today and the six before).
    # A message over it is held to the next day it fits, never dropped. The shipped course
    # sends at most one lesson a day and three a week, so it is never held by itself; two
    # a day leaves room for a check-in or a follow-up beside a lesson. 0 or empty: no cap.
    frequency_cap_per_day: int = Field(2, ge=0, le=100)
    frequency_cap_per_week: int = Field(5, ge=0, le=700)

    # Compressed time for demos: virtual = epoch + (real - real_epoch) * time_scale.
    time_scale: float = Field(1.0, gt=0)
    clock_real_epoch: float | None = None
    clock_virtual_epoch: float | None = None
    # The demo's shared virtual clock (campaigns.clock.FileClock): a file every process
    # reads "now" from, moved forward by `drip demo` whenever nothing is due.
    clock_file: Path | None = None

    # Providers
    email_provider: Literal["outbox", "sendgrid"] = "outbox"
    sms_provider: Literal["outbox", "twilio"] = "outbox"
    # Simulated provider latency of the local outbox, per message (demos and crash tests).
    outbox_send_delay: float = Field(0.0, ge=0)

    # SendGrid (EMAIL_PROVIDER=sendgrid)
    sendgrid_api_key: SecretStr | None = None
    sendgrid_api_host: str = "https://api.sendgrid.com"
    sendgrid_sandbox: bool = False
    # SendGrid's own open/click tracking rewrites our links; off unless asked for.
    sendgrid_tracking: bool = False
    # Base64 public key from SendGrid's Signed Event Webhook settings.
    sendgrid_webhook_public_key: str | None = None
    sendgrid_timeout: float = Field(10.0, gt=0)

    # Twilio (SMS_PROVIDER=twilio): a Messaging Service SID or a from number
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_from_number: str | None = None
    twilio_api_base_url: str | None = None
    twilio_timeout: float = Field(10.0, gt=0)
    # Texts of one rate-limit chunk sent at once; each call mostly waits on the network.
    twilio_concurrency: int = Field(8, ge=1, le=64)

    # Global send rates per channel, shared by every worker (through Redis when set).
    email_rate_per_second: float = Field(50.0, gt=0)
    email_rate_burst: int = Field(50, ge=1)
    sms_rate_per_second: float = Field(1.0, gt=0)
    sms_rate_burst: int = Field(1, ge=1)
    # While Redis is away each sending process limits itself to rate / this (or / the
    # processes it last saw sharing the bucket, if more), so together they stay within
    # the rate: set it to the most worker processes that send at once.
    rate_limit_processes: int = Field(8, ge=1)

    # Engagement a machine made is kept but not counted (campaigns.tracking.machine): an
    # open or click this soon after the message went out (or was reported delivered), a
    # click on another link of a message this soon after one, and, when given, opens from
    # Apple's published Private Relay egress ranges (the CSV Apple publishes).
    machine_seconds_after_send: float = Field(10.0, ge=0, le=3600)
    machine_burst_seconds: float = Field(2.0, ge=0, le=60)
    apple_proxy_ranges_file: Path | None = None
    # With REDIS_URL, the open pixel and click redirect queue their hit in Redis and answer;
    # the workers record the queue this often (workers/hit_queue.py).
    hit_drain_seconds: float = Field(1.0, gt=0, le=60)
    # Past this many hits waiting, the pages record each hit themselves, in the request
    # (slower, never dropped). About 0.5 KB of Redis memory each (1.5 KB at most; README).
    hit_queue_max: int = Field(1_000_000, ge=1)

    # Webhook requests signed longer ago than this are refused as replays.
    webhook_max_age_seconds: int = Field(600, ge=10)

    # The workspace (/admin): staff accounts (`drip users add`) sign in at /admin/login.
    # ADMIN_USER / ADMIN_PASSWORD is one more admin, the bootstrap, checked without the
    # database; with no password and no enabled account the pages are off (503).
    admin_user: str = "admin"
    admin_password: SecretStr | None = None
    # A staff session ends after this long unused, and this long after sign-in whatever.
    staff_session_idle_minutes: int = Field(30, ge=1, le=24 * 60)
    staff_session_max_hours: int = Field(12, ge=1, le=24 * 30)
    # Failed sign-ins (form or basic auth) per account name and per client address
    # before sign-in is refused with a 429 for the rest of the window.
    login_failures_per_name: str = "5/15minutes"
    login_failures_per_client: str = "20/15minutes"

    # Where new call requests are announced (no health detail: a link to the queue).
    care_team_email: str | None = None
    # Who confirms a STOP or START: we do ("ours", in the person's language), or the
    # messaging service's own opt-out handling does ("service"; then ours would be refused).
    sms_opt_out_replies: Literal["ours", "service"] = "ours"
    # Sign-up: at most one confirmation mail per address in this many seconds, and how
    # long a sign-up never confirmed is kept before it is removed.
    confirmation_resend_seconds: int = Field(900, ge=60)
    # At most one "reply YES" text per phone in this many hours (texts cost and intrude).
    text_confirmation_resend_hours: int = Field(24, ge=1)
    # How often one client, address or phone may sign up (the `limits` library's notation).
    signup_limit_per_client: str = "5/minute;30/hour"
    signup_limit_per_address: str = "3/hour;10/day"
    join_limit_per_number: str = "3/hour;10/day"
    # The events API (POST /api/v1/events): calls per key, and failed logins (a missing,
    # wrong or revoked key) per client address before it is refused without a look-up.
    api_limit_per_key: str = "1200/minute"
    api_auth_failures_per_client: str = "20/minute;200/hour"
    pending_retention_days: int = Field(30, ge=1)
    # A confirmation link works for this many days after the sign-up that asked for it.
    confirmation_link_days: int = Field(7, ge=1)

    # Retention (campaigns/reporting/retention.py): raw opens, clicks and provider events
    # older than this are rolled up into event_rollups and deleted; finished messages
    # older than MESSAGE_DETAIL_RETENTION_DAYS lose their provider error text and lease.
    # 0 keeps everything forever. At least 7: providers retry a webhook for up to three
    # days, and the event's unique id is what makes a repeat a no-op.
    event_retention_days: int = Field(180, ge=0, le=36_500)
    message_detail_retention_days: int = Field(90, ge=0, le=36_500)
    retention_batch_size: int = Field(5000, ge=100, le=100_000)

    # Logs: text for a person at a terminal, json (one object a line) for a log pipeline.
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Sign-up: new email subscribers confirm by clicking a link first (double opt-in).
    double_opt_in: bool = True
    # Countries (ISO 3166 codes, comma-separated) whose mobile numbers the form accepts
    # for texts; a number elsewhere, or not a mobile, is refused (SMS pumping, TCPA).
    sms_allowed_countries: str = "US,CA"
    signup_campaign: str = "hip_and_back"

    @field_validator("event_retention_days", "message_detail_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        if 0 < value < 7:
            raise ValueError("0 (keep forever) or at least 7 days (providers retry webhooks)")
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format_case(cls, value):
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level_case(cls, value):
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("frequency_cap_per_day", "frequency_cap_per_week", mode="before")
    @classmethod
    def _empty_is_no_cap(cls, value):
        return 0 if isinstance(value, str) and not value.strip() else value

    @field_validator("apple_proxy_ranges_file")
    @classmethod
    def _ranges_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a file (Apple's egress-ip-ranges.csv, downloaded)")
        return value

    @field_validator("default_country")
    @classmethod
    def _country(cls, value: str) -> str:
        value = value.strip().upper()
        if value and value not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not an ISO country code like US or ES")
        return value

    @model_validator(mode="after")
    def _lease_outlasts_renewals(self) -> Settings:
        if self.scheduler_lease_seconds < 3 * self.scheduler_renew_seconds:
            raise ValueError(
                f"SCHEDULER_LEASE_SECONDS ({self.scheduler_lease_seconds:g}) must be at least "
                f"3 x SCHEDULER_RENEW_SECONDS ({self.scheduler_renew_seconds:g})"
            )
        return self

    @model_validator(mode="after")
    def _country_of_default_zone(self) -> Settings:
        if not self.default_country:
            # CLDR's zone-to-country table, so DEFAULT_TIMEZONE=Europe/Madrid means 112.
            zone = get_global("zone_aliases").get(self.default_timezone, self.default_timezone)
            country = get_global("zone_territories").get(zone, "")
            self.default_country = country if country in phonenumbers.SUPPORTED_REGIONS else "US"
        return self

    @field_validator("care_team_phone")
    @classmethod
    def _care_phone(cls, value: str) -> str:
        try:
            number = phonenumbers.parse(value, "US")
        except phonenumbers.NumberParseException:
            number = None
        if number is None or not phonenumbers.is_possible_number(number):
            raise ValueError(f"{value!r} is not a phone number like +18005550199")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

    @field_validator("care_team_hours")
    @classmethod
    def _care_hours(cls, value: str) -> str:
        value = value.strip().lower()
        for part in value.split(";"):
            match = CARE_HOURS.match(part)
            if not match:
                raise ValueError(f"{value!r} is not like 'mon-fri 08:00-18:00; sat 09:00-12:00'")
            h1, m1, h2, m2 = (int(g) for g in match.groups())
            if max(h1, h2) > 23 or max(m1, m2) > 59:
                raise ValueError(f"{part.strip()!r}: times run from 00:00 to 23:59")
            if (h2, m2) <= (h1, m1):
                raise ValueError(f"{part.strip()!r}: closing time must be after opening time")
        return value

    @field_validator("default_timezone", "care_team_timezone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("sms_allowed_countries")
    @classmethod
    def _countries(cls, value: str) -> str:
        codes = [c.strip().upper() for c in value.split(",") if c.strip()]
        unknown = [c for c in codes if c not in phonenumbers.SUPPORTED_REGIONS]
        if not codes or unknown:
            raise ValueError(
                f"give ISO country codes like US,CA (unknown: {', '.join(unknown) or 'none given'})"
            )
        return ",".join(dict.fromkeys(codes))

    @property
    def sms_countries(self) -> tuple[str, ...]:
        return tuple(self.sms_allowed_countries.split(","))

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("privacy_url", "terms_url")
    @classmethod
    def _page_url(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be empty (our own page) or start with http:// or https://")
        return value

    @field_validator("legal_dir")
    @classmethod
    def _legal_dir(cls, value: Path) -> Path:
        if not (value / "privacy.en.txt").is_file() or not (value / "terms.en.txt").is_file():
            raise ValueError(f"{value} must hold privacy.en.txt and terms.en.txt")
        return value

    @property
    def privacy_link(self) -> str:
        return self.privacy_url or f"{self.public_base_url}/privacy"

    @property
    def terms_link(self) -> str:
        return self.terms_url or f"{self.public_base_url}/terms"

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql+psycopg:// URL")
        if value.startswith(("postgresql://", "postgres://")):
            # psycopg 3 is the installed driver; spare operators the dialect suffix.
            value = "postgresql+psycopg://" + value.split("://", 1)[1]
        return value

    @field_validator(
        "signup_limit_per_client",
        "signup_limit_per_address",
        "join_limit_per_number",
        "api_limit_per_key",
        "api_auth_failures_per_client",
        "login_failures_per_name",
        "login_failures_per_client",
    )
    @classmethod
    def _limit(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a limit like '5/minute;30/hour'") from None
        return value

    @model_validator(mode="after")
    def _production_rules(self) -> Settings:
        secret = self.secret_key.get_secret_value()
        if self.environment != "development" and (
            secret.strip().lower() in PLACEHOLDER_SECRETS
            or len(secret) < MIN_SECRET_LENGTH
            or (self.environment == "production" and len(set(secret)) < MIN_SECRET_DISTINCT)
        ):
            raise ValueError(
                f"SECRET_KEY is a placeholder, shorter than {MIN_SECRET_LENGTH} characters or "
                "made of too few different characters; set a random value "
                "(python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        if self.environment == "production":
            if self.postal_address == EXAMPLE_POSTAL_ADDRESS:
                raise ValueError(
                    "POSTAL_ADDRESS is the example address; every email must carry the "
                    "sender's real one (CAN-SPAM)"
                )
            if self.care_team_phone == EXAMPLE_CARE_PHONE:
                raise ValueError(
                    "CARE_TEAM_PHONE is the example number; lessons, the call-request page "
                    "and HELP replies must give patients the care team's real one"
                )
            for name, url in (("PRIVACY_URL", self.privacy_url), ("TERMS_URL", self.terms_url)):
                if not url and self.legal_dir.resolve() == EXAMPLE_LEGAL_DIR:
                    raise ValueError(
                        f"{name} is unset and LEGAL_DIR holds the shipped example texts; set "
                        f"{name} to your own page, or LEGAL_DIR to a folder of your own "
                        "privacy.en.txt and terms.en.txt (and .es.txt)"
                    )
            domain = self.email_from.rpartition("@")[2].lower().rstrip(".")
            if any(domain == d or domain.endswith("." + d) for d in EXAMPLE_DOMAINS):
                raise ValueError(
                    f"EMAIL_FROM is at an example domain ({domain}); nobody can reply there"
                )
        if self.sms_latest_hour <= self.sms_earliest_hour:
            raise ValueError("SMS_LATEST_HOUR must be later than SMS_EARLIEST_HOUR")
        if (
            self.frequency_cap_per_day
            and self.frequency_cap_per_week
            and self.frequency_cap_per_week < self.frequency_cap_per_day
        ):
            raise ValueError(
                "FREQUENCY_CAP_PER_WEEK must be 0 (no cap) or at least FREQUENCY_CAP_PER_DAY"
            )
        if self.lease_seconds >= self.broker_visibility_timeout:
            raise ValueError("LEASE_SECONDS must stay below BROKER_VISIBILITY_TIMEOUT")
        missing = []
        if self.email_provider == "sendgrid":
            missing += [n for n, v in (("SENDGRID_API_KEY", self.sendgrid_api_key),) if not v]
        if self.sms_provider == "twilio":
            missing += [
                n
                for n, v in (
                    ("TWILIO_ACCOUNT_SID", self.twilio_account_sid),
                    ("TWILIO_AUTH_TOKEN", self.twilio_auth_token),
                )
                if not v
            ]
            if not (self.twilio_messaging_service_sid or self.twilio_from_number):
                missing.append("TWILIO_MESSAGING_SERVICE_SID or TWILIO_FROM_NUMBER")
        if (
            self.environment == "production"
            and self.email_provider == "sendgrid"
            and not self.sendgrid_webhook_public_key
        ):
            # Without it the event webhook refuses everything and unconfirmed emails never settle.
            missing.append("SENDGRID_WEBHOOK_PUBLIC_KEY")
        if missing:
            raise ValueError(f"{', '.join(missing)} must be set for the selected provider")
        if self.sendgrid_webhook_public_key:
            problem = _p256_key_problem(self.sendgrid_webhook_public_key)
            if problem:
                raise ValueError(
                    f"SENDGRID_WEBHOOK_PUBLIC_KEY is not a usable ECDSA P-256 key ({problem})"
                )
        if self.environment == "production" and not self.public_base_url.startswith("https://"):
            raise ValueError(
                "PUBLIC_BASE_URL must be https in production (links and webhook signatures use it)"
            )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _p256_key_problem(value: str) -> str | None:
    """Why `value` is not an ECDSA P-256 public key as SendGrid shows it (base64 DER, or a
    PEM paste), or None. The same shapes workers.providers.sendgrid_webhook.load_public_key
    reads; checked here so a bad key stops start-up, without importing the application."""
    try:
        if "BEGIN PUBLIC KEY" in value:
            key = serialization.load_pem_public_key(value.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode("".join(value.split())))
    except (ValueError, UnsupportedAlgorithm, binascii.Error) as exc:
        return str(exc)
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        return "not an ECDSA P-256 public key"
    return None


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        name = "_".join(str(p) for p in err["loc"]).upper() or "settings"
        lines.append(f"{name}: {err['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_settings(**overrides) -> Settings:
    """Read settings now; raise SettingsError naming each bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_explain(exc)) from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
