"""Scheduling: daylight saving, local delivery, missed runs, concurrent senders,
frequency changes and cancelling, all with frozen time or real APScheduler runs."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import itertools
import threading
import time
from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.events import EVENT_JOB_EXECUTED
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from digest.cli.schedule import JOB_ID, JOBS_TABLE, build_scheduler, scheduled_send, trigger_for
from digest.config import STARTER_CONFIG, WEEKDAYS, Settings, load_settings
from digest.delivery.locks import SendLock
from digest.edition.manage import cancel_edition
from digest.edition.run import run_edition
from digest.mail.transports import MemoryTransport
from digest.planning.due import not_due_reason
from digest.planning.when import Schedule, key_for, send_moment
from digest.store import schema
from digest.store.db import make_engine, session_factory, transaction
from digest.store.models import Delivery, Edition
from subscribers.models import Subscriber
from tests.conftest import NOW, SmtpServer, add_categories, add_reader, add_summary

DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)


def weeks(year: int, first: int, last: int) -> list[str]:
    return [f"{year}-W{w:02d}" for w in range(first, last + 1)]


@pytest.mark.parametrize(
    ("zone", "keys"),
    [
        ("Europe/Berlin", weeks(2026, 11, 15) + weeks(2026, 41, 46)),  # Mar 29, Oct 25
        ("America/New_York", weeks(2026, 8, 12) + weeks(2026, 43, 47)),  # Mar 8, Nov 1
        ("Australia/Sydney", weeks(2026, 12, 16) + weeks(2026, 38, 42)),  # Apr 5, Oct 4
    ],
)
def test_each_week_has_one_send_at_the_same_local_hour_across_dst(zone: str, keys) -> None:
    schedule = Schedule(weekday=0, hour=8, minute=0, zone=ZoneInfo(zone))
    moments = [send_moment(key, schedule) for key in keys]
    for key, moment in zip(keys, moments, strict=True):
        local = moment.astimezone(schedule.zone)
        assert (local.weekday(), local.hour, local.minute) == (0, 8, 0)
        assert key_for(moment, schedule.zone) == key  # lands in its own week
    gaps = {b - a for a, b in itertools.pairwise(moments) if b - a < 14 * DAY}
    assert gaps <= {7 * DAY - HOUR, 7 * DAY, 7 * DAY + HOUR}


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
def test_cron_trigger_fires_every_monday_at_8_local_across_dst(zone: str) -> None:
    trigger = trigger_for(Schedule(0, 8, 0, ZoneInfo(zone)))
    fire = dt.datetime(2026, 10, 1, tzinfo=ZoneInfo(zone))
    fired = []
    for _ in range(8):  # October to November: both zones leave summer time
        fire = trigger.get_next_fire_time(None, fire + dt.timedelta(seconds=1))
        fired.append(fire)
    for previous, current in itertools.pairwise(fired):
        assert (current.date() - previous.date()).days == 7
    assert all((f.weekday(), f.hour, f.minute) == (0, 8, 0) for f in fired)


@pytest.fixture
def readers(factory: sessionmaker[Session]) -> None:
    add_categories(factory, "Pharmacology")
    add_summary(factory, "Riluzole after acute injury", ["pharmacology"], NOW - 2 * DAY)
    for address, zone in [
        ("nz@example.org", "Pacific/Auckland"),
        ("berlin@example.org", "Europe/Berlin"),
        ("ny@example.org", "America/New_York"),
        ("list@example.org", None),
    ]:
        add_reader(factory, address, ["pharmacology"], joined=NOW - 3 * DAY)
        set_reader(factory, address, timezone=zone)


def set_reader(factory: sessionmaker[Session], address: str, **values: object) -> None:
    with transaction(factory) as session:
        session.execute(update(Subscriber).where(Subscriber.email_key == address).values(**values))


def hourly(settings: Settings, engine: Engine, start: dt.datetime, hours: int):
    """Run the edition every hour like the scheduler does; yield (now, recipients, report)."""
    for hour in range(hours):
        now = start + hour * HOUR
        memory = MemoryTransport()
        report = run_edition(settings, memory, now=now, engine=engine)
        yield now, [envelope.recipient for envelope, _ in memory.outbox], report


@pytest.mark.usefixtures("readers")
def test_local_delivery_reaches_each_reader_at_their_own_hour(
    db_settings: Settings, engine: Engine
) -> None:
    settings = replace(db_settings, local_delivery=True, send_time="08:00")
    got: dict[str, list[dt.datetime]] = {}
    complete_at = None
    for now, recipients, report in hourly(settings, engine, NOW - 20 * HOUR, 40):
        assert report.key == "2026-W48"
        for r in recipients:
            got.setdefault(r, []).append(now)
        if report.complete and complete_at is None:
            complete_at = now
    assert got == {
        "nz@example.org": [dt.datetime(2026, 11, 22, 19, tzinfo=dt.UTC)],  # 08:00 NZDT
        "berlin@example.org": [dt.datetime(2026, 11, 23, 7, tzinfo=dt.UTC)],  # 08:00 CET
        "list@example.org": [dt.datetime(2026, 11, 23, 8, tzinfo=dt.UTC)],  # the list's UTC
        "ny@example.org": [dt.datetime(2026, 11, 23, 13, tzinfo=dt.UTC)],  # 08:00 EST
    }
    # complete once the send time has come everywhere (UTC-12), within a day of the first
    assert complete_at == dt.datetime(2026, 11, 23, 20, tzinfo=dt.UTC)


@pytest.mark.usefixtures("readers")
def test_reader_changing_time_zone_mid_week_gets_exactly_one_email(
    db_settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    settings = replace(db_settings, local_delivery=True)
    start = NOW - 20 * HOUR
    runs = hourly(settings, engine, start, 40)
    sent: list[str] = []
    for now, recipients, _ in runs:
        sent += recipients
        if now == NOW - 2 * HOUR:  # NZ got theirs; New York has not yet
            set_reader(factory, "ny@example.org", timezone="Pacific/Auckland")  # now overdue
            set_reader(factory, "nz@example.org", timezone="America/New_York")  # got it already
        if now == NOW + 2 * HOUR:
            set_reader(factory, "ny@example.org", timezone="America/New_York")
    assert sorted(sent) == sorted(
        ["nz@example.org", "berlin@example.org", "list@example.org", "ny@example.org"]
    )


def test_monthly_readers_get_one_digest_a_month_covering_everything(
    db_settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    add_categories(factory, "Pharmacology")
    add_reader(factory, "weekly@example.org", ["pharmacology"], joined=NOW - 3 * DAY)
    add_reader(factory, "monthly@example.org", ["pharmacology"], joined=NOW - 3 * DAY)
    set_reader(factory, "monthly@example.org", frequency="monthly")
    got: dict[str, list[tuple[str, list[str]]]] = {}
    for week in range(4):  # 2026-W48 (Nov 23) .. W51 (Dec 14)
        now = NOW + week * 7 * DAY
        add_summary(factory, f"Study of week {week}", ["pharmacology"], now - 2 * DAY)
        memory = MemoryTransport()
        report = run_edition(db_settings, memory, now=now, engine=engine)
        for envelope, raw in memory.outbox:
            text = (
                email.message_from_bytes(raw, policy=email.policy.default)
                .get_body(("plain",))
                .get_content()
            )
            titles = [f"Study of week {w}" for w in range(4) if f"Study of week {w}" in text]
            got.setdefault(envelope.recipient, []).append((report.key, titles))
    assert [key for key, _ in got["weekly@example.org"]] == [
        "2026-W48",
        "2026-W49",
        "2026-W50",
        "2026-W51",
    ]
    assert got["monthly@example.org"] == [
        ("2026-W48", ["Study of week 0"]),  # November
        ("2026-W50", ["Study of week 1", "Study of week 2"]),  # first December edition
    ]


def test_reader_changing_frequency_mid_week_gets_exactly_one_email(
    db_settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    add_categories(factory, "Pharmacology")
    add_summary(factory, "A study", ["pharmacology"], NOW - 2 * DAY)
    add_reader(factory, "reader@example.org", ["pharmacology"], joined=NOW - 3 * DAY)
    first = MemoryTransport()
    run_edition(db_settings, first, now=NOW, engine=engine)
    set_reader(factory, "reader@example.org", frequency="monthly")
    again = MemoryTransport()
    run_edition(db_settings, again, now=NOW + 2 * DAY, engine=engine)
    set_reader(factory, "reader@example.org", frequency="weekly")
    third = MemoryTransport()
    run_edition(db_settings, third, now=NOW + 3 * DAY, engine=engine)
    assert len(first.outbox) == 1 and not again.outbox and not third.outbox


def test_paused_reader_is_skipped_until_the_pause_ends(
    db_settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    add_categories(factory, "Pharmacology")
    add_summary(factory, "First", ["pharmacology"], NOW - 2 * DAY)
    add_reader(factory, "reader@example.org", ["pharmacology"], joined=NOW - 3 * DAY)
    set_reader(factory, "reader@example.org", paused_until=NOW + 10 * DAY)
    paused = MemoryTransport()
    report = run_edition(db_settings, paused, now=NOW, engine=engine)
    assert not paused.outbox and report.not_due == 1
    add_summary(factory, "Second", ["pharmacology"], NOW + 5 * DAY)
    back = MemoryTransport()
    run_edition(db_settings, back, now=NOW + 14 * DAY, engine=engine)
    text = (
        email.message_from_bytes(back.outbox[0][1], policy=email.policy.default)
        .get_body(("plain",))
        .get_content()
    )
    assert "First" in text and "Second" in text  # nothing missed while paused


def test_a_second_sender_on_the_same_edition_is_turned_away(engine: Engine) -> None:
    with SendLock(engine, "2026-W48", holder="host-a:1") as first:
        assert first.acquired
        with SendLock(engine, "2026-W48", holder="host-b:2") as second:
            assert not second.acquired and second.other
        with SendLock(engine, "2026-W49", holder="host-b:2") as other_week:
            assert other_week.acquired
    with SendLock(engine, "2026-W48", holder="host-b:2") as after:
        assert after.acquired


def test_a_lease_held_by_a_dead_local_process_is_taken_over(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("advisory locks end with their session; leases are SQLite's")
    import socket

    stale = SendLock(engine, "2026-W48", holder=f"{socket.gethostname()}:999999999")
    assert stale.acquire()  # never released: the process "died"
    with SendLock(engine, "2026-W48") as lock:
        assert lock.acquired


@pytest.mark.usefixtures("week_of_readers")
def test_cancel_during_a_send_stops_cleanly(
    db_settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    class CancelAfterFirst(MemoryTransport):
        def send(self, envelope, message):  # type: ignore[no-untyped-def]
            if not self.outbox:
                with transaction(factory) as session:
                    cancel_edition(session, "2026-W48")
            return super().send(envelope, message)

    transport = CancelAfterFirst()
    report = run_edition(replace(db_settings, send_batch_size=2), transport, now=NOW, engine=engine)
    assert report.stopped and len(transport.outbox) == 2  # the claimed batch finished
    with factory() as session:
        rows = session.execute(select(Delivery.status, Delivery.detail)).all()
        edition = session.scalar(select(Edition))
    assert edition is not None and edition.status == "cancelled"
    assert sorted(status for status, _ in rows) == ["sent", "sent"] + ["skipped"] * 4
    assert {d for s, d in rows if s == "skipped"} == {"edition cancelled"}


@pytest.mark.usefixtures("week_of_readers")
def test_stop_request_finishes_the_batch_and_resume_completes(
    db_settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    first = MemoryTransport()
    report = run_edition(
        replace(db_settings, send_batch_size=2),
        first,
        now=NOW,
        engine=engine,
        should_stop=lambda: bool(first.outbox),
    )
    assert report.stopped and len(first.outbox) == 2 and not report.complete
    second = MemoryTransport()
    resumed = run_edition(db_settings, second, now=NOW, engine=engine)
    assert resumed.complete and resumed.resent_after_crash == 0
    recipients = [e.recipient for e, _ in first.outbox + second.outbox]
    assert len(recipients) == len(set(recipients)) == 6


@pytest.fixture
def week_of_readers(factory: sessionmaker[Session]) -> None:
    add_categories(factory, "Pharmacology")
    add_summary(factory, "A study", ["pharmacology"], NOW - 2 * DAY)
    for i in range(6):
        add_reader(factory, f"reader{i}@example.org", ["pharmacology"])


# ------------------------------------------------------ real APScheduler, real clock


@pytest.fixture
def deployment(tmp_path: Path, smtp_server: SmtpServer) -> tuple[str, Settings]:
    """A config file on disk (SQLite, SMTP to the loopback server) with this week's data,
    scheduled for an hour ago so a run is due."""
    now = dt.datetime.now(dt.UTC)
    hour_ago = now - HOUR
    chosen = {
        "transport": '"smtp"',
        "smtp_url": f'"{smtp_server.url}"',
        "send_day": f'"{WEEKDAYS[hour_ago.weekday()]}"',
        "send_time": f'"{hour_ago:%H:%M}"',
    }
    config = tmp_path / "digest.toml"
    kept = [line for line in STARTER_CONFIG.splitlines() if line.split(" =")[0] not in chosen]
    config.write_text("\n".join(kept + [f"{k} = {v}" for k, v in chosen.items()]) + "\n")
    settings = load_settings(config, env={})
    engine = make_engine(settings.database_url)
    schema.upgrade(engine)
    factory = session_factory(engine)
    add_categories(factory, "Pharmacology")
    add_summary(factory, "A study", ["pharmacology"], now - 2 * DAY)
    for i in range(3):
        add_reader(factory, f"reader{i}@example.org", ["pharmacology"], joined=now - DAY)
    return str(config), settings


def test_two_schedulers_firing_at_once_send_once(
    deployment: tuple[str, Settings], smtp_server: SmtpServer
) -> None:
    config, _ = deployment
    reports = []
    threads = [
        threading.Thread(target=lambda: reports.append(scheduled_send(config))) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    received = [r for m in smtp_server.handler.messages for r in m.recipients]
    assert sorted(received) == ["reader0@example.org", "reader1@example.org", "reader2@example.org"]
    assert sum(r.sent for r in reports) == 3


def test_missed_weeks_catch_up_exactly_once_after_downtime(
    deployment: tuple[str, Settings], smtp_server: SmtpServer
) -> None:
    config, settings = deployment
    first = build_scheduler(settings, config, BackgroundScheduler)
    first.start(paused=True)
    first.shutdown()
    # the machine was off for three weeks: the stored next run is long past
    store = SQLAlchemyJobStore(engine=make_engine(settings.database_url), tablename=JOBS_TABLE)
    store.start(first, "default")
    job = store.lookup_job(JOB_ID)
    job._modify(next_run_time=job.next_run_time - dt.timedelta(weeks=3))
    store.update_job(job)

    runs = threading.Semaphore(0)
    again = build_scheduler(settings, config, BackgroundScheduler)
    again.add_listener(lambda event: runs.release(), EVENT_JOB_EXECUTED)
    again.start()
    try:
        assert runs.acquire(timeout=30)
        time.sleep(0.5)
        assert not runs.acquire(timeout=1)  # once, not once per missed week
        assert again.get_job(JOB_ID).next_run_time > dt.datetime.now(dt.UTC)
    finally:
        again.shutdown()
    assert len(smtp_server.handler.messages) == 3


def test_send_due_waits_for_the_send_time_and_stops_when_complete(
    db_settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    settings = replace(db_settings, send_day="mon", send_time="09:00")
    assert not_due_reason(settings, now=NOW, engine=engine) == (
        "edition 2026-W48 is not due until Mon 2026-11-23 09:00 (UTC)"
    )
    assert not_due_reason(settings, now=NOW + HOUR, engine=engine) is None
    add_categories(factory, "Pharmacology")
    # an edition that planned nobody is not complete while its week lasts (issue 15)
    add_summary(factory, "Riluzole after acute injury", ["pharmacology"], NOW - HOUR)
    add_reader(factory, "zoe@example.org", ["pharmacology"], joined=NOW - HOUR)
    run_edition(settings, MemoryTransport(), now=NOW + HOUR, engine=engine)
    assert not_due_reason(settings, now=NOW + 2 * HOUR, engine=engine) == (
        "edition 2026-W48 is complete"
    )
