"""The results page (web/results.py) and its reports (campaigns/reporting: trends, cohorts,
filters, tables), on SQLite and PostgreSQL through the real app: three people joining in
two ISO weeks, sent the `quick` course through the real claim, with known opens, clicks
(one a machine's) and a call request. The trend, the cohorts and every filter are checked
against those, each CSV is parsed back, and bad filter values get a 4xx page.
"""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from campaigns.audience.subscribers import upsert_subscriber
from campaigns.care import contact_queue
from campaigns.db import transaction
from campaigns.delivery.claiming import claim_due
from campaigns.delivery.enrollment import enroll
from campaigns.models import Message, Subscriber
from campaigns.reporting.filters import FilterError, Filters, parse_filters
from campaigns.reporting.funnels import campaign_report
from campaigns.reporting.results import results
from campaigns.spreadsheets import csv_text
from campaigns.staff import accounts
from campaigns.staff.audit import Actor
from campaigns.states import EventType, MessageStatus
from campaigns.tracking import portal
from tests.test_admin import AUTH, basic, make_app
from web.results_words import TEXT

WEEK = timedelta(days=7)
NASTY_URL = '=HYPERLINK("https://evil.example","x")'


def _join(factory, clock, registry, policy, source, **who) -> int:
    consent = tuple(c for c, k in (("email", "email"), ("sms", "phone")) if who.get(k))
    with transaction(factory) as s:
        sub = upsert_subscriber(s, clock, consent=consent, **who)
        return enroll(s, clock, registry, sub, "quick", policy, source=source).id


def _send_due(factory, clock, registry, policy) -> None:
    """Claim what is due, step by step, and mark it taken by the provider now."""
    for _ in range(3):  # one step per pass (invariant 10)
        with transaction(factory) as s:
            work = claim_due(s, clock, registry, policy)
            ids = [*work.email, *work.sms]
            for m in s.scalars(select(Message).where(Message.id.in_(ids))):
                m.status, m.sent_at, m.provider = MessageStatus.SENT, clock.now(), "outbox"


def _engage(factory, clock, enrollment_id, channel, kind, why=None, **detail):
    with transaction(factory) as s:
        m = s.scalars(
            select(Message).where(
                Message.enrollment_id == enrollment_id,
                Message.step_key == "one",
                Message.channel == channel,
            )
        ).one()
        visit = portal.Visit(m, s.get(Subscriber, m.subscriber_id))
        portal.record_engagement(s, clock, visit, kind, detail, why=why)
        return visit


@pytest.fixture
def world(factory, clock, registry, policy):
    """Week 10 of 2026 (Monday 2 March): Ana (email and text, en, New York, signed up) and
    Ben (email, es, Chicago, imported). Week 11 (Monday 9 March): Cy (email, es, New York,
    signed up)."""
    ny, chicago = "America/New_York", "America/Chicago"
    ids = {
        "ana": _join(factory, clock, registry, policy, "signup", email="ana@example.com",
                     phone="+12025550143", locale="en", timezone=ny),
        "ben": _join(factory, clock, registry, policy, "import", email="ben@example.com",
                     locale="es", timezone=chicago),
    }  # fmt: skip
    _send_due(factory, clock, registry, policy)
    clock.advance(hours=1)
    _engage(factory, clock, ids["ana"], "email", EventType.OPENED)
    visit = _engage(factory, clock, ids["ana"], "email", EventType.CLICKED, route="m")
    _engage(factory, clock, ids["ben"], "email", EventType.OPENED, why="scanner_agent")
    _engage(factory, clock, ids["ben"], "email", EventType.CLICKED, link="x1", url=NASTY_URL)
    with transaction(factory) as s:
        m = s.get(Message, visit.message.id)
        contact_queue.request_contact(
            s, clock, registry, portal.Visit(m, s.get(Subscriber, m.subscriber_id)),
            preferred_channel="phone", preferred_time=None, note=None,
        )  # fmt: skip
    clock.advance(days=7, hours=-1)  # Monday 9 March, 15:00 UTC
    ids["cy"] = _join(factory, clock, registry, policy, "signup", email="cy@example.com",
                      locale="es", timezone=ny)  # fmt: skip
    _send_due(factory, clock, registry, policy)
    clock.advance(days=1)  # Tuesday 10 March: Cy opens, and clicks twice
    _engage(factory, clock, ids["cy"], "email", EventType.OPENED)
    _engage(factory, clock, ids["cy"], "email", EventType.CLICKED, route="m")
    _engage(factory, clock, ids["cy"], "email", EventType.CLICKED, route="m")
    return ids


