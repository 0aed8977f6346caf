"""A campaign's results for marketers (area "campaigns": marketers and admins; other
roles get a 403 page), in English or Spanish.

    GET /admin/campaigns/{key}        charts and tables: the funnel per step (a chart per
                                      channel, the steps in two tables), sends, opens,
                                      clicks and call requests over time, cohorts by week
                                      of joining, clicks per link, the goal, the frequency
                                      cap's holds, experiments, check-in answers, the
                                      clinical review
    GET /admin/campaigns/{key}/export/{table}.csv   one of those tables as CSV
                                      (campaigns.reporting.tables.TABLES names them)

Both take the same query, so a view can be shared and its CSV is the view's:
  locale, channel, source, timezone, since, until   (campaigns.reporting.filters)
  campaign   another campaign's results with the same filters (the page's campaign choice)
  lang       en or es; without it the browser's Accept-Language, else English
A value that cannot be a filter gets a 400 page saying which and why.

The reports are plain functions in campaigns/reporting (results.py gathers them); this
module reads the query, draws the charts (web/charts.py) and writes the CSV.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from campaigns.content import review
from campaigns.reporting.filters import FilterError, Filters, parse_filters
from campaigns.reporting.funnels import BY_DELIVERED, campaign_keys
from campaigns.reporting.results import Results, results
from campaigns.reporting.tables import TABLES
from campaigns.spreadsheets import csv_text
from campaigns.states import CHANNELS, Channel
from web.access import Staff, current_staff, need
from web.charts import Chart, bar_chart, line_chart
from web.render import ADMIN_HEADERS, admin_page
from web.results_words import TEXT, Formats, lang_of

Campaigns = Annotated[Staff, Depends(need("campaigns"))]
router = APIRouter(prefix="/admin/campaigns", dependencies=[Depends(current_staff)])

SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def _notice(staff: Staff, t: dict, title: str, message: str, back: str, status: int):
    return admin_page(
        "admin_notice.html",
        staff,
        status,
        title=title,
        message=message,
        detail=None,
        back=back,
        lang=t["lang"],
    )


def _words(request: Request) -> dict:
    lang = lang_of(request.query_params.get("lang"), request.headers.get("accept-language"))
    return {**TEXT[lang], "lang": lang}


def _read(request: Request, staff: Staff, key: str) -> tuple[dict, Filters, Results] | Response:
    """The page's words, filters and results, or the page that says what is wrong."""
    try:
        t = _words(request)
    except ValueError as exc:
        return _notice(
            staff, {"lang": "en"}, "Bad language", str(exc), f"/admin/campaigns/{quote(key)}", 400
        )
    back = f"/admin/campaigns/{quote(key)}?lang={t['lang']}"
    try:
        filters = parse_filters(request.query_params)
    except FilterError as exc:
        return _notice(staff, t, t["bad_filter"], str(exc), back, 400)
    state = request.app.state
    try:
        with state.factory() as session:
            found = results(session, state.registry, key, filters)
    except LookupError as exc:
        return _notice(staff, t, t["no_campaign"], str(exc), "/admin", 404)
    return t, filters, found


@router.get("/{key}", response_class=HTMLResponse)
def results_page(request: Request, key: str, staff: Campaigns) -> Response:
    other = (request.query_params.get("campaign") or "").strip()
    if other and other != key:  # the campaign choice: the same view of another campaign
        query = urlencode(
            [(k, v) for k, v in request.query_params.multi_items() if k != "campaign"]
        )
        return RedirectResponse(f"/admin/campaigns/{quote(other, safe='')}?{query}", 303)
    read = _read(request, staff, key)
    if isinstance(read, Response):
        return read
    t, filters, found = read
    state = request.app.state
    fmt = Formats(t["lang"])
    report = found.report
    with state.factory() as session:
        keys = campaign_keys(session, state.registry)
    shared = filters.query()
    return admin_page(
        "admin_campaign.html",
        staff,
        200,
        title=_campaign_name(state.registry, key, t["lang"]) or report.name,
        lang=t["lang"],
        t=t,
        fmt=fmt,
        report=report,
        trend=found.trend,
        cohorts=found.cohorts,
        options=found.options,
        filters=filters,
        campaigns=keys,
        channels=CHANNELS,
        here=f"/admin/campaigns/{quote(key)}",
        query=urlencode({**shared, "lang": t["lang"]}),
        lang_links={lang: urlencode({**shared, "lang": lang}) for lang in TEXT},
        langs={lang: TEXT[lang]["lang_name"] for lang in TEXT},
        funnel_charts=_funnel_charts(report, t, fmt),
        trend_chart=_trend_chart(found, t, fmt),
        reviews=review.campaign_reviews(state.registry, key, state.clock.now().date()),
        # One promote button per arm: on the step's first channel's table.
        x_channels={
            s.step_key: s.channel
            for s in reversed(report.experiments.steps if report.experiments else [])
        },
    )


