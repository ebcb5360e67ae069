"""What `digest subscribers` says: after an import, after confirmation emails, about a reader."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from digest.cli.base import out, shown_path, transport_for
from digest.config import Settings
from digest.errors import TransportUnavailable
from digest.notices.confirmation import OUTBOX_FOLDER, ConfirmationReport, send_confirmations
from subscribers import service
from subscribers.importing import ImportResult
from subscribers.models import Status
from subscribers.queries import SubscriberView

_TTL_DAYS = service.CONFIRM_TTL.days


def confirm_by_email(
    settings: Settings,
    factory: sessionmaker[Session],
    ids: list[int] | None,
    *,
    now: dt.datetime,
) -> ConfirmationReport:
    """Email the confirmation links owed (to ``ids``, or to every pending reader)."""
    try:
        with transport_for(settings) as transport:
            return send_confirmations(settings, factory, transport, now=now, subscriber_ids=ids)
    except TransportUnavailable as exc:
        raise TransportUnavailable(
            f"{exc}. The subscribers are saved; run `digest subscribers send-confirmations` "
            "when the mail server is back to send the confirmation emails still owed"
        ) from None


def confirmations_said(settings: Settings, report: ConfirmationReport) -> None:
    where = (
        f" into {shown_path(settings.outbox_dir / OUTBOX_FOLDER)}"
        if settings.transport == "file"
        else ""
    )
    if report.sent:
        out.print(
            f"Sent {report.sent} confirmation email{'s' if report.sent != 1 else ''} "
            f"via {settings.transport}{where}; each stays pending until its link is used "
            f"(valid {_TTL_DAYS} days)."
        )
    for address, reply in list(report.failed.items())[:20]:
        out.print(f"Not sent to {address}: {reply}")
    if report.failed:
        out.print(
            f"{len(report.failed)} confirmation emails were refused; "
            "fix the addresses or run `digest subscribers send-confirmations` later."
        )


def import_said(file: Path, result: ImportResult) -> None:
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
    read_as = f", {result.read_as}" if result.read_as else ""
    out.print(f"{file.name}{read_as}: {result.rows} rows: {'; '.join(parts)}.")
    for problem in result.problems:
        out.print(f"line {problem.line}: {problem.reason}")
    if result.invalid > len(result.problems):
        out.print(f"... and {result.invalid - len(result.problems)} more invalid rows")
    for notice in result.notices:
        out.print(f"line {notice.line}: {notice.reason}")
    if result.unknown_categories:
        listed = ", ".join(
            f"{label!r} ({n} row{'s' if n != 1 else ''})"
            for label, n in result.unknown_categories.most_common(10)
        )
        out.print(f"Unknown categories: {listed} (see `digest categories list`).")
    if result.ignored_columns:
        out.print(f"Ignored columns: {', '.join(result.ignored_columns)}.")


def when(value: dt.datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else "-"


def status_words(view: SubscriberView) -> str:
    if view.suppressed and view.status != Status.ACTIVE:
        return f"{view.status} (on the suppression list: {view.suppressed}; never mailed)"
    if view.status == Status.ACTIVE:
        return f"active since {when(view.active_since)} (confirmed {when(view.confirmed_at)})"
    if view.status == Status.PENDING:
        if view.confirmation:
            sent, expires = view.confirmation
            return (
                f"pending: confirmation email sent {when(sent)}, link valid until {when(expires)}"
            )
        return "pending: no confirmation email sent yet (digest subscribers send-confirmations)"
    return f"{view.status} since {when(view.unsubscribed_at)}"