@pytest.fixture
def client(factory, clock, tmp_path):
    return TestClient(make_app(factory, clock, tmp_path))


def _read(factory, registry, **raw) -> object:
    with factory() as s:
        return results(s, registry, "quick", parse_filters(raw))


def _trend(found) -> dict[str, tuple[int, int, int, int]]:
    return {
        p.start.isoformat(): (p.sent, p.opens, p.clicks, p.call_requests)
        for p in found.trend.points
        if (p.sent, p.opens, p.clicks, p.call_requests) != (0, 0, 0, 0)
    }


def _cohorts(found) -> dict[str, tuple]:
    return {
        r.iso_week: (r.enrolled, r.reached, r.reached_last, r.opened, r.clicked, r.asked)
        for r in found.cohorts.rows
    }


# ---------------------------------------------------------------- reports


def test_trend_counts_per_day_and_agrees_with_the_funnel(world, factory, registry):
    found = _read(factory, registry)
    assert found.trend.grain == "day"
    days = [p.start for p in found.trend.points]
    assert days[0] == date(2026, 3, 2) and days[-1] == date(2026, 3, 10) and len(days) == 9
    # Ana: one (email, text), two (email), three (text); Ben and Cy: one and two (email).
    # Ben's open was a scanner's: left out. Cy clicked twice: one person.
    assert _trend(found) == {
        "2026-03-02": (6, 1, 2, 1),
        "2026-03-09": (2, 0, 0, 0),
        "2026-03-10": (0, 1, 1, 0),
    }
    steps = found.report.steps
    for measure, field in (("sent", "sent"), ("opens", "opens"), ("clicks", "clicks"),
                           ("call_requests", "contact_requests")):  # fmt: skip
        assert found.trend.total(measure) == sum(getattr(s, field) for s in steps), measure


def test_a_long_range_is_counted_per_week(world, factory, registry, clock):
    found = _read(factory, registry, since="2026-01-01", until="2026-06-30")
    assert found.trend.grain == "week"
    weeks = {p.start.isoformat(): p.sent for p in found.trend.points}
    assert weeks["2026-03-02"] == 6 and weeks["2026-03-09"] == 2
    assert all(date.fromisoformat(w).weekday() == 0 for w in weeks)
    assert min(weeks) == "2025-12-29" and max(weeks) == "2026-06-29"  # the range asked for


def test_cohorts_by_iso_week_of_joining(world, factory, registry):
    found = _read(factory, registry)
    assert found.cohorts.last_step == "three"
    # enrolled, got a message, got the last step, opened, clicked, asked for a call
    assert _cohorts(found) == {"2026-W10": (2, 2, 1, 1, 2, 1), "2026-W11": (1, 1, 0, 1, 1, 0)}
    w10 = found.cohorts.rows[0]
    assert w10.share("opened") == 0.5 and w10.share("reached") == 1.0


@pytest.mark.parametrize(
    "raw, trend, cohorts",
    [
        # Ben and Cy read Spanish
        ({"locale": "es"}, {"2026-03-02": (2, 0, 1, 0), "2026-03-09": (2, 0, 0, 0),
                            "2026-03-10": (0, 1, 1, 0)},
         {"2026-W10": (1, 1, 0, 0, 1, 0), "2026-W11": (1, 1, 0, 1, 1, 0)}),
        # Ana's two texts; people are not per channel, their messages are
        ({"channel": "sms"}, {"2026-03-02": (2, 0, 0, 0)},
         {"2026-W10": (2, 1, 1, 0, 0, 0), "2026-W11": (1, 0, 0, 0, 0, 0)}),
        ({"source": "import"}, {"2026-03-02": (2, 0, 1, 0)}, {"2026-W10": (1, 1, 0, 0, 1, 0)}),
        ({"timezone": "America/New_York"},
         {"2026-03-02": (4, 1, 1, 1), "2026-03-09": (2, 0, 0, 0), "2026-03-10": (0, 1, 1, 0)},
         {"2026-W10": (1, 1, 1, 1, 1, 1), "2026-W11": (1, 1, 0, 1, 1, 0)}),
        ({"since": "2026-03-09"}, {"2026-03-09": (2, 0, 0, 0), "2026-03-10": (0, 1, 1, 0)},
         {"2026-W11": (1, 1, 0, 1, 1, 0)}),
        ({"until": "2026-03-08"}, {"2026-03-02": (6, 1, 2, 1)},
         {"2026-W10": (2, 2, 1, 1, 2, 1)}),
        ({"locale": "fr"}, {}, {}),  # nobody reads French: empty, not an error
    ],
)  # fmt: skip
def test_each_filter_narrows_every_report(world, factory, registry, raw, trend, cohorts):
    found = _read(factory, registry, **raw)
    assert _trend(found) == trend
    assert _cohorts(found) == cohorts
    steps = found.report.steps
    assert found.trend.total("sent") == sum(s.sent for s in steps)
    if "channel" in raw:
        assert {s.channel for s in steps} == {raw["channel"]}
    enrolled = sum(c[0] for c in cohorts.values())
    assert found.report.enrollments.enrolled == enrolled


