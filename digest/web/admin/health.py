"""The admin console's "Health" (Blueprint ``health``, nested under the console at
``/admin/health``): charts of the list over time, each drawn on the server as SVG
(:mod:`digest.reports.charts`), with its data in a table beside it and as CSV.

The table and the CSV are the same :class:`digest.reports.health.Table`, so what a screen
reader reads, what a spreadsheet gets and what the chart draws cannot disagree."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import Blueprint, Response, abort, g, render_template, url_for
from markupsafe import Markup

from digest.reports import health as report
from digest.reports.charts import LIMIT_COLOUR, TARGET_COLOUR, Series, bar_chart, line_chart
from digest.web.state import current_web

bp = Blueprint("health", __name__)


@dataclass(frozen=True)
class Chart:
    """One page of charts: its title, the charts' SVG and the table they draw."""

    title: str
    charts: tuple[Markup, ...]
    table: report.Table
    notes: tuple[str, ...]


def drawn(svg: str) -> Markup:
    """A chart's SVG, put in the page as it is: pygal writes every text (topic names,
    edition keys) through lxml, which escapes it, and :func:`~digest.reports.charts.inline`
    escapes what it adds."""
    return Markup(svg)  # noqa: S704


def topics(draw: bool) -> Chart:
    web = current_web()
    with web.factory() as session:
        data = report.topic_weeks(session, now=web.now())
    charts: tuple[Markup, ...] = ()
    if draw:
        svg = line_chart(
            "Readers per topic, week by week",
            [week.isoformat() for week in data.weeks],
            [Series(topic, data.counts[topic]) for topic in data.topics],
            y_title="Readers",
            nonce=g.get("nonce", ""),
        )
        charts = (drawn(svg),)
    notes = (
        "Derived, not stored: no weekly count is kept. A reader counts for a topic at the end "
        "of a week when they had confirmed by then, had not left (unsubscribed, bounced or "
        "complained), and their topics then include it: for someone who changed topics, their "
        "latest choice up to then; for someone who chose once, their topics now.",
        "People erased since are not counted in any week; someone who left and came back "
        "counts from their first confirmation.",
    )
    return Chart(
        "Readers per topic over time",
        charts,
        report.topics_table(data),
        notes,
    )


def editions(draw: bool) -> Chart:
    with current_web().factory() as session:
        outcomes = report.edition_outcomes(session)
    labels = [o.key for o in outcomes]
    nonce = g.get("nonce", "")

    def percent(values: list[float]) -> list[float | None]:
        return [round(v * 100, 3) for v in values]

    if not draw:
        return Chart("", (), report.outcomes_table(outcomes), ())
    sent = bar_chart(
        "Messages sent per edition",
        labels,
        [
            Series("Sent", [o.sent for o in outcomes]),
            Series("Failed", [o.failed for o in outcomes]),
        ],
        y_title="Messages",
        nonce=nonce,
    )
    rates = line_chart(
        "Failed, bounced and unsubscribed, per edition",
        labels,
        [
            Series("Failed (% of tried)", percent([o.failed_rate for o in outcomes])),
            Series("Hard bounces", percent([o.rate(o.hard) for o in outcomes])),
            Series("Soft bounces", percent([o.rate(o.soft) for o in outcomes])),
            Series("Unsubscribed", percent([o.rate(o.unsubscribed) for o in outcomes])),
        ],
        y_title="% of messages sent",
        nonce=nonce,
        percent=True,
    )
    complaints = line_chart(
        "Complaints per edition against the bulk-sender limits",
        labels,
        [
            Series("Complaints", percent([o.rate(o.complained) for o in outcomes])),
            Series(
                f"Gmail's target: under {report.COMPLAINT_TARGET:.1%}",
                [report.COMPLAINT_TARGET * 100] * len(labels),
                threshold=True,
                colour=TARGET_COLOUR,
            ),
            Series(
                f"Gmail and Yahoo's limit: {report.COMPLAINT_LIMIT:.1%}",
                [report.COMPLAINT_LIMIT * 100] * len(labels),
                threshold=True,
                colour=LIMIT_COLOUR,
            ),
        ],
        y_title="% of messages sent",
        nonce=nonce,
        percent=True,
        at_least=report.COMPLAINT_LIMIT * 100 * 1.5,
    )
    notes = (
        f"Gmail asks bulk senders to keep complaints under {report.COMPLAINT_TARGET:.1%} of "
        f"messages and never to reach {report.COMPLAINT_LIMIT:.1%}; Yahoo's limit is "
        f"{report.COMPLAINT_LIMIT:.1%}. Both are drawn as dashed lines.",
        "Bounces and complaints are those bounce processing matched to a message of the "
        "edition. Unsubscribed: readers who left after this edition and before any later "
        "digest reached them (digest deliverability --edition counts every edition sent "
        "before they left).",
        "An edition marked \u201ckept totals\u201d is counted from the totals it kept when "
        "retention deleted its ledger rows.",
    )
    return Chart(
        "What happened to each edition",
        tuple(drawn(svg) for svg in (complaints, rates, sent)),
        report.outcomes_table(outcomes),
        notes,
    )


def speed(draw: bool) -> Chart:
    with current_web().factory() as session:
        speeds = report.edition_speeds(session)
    if not draw:
        return Chart("", (), report.speeds_table(speeds), ())
    labels = [s.key for s in speeds]
    nonce = g.get("nonce", "")
    duration = bar_chart(
        "Send duration per edition",
        labels,
        [Series("Minutes", [None if s.seconds is None else round(s.seconds / 60, 2)
                            for s in speeds])],
        y_title="Minutes",
        nonce=nonce,
    )  # fmt: skip
    rate = bar_chart(
        "Messages per second per edition",
        labels,
        [Series("Messages per second", [None if s.per_second is None else round(s.per_second, 1)
                                        for s in speeds])],
        y_title="Messages per second",
        nonce=nonce,
    )  # fmt: skip
    notes = (
        "Measured on the messages planned with the edition, from the first one the mail "
        "server accepted to the last; readers added late and topic changes, sent later, are "
        "left out. A send stopped and resumed counts the pause.",
        "Editions whose ledger rows retention deleted are not shown: their times are gone.",
    )
    return Chart(
        "How fast each edition went out",
        (drawn(duration), drawn(rate)),
        report.speeds_table(speeds),
        notes,
    )


#: The health pages by name: /<name> shows it, /<name>.csv downloads its table (built
#: with ``draw=False``: the same table, no chart drawn).
PAGES: dict[str, Callable[[bool], Chart]] = {"topics": topics, "editions": editions, "speed": speed}


#: What the index says of each page.
ABOUT = {
    "topics": ("Readers per topic over time", "How many readers each topic had, week by week."),
    "editions": (
        "What happened to each edition",
        "Sent, failed, bounced, complained and unsubscribed, against Gmail's and Yahoo's "
        "complaint limits.",
    ),
    "speed": ("How fast each edition went out", "Send duration and messages per second."),
}


@bp.get("/")
def index() -> str:
    return render_template("admin/health/index.html", about=ABOUT)


@bp.get("/<name>")
def page(name: str) -> str:
    if name not in PAGES:
        abort(404)
    chart = PAGES[name](True)
    return render_template(
        "admin/health/chart.html", chart=chart, csv_url=url_for(".csv", name=name)
    )


@bp.get("/<name>.csv")
def csv(name: str) -> Response:
    if name not in PAGES:
        abort(404)
    table = PAGES[name](False).table
    day = current_web().now().date().isoformat()
    return Response(
        table.csv(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="digest-{name}-{day}.csv"'},
    )
