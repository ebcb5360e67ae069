"""``digest subscribers``: add, import, export, list, show, unsubscribe, erase, rotate-token.

Each command parses its options and calls the subscriber service (or the confirmation
sender); errors are :class:`~digest.errors.DigestError` and end as one ``Error:`` line.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings, load_settings
from digest.edition.audience import erase_subscriber, last_deliveries
from digest.edition.transport import make_transport
from digest.errors import DataError, SubscriberError, TransportUnavailable
from digest.notices.confirmation import OUTBOX_FOLDER, ConfirmationReport, send_confirmations
from digest.store.db import transaction, utcnow
from digest.store.schema import open_database
from subscribers import service
from subscribers.csvio import write_csv, write_json
from subscribers.importing import ImportResult, import_csv
from subscribers.models import Status, Subscriber
from subscribers.queries import SubscriberView, describe, iter_export, list_subscribers

STATUSES = click.Choice([s.value for s in Status])
_TTL_DAYS = service.CONFIRM_TTL.days


def _open() -> tuple[Settings, sessionmaker[Session]]:
    path = click.get_current_context().find_root().params.get("config")
    settings = load_settings(Path(path) if path else None)
    return settings, open_database(settings)


def _when(value: dt.datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else "-"


def _shown(path: Path) -> str:
    """``path`` relative to the current folder when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _find(session: Session, address: str) -> Subscriber:
    subscriber = service.find_by_email(session, address)
    if subscriber is None:
        raise SubscriberError(f"no subscriber with the address {address.strip()[:320]}")
    return subscriber


@click.group()
def subscribers() -> None:
    """People who get the digest: add, import, export, list, show, unsubscribe, erase.

    \b
    Example:
      digest subscribers add ada@example.org --category pharmacology --name "Ada Lovelace"
    """


def _send_confirmations(
    settings: Settings, factory: sessionmaker[Session], ids: list[int] | None
) -> ConfirmationReport:
    transport = make_transport(settings)
    try:
        return send_confirmations(settings, factory, transport, now=utcnow(), subscriber_ids=ids)
    except TransportUnavailable as exc:
        raise TransportUnavailable(
            f"{exc}. The subscribers are saved; run `digest subscribers send-confirmations` "
            "when the mail server is back to send the confirmation emails still owed"
        ) from None
    finally:
        transport.close()


def _confirmations_said(settings: Settings, report: ConfirmationReport) -> None:
    where = (
        f" into {_shown(settings.outbox_dir / OUTBOX_FOLDER)}"
        if settings.transport == "file"
        else ""
    )
    if report.sent:
        click.echo(
            f"Sent {report.sent} confirmation email{'s' if report.sent != 1 else ''} "
            f"via {settings.transport}{where}; each stays pending until its link is used "
            f"(valid {_TTL_DAYS} days)."
        )
    for address, reply in list(report.failed.items())[:20]:
        click.echo(f"Not sent to {address}: {reply}")
    if report.failed:
        click.echo(
            f"{len(report.failed)} confirmation emails were refused; "
            "fix the addresses or run `digest subscribers send-confirmations` later."
        )


