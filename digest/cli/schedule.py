"""``digest schedule`` (and ``python scheduler.py``): APScheduler wiring, in the foreground.

No business logic: the job calls :func:`digest.edition.run.run_edition`, like the CLI; a
second job runs ``digest maintenance`` (retention) every Sunday at 03:30. The jobs
live in the project's database (table ``scheduler_jobs``), so after downtime a missed run
happens once (``coalesce``), if it is at most ``misfire_grace_hours`` late.

With ``DIGEST_NOW`` set, the scheduler still fires on the real clock, but each run sends the
edition of a clock that started at ``DIGEST_NOW`` when the scheduler did, and the start log
says when the next run would be by that clock.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import click
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_SCHEDULER_STARTED,
    JobExecutionEvent,
)
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger

from digest.bounces.retention import Retention
from digest.cli.base import Context, pass_app, transport_for
from digest.cli.maintenance import run_maintenance
from digest.clock import VARIABLE, fixed_now, real_now, running_clock
from digest.config import Settings, load_settings
from digest.edition.run import EditionReport, run_edition
from digest.errors import DigestError
from digest.planning.when import Schedule
from digest.store.db import make_engine
from digest.store.schema import open_database

log = logging.getLogger("digest.scheduler")
JOB_ID = "digest-edition"
#: Retention (``digest maintenance``), weekly: Sunday 03:30 in the list's time zone.
MAINTENANCE_JOB_ID = "digest-maintenance"
MAINTENANCE_TIME = {"day_of_week": "sun", "hour": 3, "minute": 30}
JOBS_TABLE = "scheduler_jobs"

#: Set by SIGTERM/SIGINT: a running send stops after its current batch.
STOP = threading.Event()
#: How often the main thread looks at :data:`STOP` while the scheduler runs.
POLL_SECONDS = 0.1
_received: list[str] = []
#: The clock the scheduled runs take as now: the real one, or (set when the scheduler
#: starts) one that starts at ``DIGEST_NOW``.
_clock: Callable[[], dt.datetime] = real_now


def scheduled_send(config_path: str | None) -> EditionReport:
    """The scheduled job: read the settings afresh and run this period's edition."""
    settings = load_settings(Path(config_path) if config_path else None)
    with transport_for(settings) as transport:
        report = run_edition(settings, transport, now=_clock(), should_stop=STOP.is_set)
    if report.busy:
        log.info("edition %s is being sent by %s; nothing to do", report.key, report.busy)
    else:
        log.info(
            "edition %s: sent %d, deferred %d, failed %d, skipped %d%s",
            report.key,
            report.sent,
            report.deferred,
            report.failed,
            report.skipped,
            " (stopped early)" if report.stopped else "",
        )
    return report


def scheduled_maintenance(config_path: str | None) -> Retention:
    """The weekly job: delete what is past its keeping period (``digest maintenance``)."""
    settings = load_settings(Path(config_path) if config_path else None)
    result = run_maintenance(settings, open_database(settings), now=_clock())
    for line in result.lines():
        log.info("maintenance: %s", line)
    return result


def trigger_for(schedule: Schedule) -> CronTrigger:
    return CronTrigger(timezone=schedule.zone, **schedule.cron_fields)


