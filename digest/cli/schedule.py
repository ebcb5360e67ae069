"""APScheduler wiring for ``python scheduler.py`` and ``digest schedule``.

No business logic: the job calls :func:`digest.edition.run.run_edition`, like the CLI. The job
lives in the project's database (table ``scheduler_jobs``), so after downtime a missed run
happens once (``coalesce``), if it is at most ``misfire_grace_hours`` late.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_SCHEDULER_STARTED,
    JobExecutionEvent,
)
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from digest.config import Settings, load_settings
from digest.edition.run import EditionReport, run_edition
from digest.edition.transport import make_transport
from digest.edition.when import Schedule
from digest.store.db import make_engine

log = logging.getLogger("digest.scheduler")
JOB_ID = "digest-edition"
JOBS_TABLE = "scheduler_jobs"

#: Set by SIGTERM/SIGINT: a running send stops after its current batch.
STOP = threading.Event()


def scheduled_send(config_path: str | None) -> EditionReport:
    """The scheduled job: read the settings afresh and run this period's edition."""
    settings = load_settings(Path(config_path) if config_path else None)
    transport = make_transport(settings)
    try:
        report = run_edition(settings, transport, should_stop=STOP.is_set)
    finally:
        transport.close()
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


def trigger_for(schedule: Schedule) -> CronTrigger:
    return CronTrigger(timezone=schedule.zone, **schedule.cron_fields)


def build_scheduler(
    settings: Settings,
    config_path: str | None,
    scheduler_class: type[BaseScheduler] = BlockingScheduler,
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

    def after_run(event: JobExecutionEvent) -> None:
        if event.exception is not None:
            log.error("edition run failed: %s", event.exception)
        job = scheduler.get_job(JOB_ID)
        if job is not None and job.next_run_time is not None:
            log.info("next edition run at %s", job.next_run_time.isoformat())

    scheduler.add_listener(after_run, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    return scheduler


def next_run_time(scheduler: BaseScheduler) -> Any:
    job = scheduler.get_job(JOB_ID)
    return None if job is None else getattr(job, "next_run_time", None)


def run_forever(config_path: str | None = None) -> None:
    """Start the blocking scheduler; SIGTERM or SIGINT stops it cleanly."""
    settings = load_settings(Path(config_path) if config_path else None)
    scheduler = build_scheduler(settings, config_path)

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info(
            "received %s: finishing the current batch, then stopping", signal.Signals(signum).name
        )
        STOP.set()
        scheduler.shutdown(wait=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    schedule = Schedule.from_settings(settings)
    when = (
        f"every hour at :{schedule.minute:02d}, each reader at {settings.send_time} local"
        if schedule.local_delivery
        else f"{settings.send_day} {settings.send_time}"
    )
    log.info("digest scheduler started: %s (%s)", when, settings.timezone)
    scheduler.add_listener(_log_next_at_start(scheduler), EVENT_SCHEDULER_STARTED)
    scheduler.start()
    log.info("digest scheduler stopped")


def _log_next_at_start(scheduler: BaseScheduler) -> Any:
    def log_next(_event: object) -> None:
        log.info("next edition run at %s", next_run_time(scheduler))

    return log_next
