"""Charts for the results page, drawn here as inline SVG: no script, no font, nothing
fetched from another host (the workspace's CSP allows none of it).

    bar_chart(Chart(uid, title, desc, x_labels, series, number))   grouped bars (the funnel)
    line_chart(Chart(...))                                          lines over time (the trend)

pygal was tried first and left out: its SVG always carries an inline <script> with its
whole configuration (refused by the workspace's CSP, and naming file:// paths), <desc>
elements of raw coordinates that screen readers announce, and it has no fill patterns.

Accessible by construction: the <svg> is an image named by its <title> and described by
its <desc> (the page puts the same figures in a table beside it); every series is told
apart by a pattern or a marker shape and dash as well as by colour, and named in the
legend; each colour has at least 3:1 contrast on white (WCAG 1.4.11). The drawing is a
viewBox and scales to its box, so a phone shows the whole chart without scrolling.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 380, 260
FONT = 13
INK, MUTED, GRID = "#1f2933", "#52606d", "#d9dee4"
# Contrast on white: 5.9, 6.5, 5.3, 6.4, 7.6 (each at least 3:1 for graphics).
COLOURS = ("#2f6f62", "#1f5fa8", "#b54708", "#6941c6", "#475467")
MARKERS = ("circle", "square", "triangle", "diamond", "cross")
DASHES = ("", "6 3", "2 3", "8 3 2 3", "1 2")

Number = Callable[[float], str]
Series = Sequence[tuple[str, Sequence[int]]]


def _nice_top(value: float, ticks: int = 4) -> tuple[float, float]:
    """A round top for the y axis and its tick step (1, 2 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0, 1.0
    raw = value / ticks
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    step = max(step, 1.0)  # counts: no tick between whole numbers
    return step * math.ceil(value / step), step


def _patterns(uid: str, count: int) -> str:
    """A fill per series: solid, hatched, dotted, crossed, then solid again."""
    defs = []
    for i in range(count):
        colour, pid = COLOURS[i % len(COLOURS)], f"{uid}-p{i}"
        kind = i % 4
        if kind == 1:
            body = f'<path d="M0 6L6 0" stroke="{colour}" stroke-width="2"/>'
        elif kind == 2:
            body = f'<circle cx="3" cy="3" r="1.6" fill="{colour}"/>'
        elif kind == 3:
            body = f'<path d="M0 0L6 6M6 0L0 6" stroke="{colour}" stroke-width="1.4"/>'
        else:
            body = f'<rect width="6" height="6" fill="{colour}"/>'
        defs.append(
            f'<pattern id="{pid}" width="6" height="6" patternUnits="userSpaceOnUse">{body}'
            "</pattern>"
        )
    return "<defs>" + "".join(defs) + "</defs>"


def _marker(kind: str, x: float, y: float, colour: str) -> str:
    r = 3.5
    if kind == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{colour}"/>'
    if kind == "square":
        at = f'x="{x - r:.1f}" y="{y - r:.1f}"'
        return f'<rect {at} width="{2 * r}" height="{2 * r}" fill="{colour}"/>'
    if kind == "triangle":
        pts = f"{x:.1f},{y - r - 1:.1f} {x - r - 1:.1f},{y + r:.1f} {x + r + 1:.1f},{y + r:.1f}"
        return f'<polygon points="{pts}" fill="{colour}"/>'
    if kind == "diamond":
        d = r + 1
        pts = f"{x:.1f},{y - d:.1f} {x + d:.1f},{y:.1f} {x:.1f},{y + d:.1f} {x - d:.1f},{y:.1f}"
        return f'<polygon points="{pts}" fill="{colour}"/>'
    return (
        f'<path d="M{x - r:.1f} {y - r:.1f}L{x + r:.1f} {y + r:.1f}M{x + r:.1f} {y - r:.1f}'
        f'L{x - r:.1f} {y + r:.1f}" stroke="{colour}" stroke-width="2"/>'
    )


def _legend(names: Sequence[str], swatch: Callable[[int, float, float], str]) -> tuple[str, float]:
    """Legend items in rows across the top; returns the SVG and the height it takes."""
    out, x, y = [], 0.0, FONT
    for i, name in enumerate(names):
        width = 22 + len(name) * FONT * 0.55 + 14
        if x and x + width > WIDTH:
            x, y = 0.0, y + FONT + 8
        out.append(swatch(i, x, y - FONT * 0.8))
        out.append(f'<text x="{x + 22:.1f}" y="{y:.1f}">{escape(name)}</text>')
        x += width
    return "".join(out), y + 8


def _frame(chart: Chart, body: str) -> Markup:
    uid, title, desc = chart.uid, chart.title, chart.desc
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{uid}-t {uid}-d" xmlns="http://www.w3.org/2000/svg" '
        f'font-size="{FONT}" fill="{INK}" font-family="inherit">'
        f'<title id="{uid}-t">{escape(title)}</title><desc id="{uid}-d">{escape(desc)}</desc>'
        f"{body}</svg>"
    )


