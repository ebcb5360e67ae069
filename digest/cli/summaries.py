"""``digest summaries``: import summaries from what the site publishes, list and show them."""

from __future__ import annotations

import datetime as dt
import sys
import textwrap

import click
from sqlalchemy.orm import Session

from digest.cli.base import Context, out, pass_app
from digest.errors import DataError
from digest.sources import FORMATS
from digest.sources.catmap import parse_category_map
from digest.sources.cleaning import canonical_url, normalise_doi, normalise_pmid
from digest.sources.fetch import TIMEOUT, read_source
from digest.sources.load import ImportOptions, ImportReport, failure_message, import_summaries
from digest.sources.store import find_summary, list_summaries
from digest.store.models import Summary


@click.group()
def summaries() -> None:
    """Research summaries: import them from the site's files and feeds, list, show.

    \b
    Example:
      digest summaries import https://example.org/research/feed.xml
    """


@summaries.command("import")
@click.argument("source")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="auto",
    show_default=True,
    help="Format of SOURCE; auto tells it from the content.",
)
@click.option(
    "--default-category",
    metavar="SLUG",
    help="Category (slug or name, created if new) for items with no known category.",
)
@click.option(
    "--category-map",
    type=click.Path(dir_okay=False),
    help="TOML or CSV file mapping the source's categories to the site's.",
)
@click.option("--skip-invalid", is_flag=True, help="Import the valid records, skip the others.")
@click.option("--lenient", is_flag=True, help="Import what can be recovered from malformed XML.")
@click.option("--dry-run", is_flag=True, help="Check and report everything; write nothing.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=TIMEOUT,
    show_default=True,
    metavar="SECONDS",
    help="How long a URL may take to answer.",
)
@pass_app
def import_command(
    app: Context,
    source: str,
    fmt: str,
    default_category: str | None,
    category_map: str | None,
    skip_invalid: bool,
    lenient: bool,
    dry_run: bool,
    timeout: float,
) -> None:
    """Import summaries from SOURCE: a JSON, JSON Lines or CSV file, an RSS, RDF, Atom or
    JSON feed, - for standard input, or an http(s) URL of any of those.

    Running it again changes nothing: summaries are matched by URL, else DOI, else PMID; an
    edited one is updated in place and keeps its publish date, so readers who got it do not
    get it again. Invalid records stop the whole import unless --skip-invalid.

    \b
    Example:
      digest summaries import examples/summaries.json --dry-run
      digest summaries import https://example.org/feed.xml --category-map categories.toml
    """
    settings, factory = app.settings, app.factory
    mapping = None
    if category_map:
        mapping = parse_category_map(read_source(category_map).data, category_map)
    fetched = read_source(source, stdin=sys.stdin.buffer, timeout=timeout)
    options = ImportOptions(
        default_category=default_category,
        category_map=mapping,
        skip_invalid=skip_invalid,
        dry_run=dry_run,
        lenient=lenient,
    )
    try:
        report = import_summaries(
            factory, fetched.data, fmt=fmt, zone=settings.zone, now=app.now, options=options
        )
    except DataError as exc:
        raise DataError(f"{fetched.name}: {exc}") from None
    for line in report_lines(report, fetched.name):
        out.print(line)
    if report.failed:
        raise DataError(failure_message(report))


def report_lines(report: ImportReport, name: str) -> list[str]:
    """One line per rejected or skipped record and per warning, then the counts."""
    verdict = "skipped" if report.skip_invalid else "rejected"
    lines = [f"{p.position}: {verdict}: {p.message}" for p in report.rejected]
    lines += [f"{p.position}: {p.message}" for p in report.skipped]
    lines += [f"{p.position}: warning: {p.message}".lstrip(": ") for p in report.warnings]
    if report.unknown_categories:
        shown = ", ".join(f"{k} ({n})" for k, n in sorted(report.unknown_categories.items()))
        lines.append(f"Categories not in the map or on the site, left out: {shown}")
    if report.failed:
        return lines
    if report.new_categories:
        lines.append(f"New categories: {', '.join(report.new_categories)}")
    if report.dry_run:
        lines.append(f"Dry run of {name} ({report.format}): {report.counts}; nothing was written.")
    else:
        lines.append(f"Imported {name} ({report.format}): {report.counts}.")
    return lines


