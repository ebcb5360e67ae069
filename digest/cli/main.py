"""The ``digest`` command. Each command parses options and calls one library function."""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy import func, select

from digest import __version__
from digest.cli.base import DigestGroup, _settings, err, out
from digest.cli.bounces import bounces, deliverability
from digest.cli.editions import deliveries, editions
from digest.cli.preview import check, preview, templates
from digest.cli.subscribers import subscribers
from digest.cli.summaries import summaries
from digest.cli.web import serve
from digest.config import CONFIG_FILENAME, STARTER_CONFIG, Settings
from digest.edition.run import EditionReport, not_due_reason, run_edition
from digest.edition.transport import make_transport
from digest.edition.when import Schedule, current_key
from digest.store import schema
from digest.store.db import Category, make_engine, session_factory, transaction, utcnow
from digest.store.models import summary_categories
from digest.store.schema import open_database
from subscribers.service import category_subscriber_counts


@click.group(cls=DigestGroup)
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    envvar="DIGEST_CONFIG",
    help="Config file (default: ./digest.toml).",
)
@click.version_option(__version__, prog_name="digest")
def cli(config: str | None) -> None:
    """Weekly email digests of new research summaries, one per subscriber.

    \b
    Example:
      digest demo              # try it: sample data, this week's edition into ./outbox
    """


@cli.command()
def init() -> None:
    """Create digest.toml (if there is none) and the database, or migrate it to the latest schema.

    \b
    Example:
      digest init && digest categories list
    """
    ctx = click.get_current_context()
    if not ctx.find_root().params.get("config") and not Path(CONFIG_FILENAME).exists():
        Path(CONFIG_FILENAME).write_text(STARTER_CONFIG, encoding="utf-8")
        out.print(f"Wrote a starter {CONFIG_FILENAME}: edit it before sending real email.")
    settings = _settings(ctx)
    engine = make_engine(settings.database_url)
    schema.upgrade(engine)
    out.print(
        f"Database ready at schema {schema.current_revision(engine)}: "
        f"{engine.url.render_as_string(hide_password=True)}"
    )


@cli.command()
def demo() -> None:
    """Try digest in this folder: sample data, then this week's edition into ./outbox.

    Running it again sends nothing new, and says so.

    \b
    Example:
      mkdir try-digest && cd try-digest && digest demo
    """
    from digest.sources.demo import load_demo

    ctx = click.get_current_context()
    if not Path(CONFIG_FILENAME).exists() and not ctx.find_root().params.get("config"):
        Path(CONFIG_FILENAME).write_text(STARTER_CONFIG, encoding="utf-8")
        out.print(f"Wrote {CONFIG_FILENAME} (sample settings, file outbox).")
    settings = _settings(ctx)
    engine = make_engine(settings.database_url)
    schema.upgrade(engine)
    now = utcnow()
    with transaction(session_factory(engine)) as session:
        loaded = load_demo(session, now=now)
    if loaded.summaries_added or loaded.subscribers_added:
        out.print(
            f"Loaded sample data: {loaded.summaries_added} summaries, "
            f"{loaded.subscribers_added} subscribers."
        )
    report = _run(settings, "file", dry_run=False, engine=engine, now=now)
    folder = settings.outbox_dir / report.key
    if report.sent:
        out.print(f"\nLook at {_shown(folder)}/")
        out.print("  *.eml          one message per reader (open with any mail program)")
        out.print("  variant-NN.html one file per distinct digest (open in a browser)")
    out.print(
        "Preview any reader: digest preview --categories pharmacology,neurology --out preview"
    )


@cli.command()
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
@click.option(
    "--edition",
    "key",
    metavar="KEY",
    help="Edition key such as 2026-W48 (default: the current week).",
)
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
def send(
    transport: str | None,
    dry_run: bool,
    due: bool,
    key: str | None,
    retry_failed: bool,
    workers: int,
    extra_worker: bool,
) -> None:
    """Send this week's edition; a second run resumes it and never sends twice.

    \b
    Example:
      digest send --dry-run && digest send
      */5 * * * *  cd /srv/digest && .venv/bin/digest send --due    # crontab
    """
    settings = _settings(click.get_current_context())
    if due and key is None:
        reason = not_due_reason(settings, now=utcnow())
        if reason:
            out.print(f"Nothing to do: {reason}.")
            return
    if extra_worker:
        from digest.edition.run import work_on_edition

        done = work_on_edition(
            replace(settings, transport=transport or settings.transport),
            key or current_key(utcnow(), Schedule.from_settings(settings)),
        )
        out.print(
            f"Worker on edition {done.key}: sent {done.sent}, failed {done.failed} "
            f"in {done.seconds:.1f} s."
        )
        return
    report = _run(
        settings,
        transport or settings.transport,
        dry_run=dry_run,
        key=key,
        workers=workers,
        retry_failed=retry_failed,
    )
    if report.failed and not report.sent:
        sys.exit(2)


@cli.command()
def schedule() -> None:
    """Run the scheduler in the foreground (the same as `python scheduler.py`).

    \b
    Example:
      digest schedule      # Ctrl-C or SIGTERM stops it after the current batch
    """
    import logging

    from digest.cli.schedule import run_forever

    ctx = click.get_current_context()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run_forever(ctx.find_root().params.get("config"))


def _run(
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
    transport = make_transport(settings, transport_name)
    try:
        with _progress() as progress:
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
    finally:
        transport.close()
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


def _shown(path: Path) -> str:
    """``path`` relative to the current folder when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


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
        return
    where = f" into {_shown(settings.outbox_dir / report.key)}" if transport == "file" else ""
    quiet = f"; {report.nothing_new} readers had nothing new" if report.nothing_new else ""
    out.print(
        f"Edition {report.key}: sent {report.sent} via {transport}{where} "
        f"in {report.seconds:.1f} s ({report.rate:.0f}/s){quiet}."
    )
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
    if report.resent_after_crash:
        out.print(
            f"{report.resent_after_crash} messages were in flight during an earlier "
            "crash and went out now with their original Message-ID (those the server had "
            "taken before the crash reached their readers twice)."
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


@cli.group()
def categories() -> None:
    """Categories readers subscribe to."""


@categories.command("list")
def categories_list() -> None:
    """Show each category's slug, name, summaries and active subscribers.

    \b
    Example:
      digest categories list
    """
    settings = _settings(click.get_current_context())
    factory = open_database(settings)
    with factory() as session:
        summary_counts: dict[int, int] = dict(
            session.execute(
                select(summary_categories.c.category_id, func.count()).group_by(
                    summary_categories.c.category_id
                )
            ).all()
        )
        subscriber_counts = category_subscriber_counts(session)
        rows = session.scalars(select(Category).order_by(Category.name)).all()
    table = Table()
    for column in ("slug", "name", "summaries", "subscribers"):
        table.add_column(
            column, justify="right" if column in ("summaries", "subscribers") else "left"
        )
    for c in rows:
        table.add_row(
            c.slug, c.name, str(summary_counts.get(c.id, 0)), str(subscriber_counts.get(c.id, 0))
        )
    out.print(table if rows else "No categories yet: import summaries first.")


def main() -> None:
    cli(prog_name="digest")


cli.add_command(editions)
cli.add_command(deliveries)
cli.add_command(summaries)
cli.add_command(subscribers)
cli.add_command(preview)
cli.add_command(check)
cli.add_command(templates)
cli.add_command(bounces)
cli.add_command(deliverability)
cli.add_command(serve)
