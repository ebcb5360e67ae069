"""``digest bounces`` (process DSNs and complaints, resume a paused edition) and
``digest deliverability``."""

from __future__ import annotations

import click

from digest.bounces.process import process_messages, resume_edition
from digest.bounces.report import deliverability as deliverability_report
from digest.bounces.report import dns_lines, unmatched_events
from digest.bounces.sources import ImapSource, read_source
from digest.cli.base import (
    Context,
    chosen_key,
    edition_argument,
    err,
    format_option,
    out,
    pass_app,
    print_rows,
)
from digest.errors import DataError
from digest.store.db import transaction


@click.group()
def bounces() -> None:
    """Bounces and complaints: suppress dead addresses, pause on policy blocks.

    \b
    Example:
      digest bounces process ~/Maildir/.bounces && digest deliverability
    """


@bounces.command("process")
@click.argument("source", required=False)
@click.option("--imap", "imap_url", help="Also poll unseen mail: imaps://user:pass@host/INBOX.")
@click.option(
    "--recipient",
    envvar="RECIPIENT",
    help="The envelope recipient (VERP address), as an MTA pipe passes it ($RECIPIENT).",
)
@pass_app
def process_command(
    app: Context, source: str | None, imap_url: str | None, recipient: str | None
) -> None:
    """Read delivery status notifications and ARF complaints from SOURCE (a file, an mbox,
    a Maildir, or - for stdin) and act on them: hard bounces and complaints suppress the
    reader, soft bounces are counted, policy blocks pause the edition. One line per message.

    \b
    Example:
      digest bounces process ~/Maildir/.bounces
      # in /etc/aliases:  bounces: "|digest --config /srv/digest.toml bounces process -"
    """
    if source is None and imap_url is None:
        raise DataError("give a SOURCE (file, mbox, Maildir or -) or --imap URL")
    settings, factory = app.settings, app.factory
    now = app.now
    reports = []
    if source is not None:
        reports.append(
            process_messages(
                factory,
                settings,
                read_source(source),
                now=now,
                envelope_to=recipient,
                on_line=out.print,
            )
        )
    if imap_url is not None:
        with ImapSource(imap_url) as box:
            reports.append(
                process_messages(factory, settings, box.messages(), now=now, on_line=out.print)
            )
    for report in reports:
        for warning in report.warnings:
            err.print(warning)
        out.print(report.summary())


@bounces.command("resume")
@edition_argument(required=True)
@pass_app
def resume_command(app: Context, key: str) -> None:
    """Reopen an edition paused after a policy bounce, once the cause is fixed; the next
    `digest send` goes on where it stopped.

    \b
    Example:
      digest bounces resume 2026-W48 && digest send
    """
    with transaction(app.factory) as session:
        resume_edition(session, key)
    out.print(f"Edition {key} is open again: `digest send` goes on with it.")


@bounces.command("unmatched")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@format_option
@pass_app
def unmatched_command(app: Context, limit: int, fmt: str) -> None:
    """Bounces and complaints that matched no delivery and no reader, newest first. They
    are kept without the address they named (look the reference up at your provider).

    \b
    Example:
      digest bounces unmatched --format csv
    """
    with app.factory() as session:
        events = unmatched_events(session, limit)
    if not events and fmt == "table":
        out.print("No unmatched bounces or complaints.")
        return
    rows = [
        (f"{e.received_at:%Y-%m-%d %H:%M}", e.kind, e.status, e.reference, e.detail) for e in events
    ]
    print_rows(fmt, ("received", "kind", "status", "reference", "detail"), rows)


@click.command()
@edition_argument(legacy_option=True)
@pass_app
def deliverability(app: Context, key: str | None, edition_option: str | None) -> None:
    """Sent, bounced, complained and unsubscribed (in edition KEY, or in all), against
    Gmail's and Yahoo's bulk-sender limits, and the SPF, DKIM and DMARC records to publish.

    \b
    Example:
      digest deliverability 2026-W48
    """
    with app.factory() as session:
        result = deliverability_report(session, chosen_key(key, edition_option))
    for line in [*result.lines(), "", *dns_lines(app.settings)]:
        out.print(line)