@summaries.command("list")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M"]),
    help="Only those published after this date (in the list's time zone).",
)
@click.option("--category", metavar="SLUG", help="Only those in this category (slug or name).")
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most N."
)
@pass_app
def list_command(app: Context, since: dt.datetime | None, category: str | None, limit: int) -> None:
    """List summaries, newest first: id, publish date, title and categories.

    \b
    Example:
      digest summaries list --since 2026-11-01 --category pharmacology
    """
    settings = app.settings
    zone = settings.zone
    with app.factory() as session:
        try:
            rows, total = list_summaries(
                session,
                since=since.replace(tzinfo=zone) if since else None,
                category=category,
                limit=limit,
            )
        except LookupError:
            raise DataError(
                f"unknown category {category!r} (see `digest categories list`)"
            ) from None
        lines = [
            f"{s.id:>6}  {s.published_at.astimezone(zone):%Y-%m-%d %H:%M}  {s.title}  "
            f"[{', '.join(c.name for c in s.categories)}]"
            for s in rows
        ]
    if not lines:
        out.print("No summaries match.")
        return
    out.print(f"{'id':>6}  {'published (' + settings.timezone + ')':<16}  title  [categories]")
    for line in lines:
        out.print(line)
    if total > len(rows):
        out.print(f"... and {total - len(rows)} more (use --limit or --since).")


@summaries.command("show")
@click.argument("key", metavar="ID|URL|DOI")
@pass_app
def show_command(app: Context, key: str) -> None:
    """Show one summary, found by its id, URL, DOI or PMID (pmid:123).

    \b
    Example:
      digest summaries show 10.1038/s41393-026-0001-2
    """
    settings = app.settings
    with app.factory() as session:
        summary = _lookup(session, key)
        lines = _describe(summary, settings.zone)
    for line in lines:
        out.print(line)


def _lookup(session: Session, key: str) -> Summary:
    text = key.strip()
    summary: Summary | None = None
    if text.isdigit():
        summary = session.get(Summary, int(text)) if len(text) < 12 else None
    elif canonical_url(text) and not text.lower().startswith(("https://doi.org/", "http://dx.")):
        summary = find_summary(session, canonical_url(text) or text)
    elif text.lower().startswith("pmid"):
        pmid = normalise_pmid(text)
        summary = find_summary(session, "", pmid=pmid) if pmid else None
    elif doi := normalise_doi(text):
        summary = find_summary(session, "", doi=doi)
    if summary is None:
        raise DataError(f"no summary with id, URL, DOI or PMID {text!r}")
    return summary


def _describe(s: Summary, zone: dt.tzinfo) -> list[str]:
    published = s.published_at.astimezone(zone)
    facts: list[tuple[str, object]] = [
        ("Title", s.title),
        ("URL", s.url),
        ("Published", f"{published:%Y-%m-%d %H:%M %Z}"),
        ("Categories", ", ".join(f"{c.name} ({c.slug})" for c in s.categories)),
        ("Journal", s.journal),
        ("Year", s.year),
        ("DOI", s.doi),
        ("PMID", s.pmid),
        ("Study type", s.study_type),
        ("Evidence level", s.evidence_level),
        ("Population", s.population),
        ("Sample size", s.sample_size),
        ("Participants", s.participants),
        ("Duration", s.study_duration),
        ("Open access", None if s.open_access is None else ("yes" if s.open_access else "no")),
        ("Added", f"{s.created_at.astimezone(zone):%Y-%m-%d %H:%M %Z}"),
        ("Updated", f"{s.updated_at.astimezone(zone):%Y-%m-%d %H:%M %Z}"),
        ("Status", None if s.status == "published" else s.status),
        ("Note", s.correction_note if s.status != "published" else None),
    ]
    lines = [f"{label + ':':<16}{value}" for label, value in facts if value not in (None, "")]
    lines.append(f"{'Id:':<16}{s.id}")
    for title, text in (
        ("Simple explanation", s.simple_explanation),
        ("Practical implications", s.practical_implications),
    ):
        if text:
            lines += [
                "",
                f"{title}:",
                textwrap.fill(text, 88, initial_indent="  ", subsequent_indent="  "),
            ]
    for title, entries in (("Key findings", s.key_findings), ("Limitations", s.limitations)):
        if entries:
            lines += ["", f"{title}:"]
            lines += [
                textwrap.fill(e, 88, initial_indent="  - ", subsequent_indent="    ")
                for e in entries
            ]
    return lines