@subscribers.command()
@click.argument("email")
@click.option(
    "--category",
    "-c",
    "categories",
    multiple=True,
    required=True,
    help="A category slug or name (repeat for more).",
)
@click.option("--name", help="Display name (any language).")
@click.option(
    "--confirmed",
    is_flag=True,
    help="They already agreed elsewhere: make them active, send no confirmation email.",
)
@click.option("--timezone", help="Their IANA time zone, such as Europe/Paris.")
@click.option("--frequency", type=click.Choice(["weekly", "monthly"]), help="Default: weekly.")
@click.option("--consent-version", help="Version of the consent text they agreed to.")
def add(
    email: str,
    categories: tuple[str, ...],
    name: str | None,
    confirmed: bool,
    timezone: str | None,
    frequency: str | None,
    consent_version: str | None,
) -> None:
    """Add a subscriber and email them a link to confirm (double opt-in).

    Without --confirmed they stay pending, and get no digest, until they use the link
    (valid 7 days). Adding a pending address again sends a new link; an address that
    unsubscribed, bounced or was erased can only be invited this way, never --confirmed.

    \b
    Example:
      digest subscribers add zoe@example.org -c pharmacology -c neurology --name "Zoë Müller"
    """
    settings, factory = _open()
    with transaction(factory) as session:
        subscriber = service.add_subscriber(
            session,
            email,
            categories,
            now=utcnow(),
            name=name,
            confirmed=confirmed,
            timezone=timezone,
            frequency=frequency,
            consent_version=consent_version,
        )
        address, status, subscriber_id = subscriber.email, subscriber.status, subscriber.id
        topics = ", ".join(c.name for c in subscriber.categories)
    click.echo(f"Added {address} ({status}) to {topics}.")
    if status == Status.PENDING:
        _confirmations_said(settings, _send_confirmations(settings, factory, [subscriber_id]))


@subscribers.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--confirmed",
    is_flag=True,
    help="Everyone in the file already agreed: make new people active, send no email.",
)
@click.option("--skip-invalid", is_flag=True, help="Import the good rows even if some are bad.")
@click.option("--dry-run", is_flag=True, help="Check the file and report; write and send nothing.")
@click.option("--consent-version", help="Version of the consent text they agreed to.")
def import_(
    file: str, confirmed: bool, skip_invalid: bool, dry_run: bool, consent_version: str | None
) -> None:
    """Import subscribers from a CSV file (UTF-8; delimiter , or ;).

    Columns: email (required), name, categories (slugs or names separated by ;),
    and optionally status, created_at, confirmed_at, timezone, frequency, consent_version.
    Known addresses are merged, never duplicated; addresses that unsubscribed, bounced or
    were erased are never re-added. Any bad row stops the whole import (each is listed
    with its line number) unless --skip-invalid. Without --confirmed, new people are
    pending and each is emailed a confirmation link once the import is written.

    \b
    Example:
      digest subscribers import people.csv --dry-run && digest subscribers import people.csv
    """
    settings, factory = _open()
    result = import_csv(
        factory,
        Path(file),
        now=utcnow(),
        confirmed=confirmed,
        skip_invalid=skip_invalid,
        dry_run=dry_run,
        consent_version=consent_version,
    )
    _import_said(Path(file), result)
    if dry_run:
        click.echo("Dry run: nothing was written or sent.")
        return
    if not result.written:
        raise DataError(
            f"{result.invalid} invalid row{'s' if result.invalid != 1 else ''}: nothing was "
            f"imported (fix {'it' if result.invalid == 1 else 'them'}, or use --skip-invalid "
            "to import the other rows)"
        )
    if result.pending:
        _confirmations_said(settings, _send_confirmations(settings, factory, None))


def _import_said(file: Path, result: ImportResult) -> None:
    created = sum(result.created.values())
    kinds = ", ".join(f"{n} {status}" for status, n in sorted(result.created.items()))
    parts = [f"{created} new" + (f" ({kinds})" if created else "")]
    for count, what in (
        (result.merged, "merged into known subscribers"),
        (result.unchanged, "already known, unchanged"),
        (result.duplicates, "repeated in the file, merged"),
        (result.kept_out, "not re-added"),
        (result.invalid, "invalid"),
    ):
        if count:
            parts.append(f"{count} {what}")
    click.echo(f"{file.name}: {result.rows} rows: {'; '.join(parts)}.")
    for problem in result.problems:
        click.echo(f"line {problem.line}: {problem.reason}")
    if result.invalid > len(result.problems):
        click.echo(f"... and {result.invalid - len(result.problems)} more invalid rows")
    for notice in result.notices:
        click.echo(f"line {notice.line}: {notice.reason}")
    if result.unknown_categories:
        listed = ", ".join(
            f"{label!r} ({n} row{'s' if n != 1 else ''})"
            for label, n in result.unknown_categories.most_common(10)
        )
        click.echo(f"Unknown categories: {listed} (see `digest categories list`).")
    if result.ignored_columns:
        click.echo(f"Ignored columns: {', '.join(result.ignored_columns)}.")


