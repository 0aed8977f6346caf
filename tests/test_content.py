"""The shipped sequence as subscribers see it: golden renderings, preview and timeline.

Golden files change only on purpose: after editing copy, regenerate them with
`UPDATE_GOLDEN=1 python -m pytest tests/test_content.py` and review the diff.
"""

import os
import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from campaigns.content.preview import timeline, write_preview
from campaigns.content.rendering import Recipient, Renderer, Sender
from campaigns.links import Signer, links_for
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy
from settings import ROOT

GOLDEN = Path(__file__).parent / "golden"
SENDER = Sender("Lunara", "Lunara Care, 100 Main Street, Springfield, IL 62701, USA")


@pytest.fixture(scope="module")
def campaign():
    return Registry(ROOT / "campaigns" / "definitions", ROOT / "templates").get("hip_and_back")


@pytest.fixture(scope="module")
def renderer():
    return Renderer(ROOT / "templates", SENDER)


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with UPDATE_GOLDEN=1"
    assert actual == path.read_text(encoding="utf-8"), f"{name} differs from the golden file"


@pytest.mark.parametrize("locale,name", [("en", "Maria"), ("es", "Lucía")])
def test_golden_email_and_sms(campaign, renderer, locale, name):
    links = links_for("https://care.example", Signer(b"golden"), "goldenToken00000")
    step = campaign.step("back_pain")
    email = renderer.email(campaign, step, Recipient(name, locale), links)
    check_golden(
        f"{locale}_back_pain.email.txt",
        f"Subject: {email.subject}\nPreheader: {email.preheader}\n\n{email.text}",
    )
    check_golden(f"{locale}_back_pain.email.html", email.html)
    sms = renderer.sms(campaign, step, Recipient(name, locale), links, show_stop_help=True)
    check_golden(f"{locale}_back_pain.sms.txt", sms + "\n")


def test_unknown_locale_falls_back_to_english(campaign, renderer):
    links = links_for("https://care.example", Signer(b"x"), "t" * 16)
    fr = renderer.email(campaign, campaign.steps[0], Recipient(None, "fr-CA"), links)
    en = renderer.email(campaign, campaign.steps[0], Recipient(None, "en"), links)
    es = renderer.email(campaign, campaign.steps[0], Recipient(None, "es-MX"), links)
    assert fr.subject == en.subject != es.subject


def test_sequence_covers_the_curriculum_over_about_four_weeks(campaign):
    keys = [s.key for s in campaign.steps]
    # The check-in question right after the welcome and right after the last lesson.
    assert keys[:2] == ["welcome", "pain_check_start"]
    assert keys[-2:] == ["next_step", "pain_check_end"] and len(keys) >= 10
    days = sum(s.delay.total_seconds() for s in campaign.steps) / 86400
    assert 24 <= days <= 32


def test_timeline_respects_windows_and_dst(campaign):
    joined = datetime(2026, 3, 5, 20, 30, tzinfo=ZoneInfo("America/New_York"))
    rows = timeline(campaign, joined, "America/New_York", ("email", "sms"), Policy())
    assert rows[0].at == datetime(2026, 3, 6, 9, 0, tzinfo=ZoneInfo("America/New_York"))
    assert all(9 <= r.at.hour < 19 and r.at.weekday() != 6 for r in rows)
    assert rows[1].at == rows[0].at  # the check-in question, right after the welcome
    assert rows[2].at.tzname() == "EDT"  # after the change on 8 March, still 09:00 local


def test_preview_writes_every_step(campaign, renderer, tmp_path):
    files = write_preview(
        campaign,
        renderer,
        tmp_path,
        locale="es",
        first_name=None,
        zone="Asia/Kolkata",
        joined=datetime(2026, 3, 2, 9, 0, tzinfo=ZoneInfo("UTC")),
        policy=Policy(),
        base_url="https://care.example",
    )
    names = {f.name for f in files}
    assert {
        f"{s.index + 1:02d}_{s.key}.html" for s in campaign.steps if "email" in s.channels
    } <= names
    assert {
        f"{s.index + 1:02d}_{s.key}.sms.txt"
        for s in campaign.steps
        if {"email", "sms"} <= set(s.channels)  # a text beside the email
    } <= names
    # Every step reaches a person without email: each has its text-only version.
    assert {f"{s.index + 1:02d}_{s.key}.text-only.sms.txt" for s in campaign.steps} <= names
    sms = (tmp_path / "hip_and_back/es/01_welcome.sms.txt").read_text()
    # The welcome carries the warning signs: up to four segments, all GSM-7.
    assert re.search(r"GSM-7, [1-4] segment\(s\)", sms)
    timeline = (tmp_path / "hip_and_back/es/timeline.txt").read_text()
    assert "IST" in timeline and "text only:" in timeline
    # Every lesson reaches them by text; only a step meant for readers with both email
    # and text (the diagnosis lesson's text version for a non-opener) is not theirs.
    text_only = timeline.split("text only:")[1].strip().splitlines()
    assert len(text_only) == len(campaign.steps)
    # Eleven lessons and the two check-in questions.
    assert [line.split()[-1] for line in text_only if "skipped" not in line] == ["sms"] * 13
    assert [line.split()[6] for line in text_only if "skipped" in line] == ["diagnosis_by_text"]
