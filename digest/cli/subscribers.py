"""``digest subscribers``: add, import, export, list, show, unsubscribe, erase, rotate-token.

Each command parses its options and calls the subscriber service (or the confirmation
sender); errors are :class:`~digest.errors.DigestError` and end as one ``Error:`` line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import click
from sqlalchemy.orm import Session

from digest.cli.base import Context, err, format_option, out, pass_app, print_rows
from digest.cli.subscriber_reports import (
    confirm_by_email,
    confirmations_said,
    import_said,
    status_words,
    when,
)
from digest.edition.audience import erase_subscriber, last_deliveries
from digest.errors import DataError, SubscriberError
from digest.mail.transports.file import forget as forget_in_outbox
from digest.store.db import transaction
from subscribers import service
from subscribers.csvio import write_csv, write_json
from subscribers.importing import import_csv
from subscribers.models import Status, Subscriber
from subscribers.queries import describe, iter_export, list_subscribers

STATUSES = click.Choice([s.value for s in Status])


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
@pass_app
def add(
    app: Context,
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
    settings, factory = app.settings, app.factory
    with transaction(factory) as session:
        subscriber = service.add_subscriber(
            session,
            email,
            categories,
            now=app.now,
            name=name,
            confirmed=confirmed,
            timezone=timezone,
            frequency=frequency,
            consent_version=consent_version,
        )
        address, status, subscriber_id = subscriber.email, subscriber.status, subscriber.id
        topics = ", ".join(c.name for c in subscriber.categories)
    out.print(f"Added {address} ({status}) to {topics}.")
    if status == Status.PENDING:
        confirmations_said(
            settings, confirm_by_email(settings, factory, [subscriber_id], now=app.now)
        )


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
@pass_app
def import_(
    app: Context,
    file: str,
    confirmed: bool,
    skip_invalid: bool,
    dry_run: bool,
    consent_version: str | None,
) -> None:
    """Import subscribers from a CSV file (UTF-8, UTF-16 or Windows-1252; delimiter , ; or tab).

    Columns: email (required), name, categories (slugs or names separated by ;),
    and optionally status, created_at, confirmed_at, timezone, frequency, consent_version.
    Known addresses are merged, never duplicated; addresses that unsubscribed, bounced or
    were erased are never re-added. Any bad row stops the whole import (each is listed
    with its line number) unless --skip-invalid; --dry-run then exits with status 1 too.
    Without --confirmed, new people are pending and each is emailed a confirmation link
    once the import is written.

    \b
    Example:
      digest subscribers import people.csv --dry-run && digest subscribers import people.csv
    """
    settings, factory = app.settings, app.factory
    result = import_csv(
        factory,
        Path(file),
        now=app.now,
        confirmed=confirmed,
        skip_invalid=skip_invalid,
        dry_run=dry_run,
        consent_version=consent_version,
    )
    import_said(Path(file), result)
    if dry_run:
        out.print("Dry run: nothing was written or sent.")
    if result.invalid and not skip_invalid:
        raise DataError(
            f"{result.invalid} invalid row{'s' if result.invalid != 1 else ''}: nothing "
            f"{'would be' if dry_run else 'was'} imported (fix "
            f"{'it' if result.invalid == 1 else 'them'}, or use --skip-invalid "
            "to import the other rows)"
        )
    if dry_run:
        return
    if result.pending:
        confirmations_said(settings, confirm_by_email(settings, factory, None, now=app.now))


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
@pass_app
def export(
    app: Context, fmt: str, out: str | None, status: str | None, emails: tuple[str, ...]
) -> None:
    """Write subscribers with their categories and consent records (never their tokens).

    The CSV reads back with `digest subscribers import` (files written with --out start
    with a byte-order mark so spreadsheets see UTF-8); the JSON has every consent record.

    \b
    Example:
      digest subscribers export --out subscribers.csv
    """
    factory = app.factory
    write: Callable[..., int] = write_json if fmt == "json" else write_csv
    target = Path(out) if out else None
    with factory() as session, _output(target, bom=fmt == "csv") as stream:
        count = write(iter_export(session, status=status, emails=emails), stream)
    if out is not None:
        err.print(f"Wrote {count} subscribers to {out}.")


@subscribers.command("list")
@click.option("--status", type=STATUSES, help="Only this status.")
@click.option("--category", help="Only subscribers of this category (slug or name).")
@click.option("--search", help="Part of the address or name, any letter case.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=100, show_default=True, help="At most N."
)
@format_option
@pass_app
def list_(
    app: Context,
    status: str | None,
    category: str | None,
    search: str | None,
    limit: int,
    fmt: str,
) -> None:
    """List subscribers, oldest first.

    \b
    Example:
      digest subscribers list --status pending --search example.org
      digest subscribers list --format csv --limit 100000 > subscribers.csv
    """
    with app.factory() as session:
        rows, total = list_subscribers(
            session, status=status, category=category, search=search, limit=limit
        )
    if not rows and fmt == "table":
        out.print("No subscribers match.")
        return
    columns = ("email", "name", "status", "categories", "added")
    cells = [
        (r.email, r.name or "", r.status, ", ".join(r.categories), f"{r.created_at:%Y-%m-%d}")
        for r in rows
    ]
    print_rows(fmt, columns, cells)
    if fmt == "table":
        more = " (use --limit for more)" if total > limit else ""
        out.print(f"Showing {len(rows)} of {total}{more}.")


@subscribers.command()
@click.argument("email")
@pass_app
def show(app: Context, email: str) -> None:
    """Everything stored about one subscriber (never their tokens) and their last deliveries.

    \b
    Example:
      digest subscribers show ada@example.org
    """
    settings, factory = app.settings, app.factory
    with factory() as session:
        view = describe(session, _find(session, email))
        deliveries = last_deliveries(session, view.id)
    out.print(f"{view.name} <{view.email}>" if view.name else view.email)
    out.print(f"  status:      {status_words(view)}")
    out.print(f"  categories:  {', '.join(view.categories) or '-'}")
    out.print(f"  frequency:   {view.frequency}")
    out.print(f"  time zone:   {view.timezone or f'the list’s ({settings.timezone})'}")
    if view.paused_until:
        out.print(f"  paused until {when(view.paused_until)}")
    out.print(f"  added:       {when(view.created_at)}")
    out.print("  consent:")
    for c in view.consents:
        confirmed = (
            f"confirmed {when(c.confirmed_at)} by {c.confirmed_by}"
            if c.confirmed_at
            else "not confirmed"
        )
        out.print(
            f"    {when(c.created_at)}  {c.source}  {', '.join(c.categories) or '-'}  "
            f"text {c.text_version}  {confirmed}"
        )
    out.print("  last deliveries:" if deliveries else "  last deliveries: none")
    for d in deliveries:
        detail = f"  {d.detail}" if d.detail else ""
        out.print(f"    {d.edition}  {d.status}  {when(d.at)}{detail}")


@subscribers.command()
@click.argument("email")
@click.option("--category", help="Leave only this category (the last one unsubscribes).")
@pass_app
def unsubscribe(app: Context, email: str, category: str | None) -> None:
    """Unsubscribe someone from everything, or from one category.

    \b
    Example:
      digest subscribers unsubscribe ada@example.org --category neurology
    """
    factory = app.factory
    with transaction(factory) as session:
        subscriber = _find(session, email)
        if category:
            changed = service.unsubscribe_category(session, subscriber, category, now=app.now)
        else:
            changed = service.unsubscribe(session, subscriber, now=app.now)
        address, status = subscriber.email, subscriber.status
        left = ", ".join(c.name for c in subscriber.categories)
    if not changed:
        out.print(f"Nothing to do: {address} is {status}" + (f" ({left})." if category else "."))
    elif status == Status.UNSUBSCRIBED:
        out.print(f"Unsubscribed {address}: no more digests.")
    else:
        out.print(f"{address} left {category}; still subscribed to {left}.")


@subscribers.command()
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def erase(app: Context, email: str, yes: bool) -> None:
    """Delete someone's personal data (right to erasure).

    Their address, name, categories, consent records and tokens are deleted; delivery
    counts stay true (the ledger rows lose the link to them), and a salted hash of the
    address stays on the suppression list so it is never mailed again by accident.

    \b
    Example:
      digest subscribers erase ada@example.org --yes
    """
    factory = app.factory
    with factory() as session:
        address = _find(session, email).email
    if not yes:
        click.confirm(f"Erase {address} and all their data? This cannot be undone", abort=True)
    with transaction(factory) as session:
        token = (subscriber := _find(session, address)).token  # for the outbox, below
        kept = erase_subscriber(session, subscriber, now=app.now)
    files = forget_in_outbox(app.settings.outbox_dir, address, token)
    outbox = f" {files} file(s) about them deleted from the outbox." if files else ""
    out.print(
        f"Erased {address}. {kept} delivery records kept without personal data; "
        f"the address is on the suppression list (as a salted hash).{outbox}"
    )


@subscribers.command("rotate-token")
@click.argument("email")
@pass_app
def rotate_token(app: Context, email: str) -> None:
    """Give someone a new unsubscribe/preferences link; the links in emails they already
    got stop working (use it when a link was forwarded or leaked).

    \b
    Example:
      digest subscribers rotate-token ada@example.org
    """
    factory = app.factory
    with transaction(factory) as session:
        subscriber = _find(session, email)
        service.rotate_token(session, subscriber)
        address = subscriber.email
    out.print(f"New link issued for {address}; links in earlier emails no longer work.")


@subscribers.command("send-confirmations")
@pass_app
def send_confirmations_(app: Context) -> None:
    """Email a confirmation link to every pending subscriber who was never sent one
    (after an import whose sending was interrupted, for example).

    \b
    Example:
      digest subscribers send-confirmations
    """
    settings, factory = app.settings, app.factory
    report = confirm_by_email(settings, factory, None, now=app.now)
    if not report.sent and not report.failed:
        out.print("No pending subscriber is waiting for a confirmation email.")
    confirmations_said(settings, report)