@contextmanager
def _output(out: Path | None, bom: bool) -> Iterator[TextIO]:
    if out is None:
        yield sys.stdout
        return
    try:
        stream = out.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="")
    except OSError as exc:
        raise DataError(f"cannot write {out}: {exc.strerror}") from None
    with stream:
        yield stream


@subscribers.command()
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="Write to this file (default: standard output).",
)
@click.option("--status", type=STATUSES, help="Only subscribers with this status.")
@click.option(
    "--email",
    "emails",
    multiple=True,
    help="Only this address (repeat for more): a subject access request.",
)
def export(fmt: str, out: str | None, status: str | None, emails: tuple[str, ...]) -> None:
    """Write subscribers with their categories and consent records (never their tokens).

    The CSV reads back with `digest subscribers import` (files written with --out start
    with a byte-order mark so spreadsheets see UTF-8); the JSON has every consent record.

    \b
    Example:
      digest subscribers export --out subscribers.csv
    """
    _settings, factory = _open()
    write: Callable[..., int] = write_json if fmt == "json" else write_csv
    target = Path(out) if out else None
    with factory() as session, _output(target, bom=fmt == "csv") as stream:
        count = write(iter_export(session, status=status, emails=emails), stream)
    if out is not None:
        click.echo(f"Wrote {count} subscribers to {out}.", err=True)


@subscribers.command("list")
@click.option("--status", type=STATUSES, help="Only this status.")
@click.option("--category", help="Only subscribers of this category (slug or name).")
@click.option("--search", help="Part of the address or name, any letter case.")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
def list_(status: str | None, category: str | None, search: str | None, limit: int) -> None:
    """List subscribers, oldest first.

    \b
    Example:
      digest subscribers list --status pending --search example.org
    """
    _settings, factory = _open()
    with factory() as session:
        rows, total = list_subscribers(
            session, status=status, category=category, search=search, limit=limit
        )
    if not rows:
        click.echo("No subscribers match.")
        return
    table = Table()
    for column in ("email", "name", "status", "categories", "added"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            Text(row.email),
            Text(row.name or ""),
            Text(row.status),
            Text(", ".join(row.categories)),
            Text(f"{row.created_at:%Y-%m-%d}"),
        )
    Console(highlight=False, soft_wrap=True).print(table)
    shown = f"Showing {len(rows)} of {total}" + (" (use --limit for more)" if total > limit else "")
    click.echo(shown + ".")


def _status_words(view: SubscriberView) -> str:
    if view.suppressed and view.status != Status.ACTIVE:
        return f"{view.status} (on the suppression list: {view.suppressed}; never mailed)"
    if view.status == Status.ACTIVE:
        return f"active since {_when(view.active_since)} (confirmed {_when(view.confirmed_at)})"
    if view.status == Status.PENDING:
        if view.confirmation:
            sent, expires = view.confirmation
            return (
                f"pending: confirmation email sent {_when(sent)}, link valid until {_when(expires)}"
            )
        return "pending: no confirmation email sent yet (digest subscribers send-confirmations)"
    return f"{view.status} since {_when(view.unsubscribed_at)}"


