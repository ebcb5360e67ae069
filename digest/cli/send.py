"""``digest send``: run this period's edition, and the report people and cron logs read."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from digest.cli.base import (
    Context,
    chosen_key,
    edition_argument,
    err,
    out,
    pass_app,
    shown_path,
    transport_for,
)
from digest.config import Settings
from digest.edition.run import EditionReport, not_due_reason, run_edition
from digest.errors import DigestError
from digest.planning.when import Schedule, current_key


@click.command()
@click.option(
    "--transport",
    type=click.Choice(["smtp", "file", "console"]),
    help="Override the configured transport.",
)
@click.option("--dry-run", is_flag=True, help="Say what would be sent, per variant; send nothing.")
@click.option(
    "--due",
    is_flag=True,
    help="Only if this period's send time has come and its edition is not complete "
    "(for cron: safe to run every five minutes).",
)
@edition_argument(legacy_option=True)
@click.option(
    "--retry-failed",
    is_flag=True,
    help="Queue again the messages that failed after temporary failures (never 5xx ones).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Sending processes (PostgreSQL); they claim disjoint batches.",
)
@click.option(
    "--worker",
    "extra_worker",
    is_flag=True,
    help="Join an edition another process is sending (e.g. from another machine).",
)
@pass_app
def send(
    app: Context,
    transport: str | None,
    dry_run: bool,
    due: bool,
    key: str | None,
    edition_option: str | None,
    retry_failed: bool,
    workers: int,
    extra_worker: bool,
) -> None:
    """Send this week's edition (or edition KEY, such as 2026-W49); a second run resumes it
    and never sends twice.

    \b
    Example:
      digest send --dry-run && digest send
      */5 * * * *  cd /srv/digest && digest send --due    # crontab
    """
    settings = app.settings
    key = chosen_key(key, edition_option)
    if due and key is None:
        reason = not_due_reason(settings, now=app.now)
        if reason:
            out.print(f"Nothing to do: {reason}.")
            return
    if extra_worker:
        from digest.edition.run import work_on_edition

        done = work_on_edition(
            replace(settings, transport=transport or settings.transport),
            key or current_key(app.now, Schedule.from_settings(settings)),
            now=app.now,
        )
        out.print(
            f"Worker on edition {done.key}: sent {done.sent}, failed {done.failed} "
            f"in {done.seconds:.1f} s."
        )
        return
    report = run_and_report(
        settings,
        transport or settings.transport,
        dry_run=dry_run,
        key=key,
        now=app.now,
        workers=workers,
        retry_failed=retry_failed,
    )
    if report.failed and not report.sent:
        raise DigestError(f"every message of edition {report.key} failed: nothing was sent")
    if report.worker_errors:
        raise DigestError(
            f"{report.worker_errors} worker process(es) did not end cleanly: run "
            "`digest send` again to send what they left"
        )


def run_and_report(
    settings: Settings,
    transport_name: str,
    *,
    dry_run: bool,
    key: str | None = None,
    engine: Any = None,
    now: dt.datetime | None = None,
    workers: int = 1,
    retry_failed: bool = False,
) -> EditionReport:
    """Run the edition with a progress display, then print its report."""
    with transport_for(settings, transport_name) as transport, _progress() as progress:
        report = run_edition(
            settings,
            transport,
            dry_run=dry_run,
            key=key,
            engine=engine,
            now=now,
            progress=progress,
            workers=workers,
            retry_failed=retry_failed,
        )
    _print_report(report, transport_name, settings)
    return report


@contextmanager
def _progress() -> Iterator[Callable[[int, int, int], None]]:
    """A progress bar (rate, ETA, sent, failed) on a terminal; a log line every 10 s or
    10 % otherwise (cron, systemd)."""
    started = time.monotonic()

    def figures(done: int, total: int, failed: int) -> str:
        elapsed = max(time.monotonic() - started, 1e-6)
        rate = done / elapsed
        left = f", about {(total - done) / rate:.0f} s left" if rate and done < total else ""
        return f"{done}/{total} handled, {failed} failed, {rate:.0f} msg/s{left}"

    if err.is_terminal:
        with Progress(
            TextColumn("sending"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[figures]}"),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task("send", total=None, figures="")

            def draw(done: int, total: int, failed: int) -> None:
                rate = done / max(time.monotonic() - started, 1e-6)
                bar.update(
                    task, completed=done, total=total, figures=f"{failed} failed {rate:.0f}/s"
                )

            yield draw
        return
    last = [started, 0]

    def log(done: int, total: int, failed: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= 10 or (done - last[1]) * 10 >= total:
            last[0], last[1] = now, done
            err.print(f"sending: {figures(done, total, failed)}")

    yield log


def _print_report(report: EditionReport, transport: str, settings: Settings) -> None:
    verb = "would send" if report.dry_run else "sent"
    if report.variants:
        table = Table(title=f"Edition {report.key} (cutoff {report.cutoff:%Y-%m-%d %H:%M} UTC)")
        table.add_column("variant", justify="right")
        table.add_column("subject")
        table.add_column("summaries", justify="right")
        table.add_column(f"{'would send' if report.dry_run else 'to send'}", justify="right")
        for v in report.variants:
            table.add_row(str(v.number), v.subject, str(v.summaries), str(v.recipients))
        out.print(table)
    if report.dry_run:
        total = sum(v.recipients for v in report.variants)
        out.print(
            f"Dry run: {verb} {total} messages in {len(report.variants)} variants; "
            f"{report.nothing_new} readers have nothing new. Nothing was sent."
        )
        return
    if report.busy:
        out.print(f"Edition {report.key} is being sent by {report.busy}; nothing to do here.")
        return
    if not report.variants:
        already = f"; {report.previously_sent} sent earlier" if report.previously_sent else ""
        out.print(f"Nothing new to send for edition {report.key}{already}.")
        _print_late(report, settings)
        return
    where = f" into {shown_path(settings.outbox_dir / report.key)}" if transport == "file" else ""
    quiet = f"; {report.nothing_new} readers had nothing new" if report.nothing_new else ""
    out.print(
        f"Edition {report.key}: sent {report.sent} via {transport}{where} "
        f"in {report.seconds:.1f} s ({report.rate:.0f}/s){quiet}."
    )
    _print_late(report, settings)
    if report.sent_by_workers:
        out.print(f"{report.sent_by_workers} of them by the worker processes.")
    if report.worker_errors:
        out.print(
            f"{report.worker_errors} worker processes failed; run `digest send` again to "
            "finish what they held."
        )
    if report.held_by_workers:
        out.print(
            f"{report.held_by_workers} messages were held by worker processes still sending "
            "when this run started; they were left to them."
        )
    if report.requeued:
        out.print(f"Queued again {report.requeued} messages that had failed temporarily.")
    if report.recorded_from_journal:
        out.print(
            f"{report.recorded_from_journal} messages in flight when an earlier run stopped "
            "had their reply in its journal: recorded, not sent again."
        )
    if report.resent_after_crash:
        out.print(
            f"{report.resent_after_crash} of the messages sent were re-sent after an earlier "
            "run stopped with them on the wire (each with its original Message-ID)."
        )
    if report.possibly_duplicated:
        out.print(
            f"{report.possibly_duplicated} messages may have reached their readers twice "
            "(on the wire without a known reply when an earlier run stopped, or no reply "
            "came after their end of data; the latter are deferred, not sent again now)."
        )
    if report.skipped:
        out.print(f"Skipped {report.skipped} (unsubscribed or erased since planning).")
    if report.deferred:
        out.print(f"{report.deferred} deferred by the server; run `digest send` again later.")
    if report.stopped:
        out.print("Stopped before the end (signal or cancel); run `digest send` again to resume.")
    if report.failed:
        reasons = ", ".join(f"{n} x {why}" for why, n in report.failures.most_common(3))
        out.print(f"{report.failed} failed for good: {reasons}")


def _print_late(report: EditionReport, settings: Settings) -> None:
    """Readers who became active after the edition's cutoff: added now, or waiting."""
    if report.late:
        out.print(
            f"{_readers(report.late)} who became active after this edition's cutoff "
            f"{'were' if report.late != 1 else 'was'} added to it."
        )
    if report.topped_up:
        out.print(
            f"{_readers(report.topped_up)} who added topics after this edition reached them "
            "got the new topics' summaries (nothing sent twice)."
        )
    if report.waiting and report.next_key and report.next_send:
        when = report.next_send.astimezone(settings.zone)
        out.print(
            f"{_readers(report.waiting)} who became active after the cutoff "
            f"{'have' if report.waiting != 1 else 'has'} nothing new in it yet: their first "
            f"digest is edition {report.next_key} on {when:%a %Y-%m-%d %H:%M} "
            f"({settings.timezone})."
        )


def _readers(n: int) -> str:
    return f"{n} reader{'s' if n != 1 else ''}"
