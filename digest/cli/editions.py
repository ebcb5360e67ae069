"""``digest editions``: list, show and cancel editions."""

from __future__ import annotations

import click
from rich.table import Table

from digest.cli.base import _settings, out
from digest.edition.manage import (
    EditionInfo,
    cancel_edition,
    edition_info,
    list_deliveries,
    list_editions,
)
from digest.store.db import transaction
from digest.store.schema import open_database

STATUSES = ("queued", "sending", "deferred", "sent", "failed", "skipped")


@click.group()
def editions() -> None:
    """Editions: one per week, with the ledger of who got what."""


def _counts(info: EditionInfo) -> str:
    return ", ".join(f"{info.counts[s]} {s}" for s in STATUSES if info.counts[s]) or "no messages"


@editions.command("list")
@click.option("--limit", default=20, show_default=True, help="How many, newest first.")
def list_command(limit: int) -> None:
    """List editions, newest first, with their delivery counts.

    \b
    Example:
      digest editions list --limit 5
    """
    factory = open_database(_settings(click.get_current_context()))
    with factory() as session:
        rows = list_editions(session, limit)
    if not rows:
        out.print("No editions yet: `digest send` creates this week's.")
        return
    table = Table()
    for column in ("edition", "status", "cutoff (UTC)", "deliveries"):
        table.add_column(column)
    for info in rows:
        table.add_row(info.key, info.status, f"{info.cutoff:%Y-%m-%d %H:%M}", _counts(info))
    out.print(table)


@editions.command("show")
@click.argument("key")
def show_command(key: str) -> None:
    """Show one edition: times, deliveries by status and its variants.

    \b
    Example:
      digest editions show 2026-W48
    """
    factory = open_database(_settings(click.get_current_context()))
    with factory() as session:
        info = edition_info(session, key)
    out.print(f"Edition {info.key}: {info.status}")
    out.print(f"  created   {info.created_at:%Y-%m-%d %H:%M} UTC")
    out.print(f"  cutoff    {info.cutoff:%Y-%m-%d %H:%M} UTC (summaries published up to then)")
    if info.completed_at:
        out.print(f"  completed {info.completed_at:%Y-%m-%d %H:%M} UTC")
    out.print(f"  deliveries: {_counts(info)}")
    table = Table(title="variants")
    for column in ("#", "categories", "summaries", "recipients"):
        table.add_column(column)
    for v in info.variants:
        table.add_row(str(v.number), ", ".join(v.categories), str(v.summaries), str(v.recipients))
    if info.variants:
        out.print(table)


@editions.command("cancel")
@click.argument("key")
def cancel_command(key: str) -> None:
    """Cancel an edition before or during its send; a running sender stops after its batch.

    \b
    Example:
      digest editions cancel 2026-W48
    """
    factory = open_database(_settings(click.get_current_context()))
    with transaction(factory) as session:
        dropped = cancel_edition(session, key)
    out.print(
        f"Cancelled edition {key}: {dropped} queued messages will not be sent; "
        "a sender that is running stops after its current batch."
    )


@click.command()
@click.option("--edition", "key", metavar="KEY", help="Only this edition, such as 2026-W48.")
@click.option("--status", type=click.Choice(STATUSES), help="Only rows with this status.")
@click.option("--limit", default=50, show_default=True, help="How many rows, newest first.")
def deliveries(key: str | None, status: str | None, limit: int) -> None:
    """Show the ledger: who got which edition, and why a message failed.

    \b
    Example:
      digest deliveries --edition 2026-W48 --status failed
    """
    factory = open_database(_settings(click.get_current_context()))
    with factory() as session:
        rows = list_deliveries(session, key, status, limit)
    if not rows:
        out.print("No deliveries match.")
        return
    table = Table()
    for column in ("edition", "reader", "status", "attempts", "updated (UTC)", "server reply"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.edition,
            row.address,
            row.status,
            str(row.attempts),
            f"{row.updated_at:%Y-%m-%d %H:%M}",
            row.detail[:70],
        )
    out.print(table)
