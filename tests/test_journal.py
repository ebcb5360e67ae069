"""The outcome journal: what survives ``kill -9`` and how a resume reads it; the in-flight
mark that survives a deferral."""

from __future__ import annotations

import datetime as dt
import json
import signal
import socket
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings, parse_smtp_url
from digest.delivery.journal import FileJournal, database_tag, read_journals, resolve
from digest.edition.run import run_edition
from digest.mail.transports import SmtpTransport
from digest.store.models import Delivery, DeliveryStatus, Edition, EditionStatus
from subscribers.models import Subscriber
from tests.conftest import NOW, SmtpServer, add_categories, add_reader, add_summary

DATABASE = "sqlite:///nowhere/digest.sqlite3"


def test_a_journal_outlives_kill_9_and_says_what_was_on_the_wire(tmp_path: Path) -> None:
    child = textwrap.dedent(
        f"""
        import datetime as dt, os, signal
        from pathlib import Path
        from digest.delivery.journal import FileJournal
        journal = FileJournal(Path({str(tmp_path)!r}), {DATABASE!r}, "2026-W49")
        journal.claimed([1, 2, 3, 4])
        journal.on_wire(1)
        at = dt.datetime(2026, 12, 4, 9, 0, tzinfo=dt.UTC)
        journal.outcome(1, {{"id": 1, "status": "sent", "detail": "250 ok", "sent_at": at}})
        journal.on_wire(2)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    process = subprocess.run([sys.executable, "-c", child], check=False)
    assert process.returncode == -signal.SIGKILL

    found = read_journals(tmp_path, DATABASE, "2026-W49")
    assert [(j.trusted, j.alive) for j in found] == [(True, False)]
    assert read_journals(tmp_path, DATABASE, "2026-W50") == []  # another edition's
    assert read_journals(tmp_path, "sqlite:///other.sqlite3", "2026-W49") == []

    decided = resolve([1, 2, 3, 4, 5], found)
    sent_at = dt.datetime(2026, 12, 4, 9, 0, tzinfo=dt.UTC)
    assert decided.outcomes == [
        {"id": 1, "status": "sent", "detail": "250 ok", "sent_at": sent_at}
    ]  # the reply was known: recorded, not sent again
    assert decided.resend == [2, 5]  # on the wire; and 5, which no journal knows
    assert decided.unsent == [3, 4]  # claimed, never on the wire
    assert decided.unknown == 1


def test_every_outcome_reads_back_as_the_sender_recorded_it(tmp_path: Path) -> None:
    """Accepted messages take a short line of their own; their replies keep tabs, newlines
    and backslashes, their time its microseconds; any other outcome the general line; a
    line cut short by a kill is ignored, never read as a shorter reply."""
    journal = FileJournal(tmp_path, DATABASE, "2026-W49")
    journal.claimed([1, 2, 3, 4])
    at = dt.datetime(2026, 12, 4, 9, 0, 1, 123456, tzinfo=dt.UTC)
    sent = {"id": 1, "status": "sent", "detail": "250 2.0.0 Ok", "sent_at": at, "updated_at": at}
    odd = "250 queued\tas \\x\nsecond line"
    sent_odd = {**sent, "id": 2, "detail": odd}
    deferred = {"id": 3, "status": "deferred", "detail": "451 4.7.1 later", "updated_at": at}
    for row in (sent, sent_odd, deferred):
        journal.outcome(int(row["id"]), row)  # type: ignore[call-overload]
    journal.close(remove=False)
    lines = journal.path.read_bytes().splitlines()
    assert lines[2:] == [
        b"S 1 1796374801123456 250 2.0.0 Ok",  # microseconds since 1970
        b"S 2 1796374801123456 250 queued\\tas \\\\x\\nsecond line",
        b"O id=i3\tstatus=sdeferred\tdetail=s451 4.7.1 later\tupdated_at=t"
        + at.isoformat().encode(),
    ]
    with journal.path.open("ab") as file:
        file.write(b"S 4 1796374801123456 250 2.0")  # the kill came mid-write
    decided = resolve([1, 2, 3, 4], read_journals(tmp_path, DATABASE, "2026-W49"))
    assert decided.outcomes == [sent, sent_odd, deferred]
    assert decided.unsent == [4] and decided.resend == []


def test_a_journal_from_before_a_restart_is_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / f"{database_tag(DATABASE)}.2026-W49.abc.journal"
    header = json.dumps({"host": socket.gethostname(), "pid": 1, "boot": "an-earlier-boot"})
    path.write_text(f"H {header}\nC 7,8\n")
    found = read_journals(tmp_path, DATABASE, "2026-W49")
    assert [j.trusted for j in found] == [False]
    # its lines may be incomplete (written back after the restart or not): when in doubt,
    # both may have reached their readers
    assert resolve([7, 8], found).resend == [7, 8]


@pytest.fixture
def two_readers(factory: sessionmaker[Session]) -> None:
    add_categories(factory, "Pharmacology")
    add_summary(factory, "A study", ["pharmacology"], NOW - dt.timedelta(days=1))
    add_reader(factory, "grey@example.org", ["pharmacology"])
    add_reader(factory, "fine@example.org", ["pharmacology"])


@pytest.mark.usefixtures("two_readers")
def test_the_in_flight_mark_survives_a_deferral(
    db_settings: Settings, engine, factory: sessionmaker[Session], smtp_server: SmtpServer
) -> None:
    # a short wait for the unknown, yet a proof of the hold (on PostgreSQL two heartbeats,
    # 0.6 s) that a loaded machine's slow check does not outlast
    settings = replace(db_settings, send_lease_seconds=3.0)

    def send() -> object:
        with SmtpTransport(parse_smtp_url(smtp_server.url)) as transport:
            return run_edition(settings, transport, now=NOW, engine=engine, retry_delays=[])

    send()
    with factory.begin() as session:  # a crash with both on the wire, on another machine
        session.execute(update(Delivery).values(status=DeliveryStatus.SENDING.value))
        session.execute(update(Edition).values(status=EditionStatus.OPEN.value))
    smtp_server.handler.refuse["grey@example.org"] = "451 4.7.1 greylisted, try later"
    second = send()
    assert second.possibly_duplicated == 2  # type: ignore[attr-defined]
    assert second.sent == second.resent_after_crash == 1  # type: ignore[attr-defined]
    assert second.deferred == 1  # type: ignore[attr-defined]
    del smtp_server.handler.refuse["grey@example.org"]
    third = send()
    # deferred in between, still a possible second copy when it finally goes out
    assert third.sent == third.resent_after_crash == 1  # type: ignore[attr-defined]
    with factory() as session:
        rows = session.execute(
            select(Subscriber.email, Delivery.status, Delivery.possibly_duplicated).join(
                Subscriber, Subscriber.id == Delivery.subscriber_id
            )
        ).all()
    assert sorted(rows) == [("fine@example.org", "sent", True), ("grey@example.org", "sent", True)]
