"""Nobody subscribed while a period lasts misses its edition (issue 15 point 2): readers who
become active after the edition was planned (imported, confirmed) are planned into it by
the next run, an edition that planned nobody stays open, and a late reader never gets a
summary twice, in this edition or the next. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from digest.cli.main import cli
from digest.config import WEEKDAYS, Settings
from digest.edition.manage import edition_info
from digest.edition.run import not_due_reason, run_edition
from digest.mail.transports import MemoryTransport
from digest.planning.when import key_for, next_key, week_of
from digest.preview.reader import preview_subscriber
from digest.sources.store import SummaryRecord, upsert_summary
from digest.store.db import make_engine, session_factory, transaction, utcnow
from digest.store.models import Edition
from subscribers import service
from subscribers.models import Subscriber
from tests.conftest import NOW, add_categories, add_reader, add_summary

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


@pytest.fixture
def weekly(db_settings: Settings) -> Settings:
    """Sent on Mondays at 08:00 UTC: NOW is the send time of edition 2026-W48."""
    return replace(db_settings, send_day="mon", send_time="08:00")


def imported(factory: sessionmaker[Session], title: str, published: dt.datetime, at: dt.datetime):
    """A summary of the week, imported at ``at`` (after an early cron run)."""
    slug = title.lower().replace(" ", "-")
    record = SummaryRecord(
        title=title,
        url=f"https://example.org/research/{slug}",
        published_at=published,
        categories=("pharmacology",),
        fields={"journal": "Spinal Cord", "year": 2026, "simple_explanation": f"{title}."},
    )
    with transaction(factory) as session:
        upsert_summary(session, record, now=at)


def titles(memory: MemoryTransport) -> dict[str, list[str]]:
    """Each recipient's summary titles, in the text part of each message they got."""
    got: dict[str, list[str]] = {}
    for envelope, raw in memory.outbox:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        text = message.get_body(("plain",)).get_content()
        got.setdefault(envelope.recipient, []).extend(
            t for t in ("Riluzole", "Minocycline", "Bladder", "Nerve") if t in text
        )
    return got


def status(factory: sessionmaker[Session], key: str) -> str:
    with factory() as session:
        return session.scalar(select(Edition.status).where(Edition.key == key)) or ""


