"""Start-up configuration: a bad value stops start-up with a message naming the variable."""

import pytest

from settings import SettingsError, load_settings

GOOD_SECRET = "k3Jq9-vT2pXw_8mLr5Zc1HbN7yUe4AsD0fGi6oWt"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in (
        "ENVIRONMENT",
        "SECRET_KEY",
        "DATABASE_URL",
        "EMAIL_PROVIDER",
        "SMS_PROVIDER",
        "PUBLIC_BASE_URL",
        "DEFAULT_TIMEZONE",
        "REDIS_URL",
        "POSTAL_ADDRESS",
        "EMAIL_FROM",
        "PRIVACY_URL",
        "TERMS_URL",
        "LEGAL_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir("/")  # no .env file from the working tree


def test_defaults_run_with_no_configuration():
    s = load_settings()
    assert s.is_sqlite and s.redis_url is None and s.email_provider == "outbox"


@pytest.mark.parametrize(
    "env,needle",
    [
        ({"TICK_SECONDS": "-1"}, "TICK_SECONDS"),
        ({"DEFAULT_TIMEZONE": "Mars/Base"}, "DEFAULT_TIMEZONE"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"PUBLIC_BASE_URL": "care.example"}, "PUBLIC_BASE_URL"),
        ({"SMS_LATEST_HOUR": "7"}, "SMS_LATEST_HOUR"),
        ({"WORKER_METRICS_PORT": "70000"}, "WORKER_METRICS_PORT"),
        ({"WORKER_METRICS_PORT": "ninety"}, "WORKER_METRICS_PORT"),
        ({"SCHEDULER_RENEW_SECONDS": "0"}, "SCHEDULER_RENEW_SECONDS"),
        (
            {"SCHEDULER_LEASE_SECONDS": "5", "SCHEDULER_RENEW_SECONDS": "2"},
            r"SCHEDULER_LEASE_SECONDS \(5\) must be at least 3 x SCHEDULER_RENEW_SECONDS \(2\)",
        ),
    ],
)
def test_bad_values_name_the_variable(monkeypatch, env, needle):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SettingsError, match=needle):
        load_settings()


@pytest.mark.parametrize("secret", ["change-me", "short", "", " " * 32, "ab" * 24, "CHANGEME"])
def test_placeholder_secret_refused_outside_development(monkeypatch, secret):
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("SECRET_KEY", secret)
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        load_settings()


def production(monkeypatch):
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("SECRET_KEY", GOOD_SECRET)
    monkeypatch.setenv("POSTAL_ADDRESS", "Lunara Health, 12 Harbor Road, Portland, ME 04101, USA")
    monkeypatch.setenv("EMAIL_FROM", "care@lunara-health.com")
    monkeypatch.setenv("CARE_TEAM_PHONE", "+1 207 555 2368")
    monkeypatch.setenv("PRIVACY_URL", "https://lunara-health.com/privacy")
    monkeypatch.setenv("TERMS_URL", "https://lunara-health.com/terms")


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("POSTAL_ADDRESS", None, "POSTAL_ADDRESS is the example address"),
        ("EMAIL_FROM", "care@lunara.example", "EMAIL_FROM is at an example domain"),
        ("EMAIL_FROM", "news@mail.example.com", "EMAIL_FROM is at an example domain"),
        ("CARE_TEAM_PHONE", None, "CARE_TEAM_PHONE is the example number"),
    ],
)
def test_production_refuses_example_sender_details(monkeypatch, name, value, needle):
    production(monkeypatch)
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://care.lunara-health.com")
    if value is None:
        monkeypatch.delenv(name)
    else:
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=needle):
        load_settings()


def test_production_needs_https_links(monkeypatch):
    production(monkeypatch)
    with pytest.raises(SettingsError, match="PUBLIC_BASE_URL must be https"):
        load_settings()
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://care.example")
    assert load_settings().environment == "production"


def test_provider_without_credentials_names_what_is_missing(monkeypatch):
    monkeypatch.setenv("SMS_PROVIDER", "twilio")
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC123")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "TWILIO_AUTH_TOKEN" in str(info.value)
    assert "TWILIO_MESSAGING_SERVICE_SID or TWILIO_FROM_NUMBER" in str(info.value)
    monkeypatch.setenv("EMAIL_PROVIDER", "sendgrid")
    with pytest.raises(SettingsError, match="SENDGRID_API_KEY"):
        load_settings()


def test_webhook_key_must_be_a_p256_key(monkeypatch):
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", "bm90IGEga2V5")
    with pytest.raises(SettingsError, match="SENDGRID_WEBHOOK_PUBLIC_KEY is not a usable"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("CARE_TEAM_HOURS", "weekdays 9 to 5", "is not like 'mon-fri 08:00-18:00"),
        ("CARE_TEAM_HOURS", "mon-fri 08:00-18:00; sunday", "is not like"),
        ("CARE_TEAM_HOURS", "mon-fri 08:00-24:00", "times run from 00:00 to 23:59"),
        ("CARE_TEAM_HOURS", "mon 8:75-9:00", "times run from 00:00 to 23:59"),
        ("CARE_TEAM_HOURS", "sat 18:00-08:00", "closing time must be after opening time"),
        ("CARE_TEAM_PHONE", "call us", "is not a phone number"),
        ("CARE_TEAM_TIMEZONE", "Mars/Olympus", "unknown IANA time zone"),
        ("DEFAULT_COUNTRY", "XX", "is not an ISO country code"),
        ("CARE_TEAM_REPLY_DAYS", "0", "CARE_TEAM_REPLY_DAYS"),
    ],
)
def test_care_team_settings_refuse_what_patients_could_not_use(monkeypatch, name, value, needle):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=needle):
        load_settings()


def test_care_team_settings_are_normalised(monkeypatch):
    monkeypatch.setenv("CARE_TEAM_PHONE", "(207) 555-2368")
    monkeypatch.setenv("CARE_TEAM_HOURS", "Mon-Fri 08:00-18:00; Sat 09:00-12:00")
    monkeypatch.setenv("DEFAULT_COUNTRY", "es")
    s = load_settings()
    assert (s.care_team_phone, s.care_team_hours, s.default_country) == (
        "+12075552368",
        "mon-fri 08:00-18:00; sat 09:00-12:00",
        "ES",
    )


def test_default_country_follows_the_default_time_zone_unless_set(monkeypatch):
    assert load_settings().default_country == "US"
    monkeypatch.setenv("DEFAULT_TIMEZONE", "Europe/Madrid")
    assert load_settings().default_country == "ES"
    monkeypatch.setenv("DEFAULT_COUNTRY", "GB")
    assert load_settings().default_country == "GB"