@subscribers.command()
@click.argument("email")
def show(email: str) -> None:
    """Everything stored about one subscriber (never their tokens) and their last deliveries.

    \b
    Example:
      digest subscribers show ada@example.org
    """
    settings, factory = _open()
    with factory() as session:
        view = describe(session, _find(session, email))
        deliveries = last_deliveries(session, view.id)
    click.echo(f"{view.name} <{view.email}>" if view.name else view.email)
    click.echo(f"  status:      {_status_words(view)}")
    click.echo(f"  categories:  {', '.join(view.categories) or '-'}")
    click.echo(f"  frequency:   {view.frequency}")
    click.echo(f"  time zone:   {view.timezone or f'the list’s ({settings.timezone})'}")
    if view.paused_until:
        click.echo(f"  paused until {_when(view.paused_until)}")
    click.echo(f"  added:       {_when(view.created_at)}")
    click.echo("  consent:")
    for c in view.consents:
        confirmed = (
            f"confirmed {_when(c.confirmed_at)} by {c.confirmed_by}"
            if c.confirmed_at
            else "not confirmed"
        )
        click.echo(
            f"    {_when(c.created_at)}  {c.source}  {', '.join(c.categories) or '-'}  "
            f"text {c.text_version}  {confirmed}"
        )
    click.echo("  last deliveries:" if deliveries else "  last deliveries: none")
    for d in deliveries:
        detail = f"  {d.detail}" if d.detail else ""
        click.echo(f"    {d.edition}  {d.status}  {_when(d.at)}{detail}")


@subscribers.command()
@click.argument("email")
@click.option("--category", help="Leave only this category (the last one unsubscribes).")
def unsubscribe(email: str, category: str | None) -> None:
    """Unsubscribe someone from everything, or from one category.

    \b
    Example:
      digest subscribers unsubscribe ada@example.org --category neurology
    """
    _settings, factory = _open()
    with transaction(factory) as session:
        subscriber = _find(session, email)
        if category:
            changed = service.unsubscribe_category(session, subscriber, category, now=utcnow())
        else:
            changed = service.unsubscribe(session, subscriber, now=utcnow())
        address, status = subscriber.email, subscriber.status
        left = ", ".join(c.name for c in subscriber.categories)
    if not changed:
        click.echo(f"Nothing to do: {address} is {status}" + (f" ({left})." if category else "."))
    elif status == Status.UNSUBSCRIBED:
        click.echo(f"Unsubscribed {address}: no more digests.")
    else:
        click.echo(f"{address} left {category}; still subscribed to {left}.")


@subscribers.command()
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def erase(email: str, yes: bool) -> None:
    """Delete someone's personal data (right to erasure).

    Their address, name, categories, consent records and tokens are deleted; delivery
    counts stay true (the ledger rows lose the link to them), and a salted hash of the
    address stays on the suppression list so it is never mailed again by accident.

    \b
    Example:
      digest subscribers erase ada@example.org --yes
    """
    _settings, factory = _open()
    with factory() as session:
        address = _find(session, email).email
    if not yes:
        click.confirm(f"Erase {address} and all their data? This cannot be undone", abort=True)
    with transaction(factory) as session:
        kept = erase_subscriber(session, _find(session, address), now=utcnow())
    click.echo(
        f"Erased {address}. {kept} delivery records kept without personal data; "
        "the address is on the suppression list (as a salted hash)."
    )


@subscribers.command("rotate-token")
@click.argument("email")
def rotate_token(email: str) -> None:
    """Give someone a new unsubscribe/preferences link; the links in emails they already
    got stop working (use it when a link was forwarded or leaked).

    \b
    Example:
      digest subscribers rotate-token ada@example.org
    """
    _settings, factory = _open()
    with transaction(factory) as session:
        subscriber = _find(session, email)
        service.rotate_token(session, subscriber)
        address = subscriber.email
    click.echo(f"New link issued for {address}; links in earlier emails no longer work.")


@subscribers.command("send-confirmations")
def send_confirmations_() -> None:
    """Email a confirmation link to every pending subscriber who was never sent one
    (after an import whose sending was interrupted, for example).

    \b
    Example:
      digest subscribers send-confirmations
    """
    settings, factory = _open()
    report = _send_confirmations(settings, factory, None)
    if not report.sent and not report.failed:
        click.echo("No pending subscriber is waiting for a confirmation email.")
    _confirmations_said(settings, report)