def test_filter_choices_come_from_the_campaigns_people(world, factory, registry):
    options = _read(factory, registry).options
    assert options.locales == ["en", "es"]
    assert options.sources == ["import", "signup"]
    assert options.timezones == ["America/Chicago", "America/New_York"]


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"channel": "fax"}, "channel"),
        ({"locale": "e$"}, "locale"),
        ({"source": "DROP TABLE"}, "source"),
        ({"timezone": "Mars/Olympus_Mons"}, "time zone"),
        ({"timezone": "../../etc/passwd"}, "time zone"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-02-30"}, "until"),
        ({"since": "2026-03-09", "until": "2026-03-01"}, "after until"),
    ],
)
def test_a_value_that_cannot_be_a_filter_says_which(raw, field):
    with pytest.raises(FilterError) as info:
        parse_filters(raw)
    assert field in str(info.value)


def test_no_filters_is_the_plain_report(world, factory, registry):
    with factory() as s:
        plain = campaign_report(s, registry, "quick")
        filtered = campaign_report(s, registry, "quick", filters=Filters())
    assert plain.to_dict() == filtered.to_dict()


# ---------------------------------------------------------------- the page


def test_the_page_shows_charts_trend_and_cohorts(world, client):
    page = client.get("/admin/campaigns/quick", headers=AUTH)
    assert page.status_code == 200
    text = page.text
    assert '<html lang="en">' in text
    assert text.count('<svg class="chart"') == 3  # the funnel by email, by text; the trend
    assert 'role="img" aria-labelledby="funnel-email-t funnel-email-d"' in text
    assert '<title id="trend-t">Sends, opens, clicks and call requests per day</title>' in text
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    cohorts = text.split('id="cohorts"')[1].split("</table>")[0]
    assert "2026-W10 (from Mar 2, 2026)" in cohorts and "2026-W11" in cohorts
    trend = text.split('id="trend"')[1].split("</table>")[0]
    assert "<td>Mar 10, 2026</td>" in trend
    # the step tables scroll on their own in a named region, never the page
    assert 'tabindex="0" role="region" aria-label="Funnel per step: Delivery"' in text


def test_filters_are_in_the_url_and_the_export_links(world, client):
    page = client.get(
        "/admin/campaigns/quick?locale=es&channel=email&since=2026-03-01", headers=AUTH
    )
    assert page.status_code == 200
    assert '<option value="es" selected>' in page.text
    assert 'name="since" value="2026-03-01"' in page.text
    link = (
        "/admin/campaigns/quick/export/steps.csv?locale=es&amp;channel=email&amp;since=2026-03-01"
    )
    assert link in page.text
    # the campaign choice keeps the filters
    moved = client.get("/admin/campaigns/quick?campaign=tiny&locale=es", headers=AUTH,
                       follow_redirects=False)  # fmt: skip
    assert (
        moved.status_code == 303 and moved.headers["location"] == "/admin/campaigns/tiny?locale=es"
    )


@pytest.mark.parametrize(
    "query, says",
    [
        ("channel=fax", "channel must be one of email, sms"),
        ("locale=%3Cscript%3E", "locale must be a language code"),
        ("timezone=Nowhere%2FLand", "time zone must be one like America/New_York"),
        ("since=2026-13-01", "since must be a date like 2026-03-01"),
        ("lang=fr", "lang must be one of en, es"),
    ],
)
def test_a_bad_filter_is_a_400_page_that_says_why(world, client, query, says):
    for path in ("/admin/campaigns/quick", "/admin/campaigns/quick/export/steps.csv"):
        page = client.get(f"{path}?{query}", headers=AUTH)
        assert page.status_code == 400, path
        assert says in page.text and "<script>" not in page.text


def test_unknown_campaign_or_table_is_a_404(world, client):
    assert client.get("/admin/campaigns/nope", headers=AUTH).status_code == 404
    assert client.get("/admin/campaigns/nope/export/steps.csv", headers=AUTH).status_code == 404
    assert client.get("/admin/campaigns/quick/export/people.csv", headers=AUTH).status_code == 404