def test_cron_before_import_sends_when_the_list_is_filled(
    weekly: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    add_categories(factory, "Pharmacology")
    memory = MemoryTransport()
    early = run_edition(weekly, memory, now=NOW, engine=engine)  # cron, on an empty list
    assert (early.sent, early.complete) == (0, False)
    assert status(factory, "2026-W48") == "open"
    # nothing changed: cron stays quiet and cheap
    assert not_due_reason(weekly, now=NOW + HOUR / 12, engine=engine) == (
        "edition 2026-W48 has nobody to send to yet; readers who join this week get it"
    )
    imported(factory, "Riluzole after acute injury", NOW - 2 * DAY, at=NOW + HOUR)
    add_reader(factory, "zoe@example.org", ["pharmacology"], joined=NOW + HOUR)
    assert not_due_reason(weekly, now=NOW + HOUR + HOUR / 12, engine=engine) is None
    report = run_edition(weekly, memory, now=NOW + HOUR + HOUR / 12, engine=engine)
    assert (report.sent, report.late, report.complete) == (1, 1, True)
    assert titles(memory) == {"zoe@example.org": ["Riluzole"]}
    assert not_due_reason(weekly, now=NOW + 2 * HOUR, engine=engine) == (
        "edition 2026-W48 is complete"
    )


def test_summaries_imported_after_an_early_run_reach_the_readers_already_there(
    weekly: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    add_categories(factory, "Pharmacology")
    add_reader(factory, "zoe@example.org", ["pharmacology"], joined=NOW - DAY)
    memory = MemoryTransport()
    assert run_edition(weekly, memory, now=NOW, engine=engine).nothing_new == 1
    imported(factory, "Riluzole after acute injury", NOW - 2 * DAY, at=NOW + HOUR)
    assert not_due_reason(weekly, now=NOW + 2 * HOUR, engine=engine) is None
    assert run_edition(weekly, memory, now=NOW + 2 * HOUR, engine=engine).sent == 1
    assert titles(memory) == {"zoe@example.org": ["Riluzole"]}


def test_a_reader_who_confirms_an_hour_after_the_send_gets_it(
    weekly: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    add_categories(factory, "Pharmacology")
    add_summary(factory, "Riluzole after acute injury", ["pharmacology"], NOW - 2 * DAY)
    add_reader(factory, "ada@example.org", ["pharmacology"], joined=NOW - 3 * DAY)
    add_reader(factory, "zoe@example.org", ["pharmacology"], joined=NOW - DAY, confirmed=False)
    memory = MemoryTransport()
    first = run_edition(weekly, memory, now=NOW, engine=engine)
    assert (first.sent, first.complete) == (1, True)
    assert not_due_reason(weekly, now=NOW + HOUR / 2, engine=engine) == (
        "edition 2026-W48 is complete"
    )
    with transaction(factory) as session:
        zoe = session.scalars(select(Subscriber).where(Subscriber.email == "zoe@example.org"))
        service.confirm(session, zoe.one(), now=NOW + HOUR)
    assert not_due_reason(weekly, now=NOW + HOUR + HOUR / 12, engine=engine) is None
    late = run_edition(weekly, memory, now=NOW + HOUR + HOUR / 12, engine=engine)
    assert (late.sent, late.late, late.previously_sent, late.complete) == (1, 1, 1, True)
    assert titles(memory) == {"ada@example.org": ["Riluzole"], "zoe@example.org": ["Riluzole"]}
    with factory() as session:
        info = edition_info(session, "2026-W48")
    assert (info.status, info.counts["sent"], info.late, info.waiting) == ("complete", 2, 1, 0)


def test_a_late_reader_then_next_week_gets_nothing_twice(
    weekly: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    add_categories(factory, "Pharmacology")
    add_summary(factory, "Riluzole after acute injury", ["pharmacology"], NOW - 2 * DAY)
    add_summary(factory, "Minocycline and inflammation", ["pharmacology"], NOW - HOUR)
    memory = MemoryTransport()
    run_edition(weekly, memory, now=NOW, engine=engine)
    add_reader(factory, "zoe@example.org", ["pharmacology"], joined=NOW + 3 * HOUR)
    # published after the cutoff: next week's, even for the late reader
    add_summary(factory, "Bladder care after injury", ["pharmacology"], NOW + 2 * HOUR)
    run_edition(weekly, memory, now=NOW + 4 * HOUR, engine=engine)
    assert titles(memory) == {"zoe@example.org": ["Riluzole", "Minocycline"]}
    next_week = MemoryTransport()
    report = run_edition(weekly, next_week, now=NOW + 7 * DAY, engine=engine)
    assert report.key == "2026-W49"
    assert titles(next_week) == {"zoe@example.org": ["Bladder"]}


def test_a_late_reader_with_nothing_new_waits_for_the_next_edition(
    weekly: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    add_categories(factory, "Pharmacology", "Neurology")
    add_summary(factory, "Riluzole after acute injury", ["pharmacology"], NOW - 2 * DAY)
    add_reader(factory, "ada@example.org", ["pharmacology"], joined=NOW - 3 * DAY)
    run_edition(weekly, MemoryTransport(), now=NOW, engine=engine)
    add_reader(factory, "zoe@example.org", ["neurology"], joined=NOW + HOUR)
    report = run_edition(weekly, MemoryTransport(), now=NOW + 2 * HOUR, engine=engine)
    assert (report.sent, report.late, report.waiting) == (0, 0, 1)
    assert (report.next_key, report.next_send) == ("2026-W49", NOW + 7 * DAY)
    # planned again: cron stays quiet until something else changes
    assert not_due_reason(weekly, now=NOW + 3 * HOUR, engine=engine) == (
        "edition 2026-W48 is complete"
    )
    with factory() as session:
        info = edition_info(session, "2026-W48")
    assert (info.late, info.waiting, info.unplanned) == (0, 1, 0)


def test_a_reader_who_joins_after_the_week_ends_is_not_added_to_it(
    weekly: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    add_categories(factory, "Pharmacology")
    add_summary(factory, "Riluzole after acute injury", ["pharmacology"], NOW - 2 * DAY)
    run_edition(weekly, MemoryTransport(), now=NOW, engine=engine)
    add_reader(factory, "zoe@example.org", ["pharmacology"], joined=NOW + 7 * DAY + HOUR)
    memory = MemoryTransport()
    report = run_edition(weekly, memory, now=NOW + 7 * DAY + HOUR, key="2026-W48", engine=engine)
    assert (report.sent, report.late) == (0, 0)
    assert status(factory, "2026-W48") == "complete"  # its week is over


def test_topics_changed_after_the_send_bring_the_new_topics_once(
    weekly: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    add_categories(factory, "Pharmacology", "Neurology")
    add_summary(factory, "Riluzole after acute injury", ["pharmacology"], NOW - 2 * DAY)
    add_summary(factory, "Minocycline and inflammation", ["pharmacology", "neurology"], NOW - DAY)
    add_summary(factory, "Nerve transfers for hand function", ["neurology"], NOW - 3 * DAY)
    add_reader(factory, "ada@example.org", ["pharmacology"], joined=NOW - 3 * DAY)
    memory = MemoryTransport()
    run_edition(weekly, memory, now=NOW, engine=engine)
    assert titles(memory) == {"ada@example.org": ["Riluzole", "Minocycline"]}
    assert not_due_reason(weekly, now=NOW + HOUR, engine=engine) == ("edition 2026-W48 is complete")
    with transaction(factory) as session:
        ada = session.scalars(select(Subscriber).where(Subscriber.email == "ada@example.org"))
        service.set_categories(session, ada.one(), ["neurology"], now=NOW + HOUR)
    assert not_due_reason(weekly, now=NOW + 2 * HOUR, engine=engine) is None
    again = run_edition(weekly, memory, now=NOW + 2 * HOUR, engine=engine)
    assert (again.sent, again.topped_up, again.complete) == (1, 1, True)
    # the new topic's summaries of this week, once; not the ones she already had
    assert titles(memory) == {"ada@example.org": ["Riluzole", "Minocycline", "Nerve"]}
    assert run_edition(weekly, memory, now=NOW + 3 * HOUR, engine=engine).sent == 0
    add_summary(factory, "Bladder care after injury", ["neurology"], NOW + 4 * HOUR)
    next_week = MemoryTransport()
    run_edition(weekly, next_week, now=NOW + 7 * DAY, engine=engine)
    assert titles(next_week) == {"ada@example.org": ["Bladder"]}


def test_send_and_editions_show_say_who_was_added_late_and_who_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the real clock (the commands' now): the week's send time is today at 00:00 UTC."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("DIGEST_")]:
        monkeypatch.delenv(name)
    runner = CliRunner()
    assert runner.invoke(cli, ["init"]).exit_code == 0
    today = utcnow()
    settings = {"SEND_DAY": WEEKDAYS[today.weekday()], "SEND_TIME": "00:00", "TRANSPORT": "file"}
    for name, value in settings.items():
        monkeypatch.setenv(f"DIGEST_{name}", value)
    key = key_for(today, dt.UTC)
    following = next_key(key)
    first = dt.date.fromisocalendar(*week_of(following), today.weekday() + 1)
    factory = session_factory(make_engine(f"sqlite:///{tmp_path / 'digest.sqlite3'}"))
    add_categories(factory, "Pharmacology", "Neurology")

    def run(*args: str) -> str:
        result = runner.invoke(cli, list(args))
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split())

    assert run("send", "--due") == f"Nothing new to send for edition {key}."
    assert run("send", "--due") == (
        f"Nothing to do: edition {key} has nobody to send to yet; readers who join this "
        "week get it."
    )
    imported(factory, "Riluzole after acute injury", utcnow() - 2 * DAY, at=utcnow())
    add_reader(factory, "zoe@example.org", ["pharmacology"], joined=utcnow())
    add_reader(factory, "ada@example.org", ["neurology"], joined=utcnow())
    output = run("send", "--due")
    assert f"Edition {key}: sent 1 via file" in output
    assert "1 reader who became active after this edition's cutoff was added to it." in output
    assert (
        "1 reader who became active after the cutoff has nothing new in it yet: their first "
        f"digest is edition {following} on {first:%a %Y-%m-%d} 00:00 (UTC)." in output
    )
    assert run("send", "--due") == f"Nothing to do: edition {key} is complete."
    add_reader(factory, "kim@example.org", ["neurology"], joined=utcnow())
    shown = run("editions", "show", key)
    assert f"Edition {key}: complete" in shown
    assert (
        "late readers (active since after the cutoff): 1 added to it, 1 with nothing new in "
        f"it (first digest: edition {following}, {first:%a %Y-%m-%d} 00:00), 1 not planned "
        "yet (the next `digest send` adds them)" in shown
    )
    assert "@" not in shown


def test_the_preview_of_a_late_reader_shows_the_digest_they_will_get(
    weekly: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    add_categories(factory, "Pharmacology")
    add_summary(factory, "Riluzole after acute injury", ["pharmacology"], NOW - 2 * DAY)
    run_edition(weekly, MemoryTransport(), now=NOW, engine=engine)
    add_reader(factory, "zoe@example.org", ["pharmacology"], joined=NOW + HOUR)
    persona = preview_subscriber(weekly, "zoe@example.org", now=NOW + 2 * HOUR, engine=engine)
    assert (persona.summaries, persona.reason) == (1, "")