@router.get("/{key}/export/{table}.csv")
def export_table(request: Request, key: str, table: str, staff: Campaigns) -> Response:
    """One table of the page as CSV. Counts only, no person: nothing to audit (see
    campaigns.reporting.results)."""
    if table not in TABLES:
        t = {"lang": "en"}
        known = ", ".join(TABLES)
        return _notice(staff, t, "No such table", f"tables are {known}", "/admin", 404)
    read = _read(request, staff, key)
    if isinstance(read, Response):
        return read
    _, filters, found = read
    header, rows = TABLES[table](found.report, trend=found.trend, cohorts=found.cohorts)
    parts = [key, table, *(f"{k}-{v}" for k, v in filters.query().items())]
    name = SAFE_NAME.sub("_", "-".join(parts))[:150] + ".csv"
    return Response(
        # A byte-order mark, so a spreadsheet reads the Spanish words as UTF-8.
        csv_text(header, rows).encode("utf-8-sig"),
        media_type="text/csv; charset=utf-8",
        headers={**ADMIN_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
    )


# ---------------------------------------------------------------- charts


def _channel_word(t: dict, channel: str) -> str:
    return t.get(f"ch_{channel}", channel)


def _funnel_charts(report, t: dict, fmt: Formats) -> list[tuple[str, Markup]]:
    """A chart per channel: for each step (by number), sent, delivered (where the channel
    has delivery reports), opened (email only: texts have no opens), clicked and call
    requests, unique people as in the table."""
    out, seen = [], set()
    for channel in [c for c in (*CHANNELS, *{s.channel for s in report.steps}) if c]:
        steps = [s for s in report.steps if s.channel == channel]
        if not steps or channel in seen:
            continue
        seen.add(channel)
        measures = ["sent"]
        if steps[0].rate_base == BY_DELIVERED:
            measures.append("delivered")
        if channel != Channel.SMS:
            measures.append("opens")
        measures += ["clicks", "call_requests"]
        field = {"call_requests": "contact_requests"}
        series = [(t[f"m_{m}"], [getattr(s, field.get(m, m)) for s in steps]) for m in measures]
        word = _channel_word(t, channel)
        names = ", ".join(name for name, _ in series)
        chart = bar_chart(
            Chart(
                f"funnel-{SAFE_NAME.sub('_', channel)}",
                t["funnel_chart"].format(channel=word),
                t["funnel_desc"].format(measures=names, channel=word),
                [str(s.position) if s.position is not None else "–" for s in steps],
                series,
                fmt.n,
                t["step_n"],
            )
        )
        out.append((t["funnel_chart"].format(channel=word), chart))
    return out


def _trend_chart(found: Results, t: dict, fmt: Formats) -> Markup | None:
    points = found.trend.points
    if not points:
        return None
    grain = found.trend.grain
    series = [
        (t[f"m_{m}"], [getattr(p, m) for p in points])
        for m in ("sent", "opens", "clicks", "call_requests")
    ]
    return line_chart(
        Chart(
            "trend",
            t["trend_chart"].format(grain=t[grain]),
            t["trend_desc"].format(first=fmt.day(points[0].start), last=fmt.day(points[-1].start)),
            [fmt.short_day(p.start) for p in points],
            series,
            fmt.n,
            t["day_col"] if grain == "day" else t["week_col"],
        )
    )


def _campaign_name(registry, key: str, lang: str) -> str | None:
    """The campaign's own name in the page's language (its file names it per locale)."""
    try:
        return registry.get(key).name_for(lang)
    except (LookupError, ValueError):  # known only from its history
        return None