def test_the_page_in_spanish(world, client):
    page = client.get("/admin/campaigns/quick?lang=es", headers=AUTH)
    assert page.status_code == 200
    text = page.text
    assert '<html lang="es">' in text and '<header lang="en">' in text  # the nav stays English
    for words in ("Embudo por paso", "Cohortes por semana de inscripción", "Entrega",
                  "Interacción", "Clics por enlace", "Envíos, aperturas, clics y pedidos de "
                  "llamada por día", "Número de paso", "Enviados", "Tasa de apertura"):  # fmt: skip
        assert words in text, words
    assert "100,0\xa0%" in text  # Babel's Spanish percent
    assert '<a href="/admin/campaigns/quick/edit">Editar esta secuencia</a>' in text
    assert '<a href="/admin/campaigns/quick/history">Historial de sus revisiones</a>' in text
    assert "2026-W10 (desde el 2 mar 2026)" in text
    # The browser's language when the link names none
    chosen = client.get("/admin/campaigns/quick", headers={**AUTH, "Accept-Language": "es-MX"})
    assert '<html lang="es">' in chosen.text


def test_both_languages_have_every_word():
    assert set(TEXT["en"]) == set(TEXT["es"])


# ---------------------------------------------------------------- CSV


def _csv(client, table: str, query: str = "") -> tuple[list[str], list[list[str]], object]:
    response = client.get(f"/admin/campaigns/quick/export/{table}.csv?{query}", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    return rows[0], rows[1:], response


def test_each_table_exports_as_csv(world, client):
    header, rows, response = _csv(client, "steps", "locale=es&lang=es")
    assert response.headers["content-disposition"] == (
        'attachment; filename="quick-steps-locale-es.csv"'
    )
    assert response.headers["cache-control"] == "no-store"
    assert header[:5] == ["step_number", "step", "channel", "created", "sent"]
    one = dict(zip(header, rows[0], strict=True))
    assert (one["step"], one["channel"], one["sent"], one["clicks_people"]) == (
        "one",
        "email",
        "2",
        "2",
    )
    assert one["open_rate"] == "0.5" and one["rates_per"] == "sent"

    header, rows, _ = _csv(client, "trend")
    assert header == ["day_starting", "sent", "opens_people", "clicks_people", "call_requests"]
    assert ["2026-03-02", "6", "1", "2", "1"] in rows and len(rows) == 9

    header, rows, _ = _csv(client, "cohorts")
    assert header[:5] == ["iso_week", "week_starting", "enrolled", "got_a_message",
                          "got_a_message_rate"]  # fmt: skip
    assert "got_last_step_three" in header and "asked_for_a_call_rate" in header
    w10 = dict(zip(header, rows[0], strict=True))
    assert (w10["iso_week"], w10["enrolled"], w10["opened"], w10["opened_rate"]) == (
        "2026-W10",
        "2",
        "1",
        "0.5",
    )

    header, rows, _ = _csv(client, "links")
    assert header == ["step_number", "step", "channel", "link", "clicks_people", "clicks_all"]
    labels = {r[3]: r for r in rows}
    assert labels["read online"][4:] == ["2", "3"]
    # A link a spreadsheet would run: written as text, with a leading quote
    assert "'" + NASTY_URL in labels

    for table in ("goal", "held", "experiments", "answers"):
        header, rows, _ = _csv(client, table)
        assert header and rows == []  # the quick course has none of these


def test_csv_cells_never_start_a_formula():
    text = csv_text(["=sum", "name"], [["+1", -2], ["@me", "-x"], ["\tTab", 0.25], [None, True]])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [["'=sum", "name"], ["'+1", "-2"], ["'@me", "'-x"], ["'\tTab", "0.25"],
                    ["", "yes"]]  # fmt: skip


# ---------------------------------------------------------------- roles


@pytest.mark.parametrize("role, status", [("marketer", 200), ("care", 403), ("ops", 403)])
def test_marketers_and_admins_only(world, client, factory, clock, role, status):
    with transaction(factory) as s:
        accounts.add(s, clock, Actor("cli:test", "admin", "cli"), f"{role}1", role,
                     f"{role}'s long password", role)  # fmt: skip
    auth = basic(f"{role}1", f"{role}'s long password")
    for path in ("/admin/campaigns/quick", "/admin/campaigns/quick/export/cohorts.csv"):
        assert client.get(path, headers=auth).status_code == status, path
