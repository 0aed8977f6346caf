"""Words and number formats of the results page (web/results.py), in English and Spanish.
The other workspace pages are in English; this one is read by educators in both.

Numbers, percentages and dates are written by Babel for the page's locale (CLDR), so
1,234 and 50.0% in English read 1234 and 50,0 % in Spanish. Entries holding markup are
Markup: `.format()` on them escapes what it fills in.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import date

from babel import Locale
from babel.dates import format_date
from babel.numbers import format_decimal
from markupsafe import Markup

LANGS = ("en", "es")

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "lang_name": "English",
        "language": "Language",
        "version": "version {v}",
        "not_deployed": "not deployed (history only)",
        "review_link": "clinical review: {ok} of {n} steps",
        "edit_link": "Edit this sequence",
        "history_link": "History of its revisions",
        "filters": "Filters",
        "campaign": "Campaign",
        "locale": "Language of the person",
        "channel": "Channel",
        "source": "Joined by",
        "timezone": "Time zone",
        "since": "From",
        "until": "To (inclusive)",
        "any": "any",
        "apply": "Show",
        "clear_filters": "Clear filters",
        "date_hint": "YYYY-MM-DD",
        "filter_note": (
            "Messages count by the day they were created, people by the day they joined. "
            "The channel narrows messages; people are counted once whatever their channel."
        ),
        "bad_filter": "Bad filter",
        "no_campaign": "No such campaign",
        "export": "Download CSV",
        "export_of": "Download {table} as CSV",
        "ch_email": "email",
        "ch_sms": "SMS",
        "enrollments": "Enrollments",
        "enroll_summary": Markup(
            "Enrolled <strong>{enrolled}</strong> · active {active} · paused {paused} · "
            "completed {completed} · exited {exited}"
        ),
        "exited_for": "Exited",
        "paused_for": "Paused",
        "funnel": "Funnel per step",
        "funnel_chart": "Funnel per step, {channel}",
        "funnel_desc": (
            "{measures} for each step of the campaign on {channel}, by step number; "
            "the table below gives every figure."
        ),
        "step_n": "Step number",
        "count": "Count",
        "trend": "Over time",
        "trend_chart": "Sends, opens, clicks and call requests per {grain}",
        "trend_desc": "{first} to {last}; the table beside gives every figure.",
        "day": "day",
        "week": "week",
        "day_col": "Day",
        "week_col": "Week of",
        "nothing_yet": "Nothing sent in this view yet.",
        "cohorts": "Cohorts by week of joining",
        "cohort_week": "Joined in week",
        "cohort_note": (
            "People by the ISO week they joined. Opened, clicked and asked for a call are "
            "shares of those who got a message; the rest are shares of those enrolled. "
            "Machines' opens and clicks are left out."
        ),
        "no_cohorts": "Nobody joined in this view.",
        "week_label": "{iso} (from {day})",
        "delivery": "Delivery",
        "engagement": "Engagement",
        "steps_split_note": (
            "One row per step and channel, in two tables: what happened to the messages, "
            "then what people did with them."
        ),
        "h_num": "#",
        "h_step": "Step",
        "h_channel": "Channel",
        "h_created": "Created",
        "h_sent": "Sent",
        "h_delivered": "Delivered",
        "h_failed": "Failed",
        "h_bounced": "Bounced",
        "h_suppressed": "Suppressed",
        "h_skipped": "Skipped",
        "h_in_flight": "In flight",
        "h_delivery_rate": "Delivered/sent",
        "h_opens": "Opens",
        "h_opens_all": "All opens",
        "h_clicks": "Clicks",
        "h_clicks_all": "All clicks",
        "h_left_out": "Left out",
        "h_asks": "Call requests",
        "h_asks_abbr": "Calls",
        "h_unsubs": "Unsubscribes",
        "h_unsubs_abbr": "Unsubs",
        "h_open_rate": "Open rate",
        "h_click_rate": "Click rate",
        "h_rates_per": "Rates per",
        "h_enrolled": "Enrolled",
        "h_reached": "Got a message",
        "h_reached_last": "Got the last step",
        "h_opened": "Opened",
        "h_clicked": "Clicked",
        "h_asked": "Asked for a call",
        "h_completed": "Completed",
        "h_exited": "Exited",
        "h_link": "Link",
        "h_people": "People",
        "h_all_clicks": "Clicks",
        "m_sent": "Sent",
        "m_delivered": "Delivered",
        "m_opens": "Opened",
        "m_clicks": "Clicked",
        "m_call_requests": "Call requests",
        "removed": "(removed)",
        "no_steps": "No steps.",
        "skipped_for": "Skipped",
        "suppressed_for": "Suppressed",
        "per": "per {base}",
        "base_sent": "sent",
        "base_delivered": "delivered",
        "steps_note": (
            "Sent counts everything the provider accepted (including messages later "
            "delivered, bounced or failed). Opens and Clicks count people (one message "
            "each), All opens and All clicks every open and click; both leave out what a "
            "machine did (a mail scanner, a link checker's HEAD request, a browser's "
            "prefetch, Apple's privacy proxy loading every image, an open or click seconds "
            "after sending, many links clicked at once), which is kept and counted under "
            "Left out:"
        ),
        "left_out_summary": "{opens} open(s) and {clicks} click(s) in this report",
        "rates_note": (
            "Rates divide by delivered where the channel has delivery reports, else by sent"
        ),
        "dash_note": "Rates show – when there is nothing to divide by.",
        "links": "Clicks per link",
        "links_note": (
            "Every link of a lesson goes through our own redirect, so each is counted on its "
            "own; machines left out."
        ),
        "no_clicks": "No clicks yet.",
        "goal": "Goal",
        "goal_per_step": "Goal per step",
        "held": "Held by the frequency cap",
        "answers": "Check-in answers",
        "review": "Clinical review",
        "experiments": "Experiments",
    },
    "es": {
        "lang_name": "Español",
        "language": "Idioma",
        "version": "versión {v}",
        "not_deployed": "no desplegada (solo historial)",
        "review_link": "revisión clínica: {ok} de {n} pasos",
        "edit_link": "Editar esta secuencia",
        "history_link": "Historial de sus revisiones",
        "filters": "Filtros",
        "campaign": "Campaña",
        "locale": "Idioma de la persona",
        "channel": "Canal",
        "source": "Se unió por",
        "timezone": "Zona horaria",
        "since": "Desde",
        "until": "Hasta (incluido)",
        "any": "cualquiera",
        "apply": "Mostrar",
        "clear_filters": "Quitar filtros",
        "date_hint": "AAAA-MM-DD",
        "filter_note": (
            "Los mensajes cuentan por el día en que se crearon; las personas, por el día en "
            "que se unieron. El canal limita los mensajes; cada persona cuenta una vez, sea "
            "cual sea su canal."
        ),
        "bad_filter": "Filtro no válido",
        "no_campaign": "No existe esa campaña",
        "export": "Descargar CSV",
        "export_of": "Descargar {table} en CSV",
        "ch_email": "correo",
        "ch_sms": "SMS",
        "enrollments": "Inscripciones",
        "enroll_summary": Markup(
            "Inscritas <strong>{enrolled}</strong> · activas {active} · en pausa {paused} · "
            "completaron {completed} · salieron {exited}"
        ),
        "exited_for": "Salieron",
        "paused_for": "En pausa",
        "funnel": "Embudo por paso",
        "funnel_chart": "Embudo por paso, {channel}",
        "funnel_desc": (
            "{measures} en cada paso de la campaña por {channel}, por número de paso; "
            "la tabla de abajo da todas las cifras."
        ),
        "step_n": "Número de paso",
        "count": "Cantidad",
        "trend": "A lo largo del tiempo",
        "trend_chart": "Envíos, aperturas, clics y pedidos de llamada por {grain}",
        "trend_desc": "Del {first} al {last}; la tabla al lado da todas las cifras.",
        "day": "día",
        "week": "semana",
        "day_col": "Día",
        "week_col": "Semana del",
        "nothing_yet": "Todavía no se envió nada en esta vista.",
        "cohorts": "Cohortes por semana de inscripción",
        "cohort_week": "Se unieron en la semana",
        "cohort_note": (
            "Personas según la semana ISO en que se unieron. Abrieron, hicieron clic y "
            "pidieron una llamada son proporciones de quienes recibieron un mensaje; el resto, "
            "de las inscritas. Se dejan fuera las aperturas y los clics de máquinas."
        ),
        "no_cohorts": "Nadie se unió en esta vista.",
        "week_label": "{iso} (desde el {day})",
        "delivery": "Entrega",
        "engagement": "Interacción",
        "steps_split_note": (
            "Una fila por paso y canal, en dos tablas: qué pasó con los mensajes y después "
            "qué hicieron las personas con ellos."
        ),
        "h_num": "#",
        "h_step": "Paso",
        "h_channel": "Canal",
        "h_created": "Creados",
        "h_sent": "Enviados",
        "h_delivered": "Entregados",
        "h_failed": "Fallidos",
        "h_bounced": "Rebotados",
        "h_suppressed": "Suprimidos",
        "h_skipped": "Omitidos",
        "h_in_flight": "En curso",
        "h_delivery_rate": "Entregados/enviados",
        "h_opens": "Aperturas",
        "h_opens_all": "Todas las aperturas",
        "h_clicks": "Clics",
        "h_clicks_all": "Todos los clics",
        "h_left_out": "Excluidos",
        "h_asks": "Pedidos de llamada",
        "h_asks_abbr": "Llamadas",
        "h_unsubs": "Bajas",
        "h_unsubs_abbr": "Bajas",
        "h_open_rate": "Tasa de apertura",
        "h_click_rate": "Tasa de clics",
        "h_rates_per": "Tasas por",
        "h_enrolled": "Inscritas",
        "h_reached": "Recibieron un mensaje",
        "h_reached_last": "Recibieron el último paso",
        "h_opened": "Abrieron",
        "h_clicked": "Hicieron clic",
        "h_asked": "Pidieron una llamada",
        "h_completed": "Completaron",
        "h_exited": "Salieron",
        "h_link": "Enlace",
        "h_people": "Personas",
        "h_all_clicks": "Clics",
        "m_sent": "Enviados",
        "m_delivered": "Entregados",
        "m_opens": "Abiertos",
        "m_clicks": "Con clic",
        "m_call_requests": "Pedidos de llamada",
        "removed": "(eliminado)",
        "no_steps": "Sin pasos.",
        "skipped_for": "Omitidos",
        "suppressed_for": "Suprimidos",
        "per": "por {base}",
        "base_sent": "enviado",
        "base_delivered": "entregado",
        "steps_note": (
            "Enviados cuenta todo lo que aceptó el proveedor (también lo que después se "
            "entregó, rebotó o falló). Aperturas y Clics cuentan personas (un mensaje cada "
            "una); Todas las aperturas y Todos los clics, cada apertura y cada clic. Ambos "
            "dejan fuera lo que hizo una máquina (un escáner de correo, la petición HEAD de "
            "un verificador de enlaces, la precarga de un navegador, el proxy de privacidad "
            "de Apple, una apertura o un clic segundos después del envío, muchos enlaces "
            "a la vez), que se guarda y se cuenta en Excluidos:"
        ),
        "left_out_summary": "{opens} apertura(s) y {clicks} clic(s) en este informe",
        "rates_note": (
            "Las tasas dividen por entregados cuando el canal informa entregas; si no, por enviados"
        ),
        "dash_note": "Las tasas muestran – cuando no hay nada por lo que dividir.",
        "links": "Clics por enlace",
        "links_note": (
            "Cada enlace de una lección pasa por nuestra propia redirección, así que se cuenta "
            "por separado; sin máquinas."
        ),
        "no_clicks": "Todavía no hay clics.",
        "goal": "Objetivo",
        "goal_per_step": "Objetivo por paso",
        "held": "Retenidos por el límite de frecuencia",
        "answers": "Respuestas de seguimiento",
        "review": "Revisión clínica",
        "experiments": "Experimentos",
    },
}


def lang_of(query: str | None, accept_language: str | None) -> str:
    """`?lang=` when it names one of ours (ValueError when it names another), else the
    browser's Accept-Language, else English."""
    from web.i18n import accepted_lang

    if query:
        if query not in LANGS:
            raise ValueError(f"lang must be one of {', '.join(LANGS)}, not {query!r}")
        return query
    return accepted_lang(accept_language)


@dataclass(frozen=True)
class Formats:
    """Babel's numbers and dates for one locale, as the template's filters."""

    locale: str

    def n(self, value: int | float | None) -> str:
        return "–" if value is None else format_decimal(value, locale=self.locale)

    def pct(self, value: float | None) -> str:
        """One decimal, in the locale's own pattern (50.0% in English, 50,0 % in Spanish)."""
        if value is None:
            return "–"
        pattern = copy.copy(Locale.parse(self.locale).percent_formats[None])
        pattern.frac_prec = (1, 1)
        return pattern.apply(value, self.locale)

    def day(self, value: date) -> str:
        return format_date(value, "medium", locale=self.locale)

    def short_day(self, value: date) -> str:
        return format_date(value, "d MMM", locale=self.locale)
