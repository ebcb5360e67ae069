"""``digest editions`` (list, show and cancel editions) and ``digest deliveries`` (the ledger)."""

from __future__ import annotations

import click
from rich.table import Table

from digest.cli.base import (
    Context,
    chosen_key,
    edition_argument,
    format_option,
    out,
    pass_app,
    print_rows,
)
from digest.edition.manage import (
    EditionInfo,
    cancel_edition,
    edition_info,
    list_deliveries,
    list_editions,
)
from digest.planning.when import Schedule, current_key, next_key, send_moment
from digest.store.db import transaction

STATUSES = ("queued", "sending", "deferred", "sent", "failed", "skipped")
FINAL = ("complete", "cancelled")


@click.group()
def editions() -> None:
    """Editions: one per week (KEY such as 2026-W49), with the ledger of who got what.

    \b
    Example:
      digest editions list --limit 5 && digest editions show 2026-W49
    """


def _counts(info: EditionInfo) -> str:
    return ", ".join(f"{info.counts[s]} {s}" for s in STATUSES if info.counts[s]) or "no messages"


@editions.command("list")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many, newest first.",
)
@pass_app
def list_command(app: Context, limit: int) -> None:
    """List editions, newest first, with their delivery counts.

    \b
    Example:
      digest editions list --limit 5
    """
    with app.factory() as session:
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
@edition_argument()
@pass_app
def show_command(app: Context, key: str | None) -> None:
    """Show edition KEY (default: this week's): times, deliveries by status and its variants.

    \b
    Example:
      digest editions show 2026-W49
    """
    key = key or current_key(app.now, Schedule.from_settings(app.settings))
    with app.factory() as session:
        info = edition_info(session, key)
    out.print(f"Edition {info.key}: {info.status}")
    out.print(f"  created   {info.created_at:%Y-%m-%d %H:%M} UTC")
    out.print(f"  cutoff    {info.cutoff:%Y-%m-%d %H:%M} UTC (summaries published up to then)")
    if info.completed_at:
        out.print(f"  completed {info.completed_at:%Y-%m-%d %H:%M} UTC")
    out.print(f"  deliveries: {_counts(info)}")
    if info.notices_planned:
        out.print(
            f"  notices: {info.notices_sent} sent of {info.notices_planned} "
            "(corrections and retractions of summaries sent before)"
        )
    else:
        out.print("  notices: none (no correction or retraction was owed)")
    if info.late or info.waiting or info.unplanned:
        schedule = Schedule.from_settings(app.settings)
        following = next_key(info.key)
        when = send_moment(following, schedule).astimezone(app.settings.zone)
        out.print(
            f"  late readers (active since after the cutoff): {info.late} added to it, "
            f"{info.waiting} with nothing new in it (first digest: edition {following}, "
            f"{when:%a %Y-%m-%d %H:%M}), {info.unplanned} not planned yet "
            "(the next `digest send` adds them)"
        )
    table = Table(title="variants")
    for column in ("#", "categories", "summaries", "notices", "recipients"):
        table.add_column(column)
    for v in info.variants:
        table.add_row(
            str(v.number),
            ", ".join(v.categories),
            str(v.summaries),
            str(v.notices),
            str(v.recipients),
        )
    if info.variants:
        out.print(table)


@editions.command("cancel")
@edition_argument(required=True)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def cancel_command(app: Context, key: str, yes: bool) -> None:
    """Cancel edition KEY before or during its send; a running sender stops after its batch.

    Asks for confirmation unless --yes: the readers still queued will not get it.

    \b
    Example:
      digest editions cancel 2026-W49 --yes
    """
    with app.factory() as session:
        info = edition_info(session, key)
    if not yes and info.status not in FINAL:
        queued = info.counts["queued"] + info.counts["deferred"]
        click.confirm(
            f"Cancel edition {key} ({info.status}, {queued} messages not sent yet)?", abort=True
        )
    with transaction(app.factory) as session:
        dropped = cancel_edition(session, key)
    out.print(
        f"Cancelled edition {key}: {dropped} queued messages will not be sent; "
        "a sender that is running stops after its current batch."
    )


@click.command()
@edition_argument(legacy_option=True)
@click.option("--status", type=click.Choice(STATUSES), help="Only rows with this status.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="How many rows, newest first.",
)
@format_option
@pass_app
def deliveries(
    app: Context,
    key: str | None,
    edition_option: str | None,
    status: str | None,
    limit: int,
    fmt: str,
) -> None:
    """Show the ledger (of edition KEY, or of all): who got which edition, and why a
    message failed.

    \b
    Example:
      digest deliveries 2026-W49 --status failed
      digest deliveries 2026-W49 --format csv > ledger.csv
    """
    key = chosen_key(key, edition_option)
    with app.factory() as session:
        rows = list_deliveries(session, key, status, limit)
    if not rows and fmt == "table":
        out.print("No deliveries match.")
        return
    columns = ("edition", "reader", "status", "attempts", "updated (UTC)", "server reply")
    cells = [
        (
            row.edition,
            row.address,
            row.status,
            str(row.attempts),
            f"{row.updated_at:%Y-%m-%d %H:%M}",
            row.detail,
        )
        for row in rows
    ]
    print_rows(fmt, columns, cells)