def _axes(top: float, step: float, plot: tuple[float, float, float, float], number: Number) -> str:
    left, top_y, right, bottom = plot
    out = []
    value = 0.0
    while value <= top + 1e-9:
        y = bottom - (bottom - top_y) * value / top
        out.append(
            f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" fill="{MUTED}">'
            f"{escape(number(value))}</text>"
        )
        value += step
    out.append(f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="{MUTED}"/>')
    return "".join(out)


def _x_labels(labels: Sequence[str], xs: Sequence[float], bottom: float) -> str:
    """As many of the labels as fit without overlapping (always the first and last)."""
    if not labels:
        return ""
    widest = max(len(s) for s in labels) * FONT * 0.55 + 6
    room = (xs[-1] - xs[0]) / max(len(xs) - 1, 1) if len(xs) > 1 else widest
    every = max(1, math.ceil(widest / room)) if room else 1
    keep = set(range(0, len(labels), every)) | {len(labels) - 1}
    if len(labels) - 1 - max(keep - {len(labels) - 1}, default=-every) < every:
        keep.discard(max(keep - {len(labels) - 1}, default=-1))
    return "".join(
        f'<text x="{xs[i]:.1f}" y="{bottom + FONT + 4:.1f}" text-anchor="middle">'
        f"{escape(labels[i])}</text>"
        for i in sorted(keep)
        if i >= 0
    )


def _x_title(text: str) -> str:
    if not text:
        return ""
    return (
        f'<text x="{WIDTH / 2:.0f}" y="{HEIGHT - 4}" text-anchor="middle" fill="{MUTED}">'
        f"{escape(text)}</text>"
    )


@dataclass(frozen=True)
class Chart:
    uid: str  # unique in the page: the ids of its title, description and patterns
    title: str
    desc: str  # what it shows, in words
    x_labels: Sequence[str]  # a group of bars, or a point of each line
    series: Series  # (name, one value per x label)
    number: Number  # how the y axis writes a number (the page's locale)
    x_title: str = ""


def bar_chart(chart: Chart) -> Markup:
    """Bars per group (x) and series (patterned and coloured, named in the legend)."""
    uid, series, groups = chart.uid, chart.series, chart.x_labels

    def swatch(i: int, x: float, y: float) -> str:
        colour = COLOURS[i % len(COLOURS)]
        return (
            f'<rect x="{x:.1f}" y="{y:.1f}" width="16" height="{FONT}" fill="url(#{uid}-p{i})" '
            f'stroke="{colour}"/>'
        )

    legend, legend_h = _legend([name for name, _ in series], swatch)
    plot = (40.0, legend_h + 8, WIDTH - 6.0, HEIGHT - 2 * FONT - 16.0)
    left, top_y, right, bottom = plot
    peak = max((v for _, values in series for v in values), default=0)
    top, step = _nice_top(peak)
    slot = (right - left) / max(len(groups), 1)
    bar = max(1.0, (slot * 0.8) / max(len(series), 1))
    bars, centres = [], []
    for g in range(len(groups)):
        x0 = left + slot * g + slot * 0.1
        centres.append(left + slot * g + slot / 2)
        for i, (_, values) in enumerate(series):
            value = values[g] if g < len(values) else 0
            h = (bottom - top_y) * value / top
            colour = COLOURS[i % len(COLOURS)]
            bars.append(
                f'<rect x="{x0 + bar * i:.1f}" y="{bottom - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="url(#{uid}-p{i})" stroke="{colour}" stroke-width="0.8"/>'
            )
    body = (
        _patterns(uid, len(series))
        + legend
        + _axes(top, step, plot, chart.number)
        + "".join(bars)
        + _x_labels(list(groups), centres, bottom)
        + _x_title(chart.x_title)
    )
    return _frame(chart, body)


def line_chart(chart: Chart) -> Markup:
    """A line per series, each with its own dash and marker as well as its colour."""
    series, x_labels = chart.series, chart.x_labels

    def swatch(i: int, x: float, y: float) -> str:
        colour = COLOURS[i % len(COLOURS)]
        dash = DASHES[i % len(DASHES)]
        mid = y + FONT / 2
        return (
            f'<line x1="{x:.1f}" x2="{x + 18:.1f}" y1="{mid:.1f}" y2="{mid:.1f}" '
            f'stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>'
            + _marker(MARKERS[i % len(MARKERS)], x + 9, mid, colour)
        )

    legend, legend_h = _legend([name for name, _ in series], swatch)
    plot = (40.0, legend_h + 8, WIDTH - 14.0, HEIGHT - 2 * FONT - 16.0)
    left, top_y, right, bottom = plot
    peak = max((v for _, values in series for v in values), default=0)
    top, step = _nice_top(peak)
    n = len(x_labels)
    xs = [left + (right - left) * (k / (n - 1) if n > 1 else 0.5) for k in range(n)]
    lines = []
    for i, (_, values) in enumerate(series):
        colour, dash = COLOURS[i % len(COLOURS)], DASHES[i % len(DASHES)]
        pts = [(xs[k], bottom - (bottom - top_y) * v / top) for k, v in enumerate(values)]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        lines.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2" '
            f'stroke-dasharray="{dash}"/>'
        )
        if len(pts) <= 40:  # beyond, the markers would touch: the dash tells them apart
            lines += [_marker(MARKERS[i % len(MARKERS)], x, y, colour) for x, y in pts]
    body = legend + _axes(top, step, plot, chart.number) + "".join(lines)
    body += _x_labels(list(x_labels), xs, bottom) + _x_title(chart.x_title)
    return _frame(chart, body)