def build_scheduler(
    settings: Settings,
    config_path: str | None,
    scheduler_class: type[BaseScheduler] = BackgroundScheduler,
) -> BaseScheduler:
    """A scheduler with the edition job in the database; an existing job keeps its next
    run time (so a run missed during downtime still happens) unless the schedule changed."""
    schedule = Schedule.from_settings(settings)
    trigger = trigger_for(schedule)
    scheduler = scheduler_class(
        timezone=schedule.zone,
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": settings.misfire_grace_hours * 3600,
        },
    )
    store = SQLAlchemyJobStore(engine=make_engine(settings.database_url), tablename=JOBS_TABLE)
    store.start(scheduler, "default")  # creates the table; the scheduler starts it again
    scheduler.add_jobstore(store, "default")
    existing = store.lookup_job(JOB_ID)
    if existing is None or str(existing.trigger) != str(trigger) or existing.args != (config_path,):
        scheduler.add_job(
            scheduled_send,
            trigger,
            args=(config_path,),
            id=JOB_ID,
            name="weekly digest edition",
            replace_existing=True,
        )
        log.info("scheduled %s (%s)", JOB_ID, trigger)
    weekly = CronTrigger(timezone=schedule.zone, **MAINTENANCE_TIME)
    kept = store.lookup_job(MAINTENANCE_JOB_ID)
    if kept is None or str(kept.trigger) != str(weekly) or kept.args != (config_path,):
        scheduler.add_job(
            scheduled_maintenance,
            weekly,
            args=(config_path,),
            id=MAINTENANCE_JOB_ID,
            name="weekly maintenance (retention)",
            replace_existing=True,
        )

    def after_run(event: JobExecutionEvent) -> None:
        if event.exception is not None:
            what = "maintenance" if event.job_id == MAINTENANCE_JOB_ID else "edition run"
            log.error("%s failed: %s", what, event.exception)
        job = scheduler.get_job(JOB_ID)
        if job is not None and job.next_run_time is not None:
            log.info("next edition run at %s", job.next_run_time.isoformat())

    scheduler.add_listener(after_run, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    return scheduler


def next_run_time(scheduler: BaseScheduler) -> Any:
    job = scheduler.get_job(JOB_ID)
    return None if job is None else getattr(job, "next_run_time", None)


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    """Only set flags: a signal handler may run in the middle of anything (even a log call),
    so the main thread does the logging and the shutdown."""
    _received.append(signal.Signals(signum).name)
    STOP.set()


def run_forever(config_path: str | None = None) -> None:
    """Run the scheduler until SIGTERM or SIGINT, which, at any moment after this is called,
    stops it cleanly: a running send finishes its current batch, then this returns."""
    STOP.clear()
    _received.clear()
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        log.info("digest scheduler starting")
        _run_until_stopped(config_path)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_until_stopped(config_path: str | None) -> None:
    global _clock
    settings = load_settings(Path(config_path) if config_path else None)
    _clock = running_clock()  # a bad DIGEST_NOW stops here, before anything runs
    scheduler = None if STOP.is_set() else build_scheduler(settings, config_path)
    if scheduler is not None and not STOP.is_set():
        schedule = Schedule.from_settings(settings)
        when = (
            f"every hour at :{schedule.minute:02d}, each reader at {settings.send_time} local"
            if schedule.local_delivery
            else f"{settings.send_day} {settings.send_time}"
        )
        log.info("digest scheduler started: %s (%s)", when, settings.timezone)
        if fixed_now() is not None:
            _log_shifted_clock(schedule)
        scheduler.add_listener(_log_next_at_start(scheduler), EVENT_SCHEDULER_STARTED)
        scheduler.start()
    while not STOP.is_set():
        time.sleep(POLL_SECONDS)
    why = _received[0] if _received else "a stop request"
    log.info("received %s: stopping (a running send finishes its current batch)", why)
    if scheduler is not None and scheduler.running:
        scheduler.shutdown(wait=True)
    log.info("digest scheduler stopped")


@click.command()
@pass_app
def schedule(app: Context) -> None:
    """Run the scheduler in the foreground: this period's edition at send_day and send_time.

    SIGTERM or Ctrl-C stops it cleanly (exit status 0) after the current batch.

    \b
    Example:
      digest schedule      # or, from a checkout: python scheduler.py
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run_forever(app.config_path)


def _log_shifted_clock(schedule: Schedule) -> None:
    """What ``DIGEST_NOW`` changes, said once at start."""
    now = _clock()
    upcoming = trigger_for(schedule).get_next_fire_time(None, now.astimezone(schedule.zone))
    log.info(
        "%s is set: runs take %s as now (the clock runs on from there); by that clock the "
        "next edition run is at %s, but the scheduler fires at the real times below",
        VARIABLE,
        now.isoformat(),
        upcoming.isoformat() if upcoming else "never",
    )


def _log_next_at_start(scheduler: BaseScheduler) -> Any:
    def log_next(_event: object) -> None:
        log.info("next edition run at %s", next_run_time(scheduler))

    return log_next


def main(argv: list[str] | None = None) -> int:
    """``python scheduler.py [--config FILE]``: the same as ``digest schedule``."""
    parser = argparse.ArgumentParser(description="Run the weekly digest on a schedule.")
    parser.add_argument("--config", help="config file (default: ./digest.toml or $DIGEST_CONFIG)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        run_forever(args.config)
    except DigestError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0
