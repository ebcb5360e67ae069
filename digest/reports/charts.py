"""Charts of the admin console's health pages: server-side SVG drawn by pygal, readable
without JavaScript and allowed by the pages' Content-Security-Policy.

pygal's SVG carries a ``<script>`` with its tooltip configuration even when told to load
no script (``js=[]``): it is removed, so no script is on the page. Its ``<style>`` gets
the page's CSP nonce (``style-src 'nonce-...'``); the one inline ``style`` attribute it
writes (hidden tooltips, which need that script) is dropped with them. The ``<svg>`` is
marked ``role="img"`` with the chart's title as its name: the numbers are read from the
data table beside each chart, not from the drawing. Pure functions: data in, SVG text out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import pygal
from pygal.style import Style

#: Dark on white, every colour at least 4.5:1 against white (WCAG AA for text).
COLOURS = ("#1f5fa8", "#b3261e", "#1b7a3e", "#8a4b00", "#6a3d9a", "#00687a", "#5c5c5c")
#: Thresholds: amber for a target, red for a limit.
TARGET_COLOUR = "#8a4b00"
LIMIT_COLOUR = "#b3261e"
#: Everything but the series' colours; guides are solid and light, so that only
#: thresholds are dashed.
STYLE: dict[str, object] = dict(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#222222",
    foreground_strong="#000000",
    foreground_subtle="#595959",
    opacity="1",
    opacity_hover="1",
    stroke_opacity="1",
    stroke_opacity_hover="1",
    stroke_width="3",
    stroke_width_hover="3",
    guide_stroke_color="#dddddd",
    major_guide_stroke_color="#bbbbbb",
    guide_stroke_dasharray="none",
    major_guide_stroke_dasharray="none",
    font_family="system-ui, sans-serif",
    title_font_size=20,
    label_font_size=14,
    major_label_font_size=14,
    legend_font_size=15,
    value_font_size=14,
)
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.DOTALL)
_TOOLTIP_STYLE = re.compile(r'\sstyle="opacity: 0"')
_ROOT = re.compile(r"<svg\b")


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[float | None]
    #: A threshold, drawn as a dashed line without dots.
    threshold: bool = False
    #: Its colour; None: the next of :data:`COLOURS`.
    colour: str | None = None


def line_chart(
    title: str,
    x_labels: Sequence[str],
    series: Sequence[Series],
    *,
    y_title: str,
    nonce: str,
    percent: bool = False,
    at_least: float | None = None,
) -> str:
    """A line chart as inline SVG text for a page whose CSP nonce is ``nonce``; its y
    axis runs from 0 to ``at_least`` or more (so a threshold line is not on the edge)."""
    chart = _chart(pygal.Line, title, x_labels, series, y_title, percent)
    if at_least is not None:
        values = [v for item in series for v in item.values if v is not None]
        chart.range = (0, max([at_least, *values]) * 1.05)
    for item in series:
        if item.threshold:
            chart.add(
                item.name, list(item.values), show_dots=False, stroke_style={"dasharray": "10, 6"}
            )
        else:
            chart.add(item.name, list(item.values))
    return inline(chart.render(is_unicode=True), title, nonce)


def bar_chart(
    title: str, x_labels: Sequence[str], series: Sequence[Series], *, y_title: str, nonce: str
) -> str:
    """A bar chart as inline SVG text for a page whose CSP nonce is ``nonce``."""
    chart = _chart(pygal.Bar, title, x_labels, series, y_title, False)
    for item in series:
        chart.add(item.name, list(item.values))
    return inline(chart.render(is_unicode=True), title, nonce)


def _chart(
    kind: type[pygal.graph.graph.Graph],
    title: str,
    x_labels: Sequence[str],
    series: Sequence[Series],
    y_title: str,
    percent: bool,
) -> pygal.graph.graph.Graph:
    palette = iter(COLOURS * 4)
    colours = tuple(item.colour or next(palette) for item in series)
    chart = kind(
        js=[],
        disable_xml_declaration=True,
        style=Style(colors=colours or COLOURS, **STYLE),
        title=title,
        y_title=y_title,
        width=800,
        height=440,
        x_label_rotation=35 if len(x_labels) > 6 else 0,
        legend_at_bottom=True,
        legend_at_bottom_columns=2,
        truncate_legend=-1,
        print_values=False,
        include_x_axis=True,
        show_minor_x_labels=len(x_labels) <= 13,
        x_labels_major_every=max(1, len(x_labels) // 8),
        no_data_text="No data yet",
        value_formatter=(lambda v: f"{v:.2f} %") if percent else (lambda v: f"{v:g}"),
    )
    chart.x_labels = list(x_labels)
    counted = [v for item in series for v in item.values if v is not None]
    if not percent and counted and all(float(v).is_integer() for v in counted):
        top = int(max(counted))
        if top < 10:  # people and messages come whole: no 0.2 of a reader on the axis
            chart.y_labels = list(range(top + 1))
    return chart


def inline(svg: str, title: str, nonce: str) -> str:
    """pygal's ``svg`` fit for a page: no script, its style under ``nonce``, an image
    named ``title``."""
    svg = _SCRIPT.sub("", svg)
    svg = _TOOLTIP_STYLE.sub("", svg)
    svg = svg.replace("<style", f'<style nonce="{escape(nonce)}"', 1)
    svg = re.sub(r"(<style\b[^>]*>)", r"\1.pygal-chart .tooltip{display:none}", svg, count=1)
    label = escape(title)
    return _ROOT.sub(f'<svg role="img" aria-label="{label}" focusable="false"', svg, count=1)
