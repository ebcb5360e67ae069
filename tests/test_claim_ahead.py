"""The next batch is claimed while one goes out: what becomes of a batch claimed ahead when
the run stops, fails, loses its lock, or the edition is cancelled or paused meanwhile; and
the journal that keeps the lines of the batch still going out."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings
from digest.delivery.ahead import ClaimAhead
from digest.delivery.journal import read_journals, resolve
from digest.delivery.limits import batch_size
from digest.edition.manage import cancel_edition
from digest.edition.run import run_edition
from digest.errors import SendLockLost, TransportUnavailable
from digest.mail.transports import MemoryTransport
from digest.mail.transports.base import Envelope
from digest.store.db import transaction
from digest.store.models import Delivery, Edition, EditionStatus
from tests.conftest import NOW, add_categories, add_reader, add_summary, make_settings

DAY = dt.timedelta(days=1)
DATABASE = "sqlite:///nowhere/digest.sqlite3"


@pytest.fixture
def planned(db_settings: Settings, engine: Engine, factory: sessionmaker[Session]) -> int:
    """Six readers planned (all ``queued``); returns the edition's id."""
    add_categories(factory, "Pharmacology")
    add_summary(factory, "A study", ["pharmacology"], NOW - 2 * DAY)
    for i in range(6):
        add_reader(factory, f"reader{i}@example.org", ["pharmacology"])
    run_edition(db_settings, MemoryTransport(), now=NOW, engine=engine, should_stop=lambda: True)
    with factory() as session:
        edition_id = session.scalar(select(Edition.id))
    assert edition_id is not None
    return edition_id


def rows(factory: sessionmaker[Session]) -> list[tuple[str, int, str | None]]:
    with factory() as session:
        found = session.execute(
            select(Delivery.status, Delivery.attempts, Delivery.detail).order_by(Delivery.id)
        )
        return [tuple(row) for row in found]  # type: ignore[misc]


def claimed_ahead(factory: sessionmaker[Session], rows_claimed: int) -> None:
    """Wait until the claim started by ``claim_next`` has committed."""
    deadline = time.monotonic() + 30
    while statuses(factory).count("sending") < rows_claimed:
        assert time.monotonic() < deadline, "the claim ahead never committed"
        time.sleep(0.01)


def statuses(factory: sessionmaker[Session]) -> list[str]:
    return [status for status, _, _ in rows(factory)]


def set_status(factory: sessionmaker[Session], status: EditionStatus) -> None:
    with factory.begin() as session:
        session.execute(update(Edition).values(status=status.value))


def test_a_batch_claimed_ahead_is_given_back_untouched_when_the_run_stops(
    factory: sessionmaker[Session], planned: int
) -> None:
    with closing(ClaimAhead(factory, planned, "2026-W48", 2)) as claims:
        first = claims.claim_now()
        assert first is not None and len(first) == 2
        claims.claim_next(first[-1].delivery_id)
        claimed_ahead(factory, 4)
        # the run stops here (a stop request, a failed send): leaving gives the next back
    assert rows(factory) == [("sending", 1, None)] * 2 + [("queued", 0, None)] * 4


def cancel(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:  # as `digest cancel` does
        cancel_edition(session, "2026-W48")


def pause(factory: sessionmaker[Session]) -> None:
    set_status(factory, EditionStatus.PAUSED)  # as a policy bounce does


SKIPPED = ("skipped", 0, "edition cancelled")  # never tried


@pytest.mark.parametrize(
    ("change", "then"),
    [
        (cancel, [SKIPPED] * 4),  # the batch claimed ahead is skipped, as the rest
        (pause, [("queued", 0, None)] * 4),  # back to the queue, as if never claimed
    ],
    ids=["cancelled", "paused"],
)
def test_a_batch_claimed_ahead_of_a_cancel_or_pause_does_not_go_out(
    factory: sessionmaker[Session],
    planned: int,
    change: Callable[[sessionmaker[Session]], None],
    then: list[tuple[str, int, str | None]],
) -> None:
    with closing(ClaimAhead(factory, planned, "2026-W48", 2)) as claims:
        first = claims.claim_now()
        assert first is not None
        claims.claim_next(first[-1].delivery_id)
        claimed_ahead(factory, 4)  # then, while the first batch goes out:
        change(factory)
        assert claims.take() is None
    assert rows(factory) == [("sending", 1, None)] * 2 + then


def test_a_sender_that_lost_the_edition_claims_nothing_ahead(
    factory: sessionmaker[Session], planned: int
) -> None:
    held = [True]
    with closing(ClaimAhead(factory, planned, "2026-W48", 2, holds=lambda: held[0])) as claims:
        first = claims.claim_now()
        assert first is not None
        held[0] = False  # the lease ran out while the first batch went out
        claims.claim_next(first[-1].delivery_id)
        with pytest.raises(SendLockLost):
            claims.take()
    assert rows(factory) == [("sending", 1, None)] * 2 + [("queued", 0, None)] * 4


@pytest.mark.usefixtures("planned")
def test_a_send_that_fails_mid_batch_gives_back_the_batch_claimed_ahead(
    db_settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    class Refusing(MemoryTransport):
        def send(self, envelope: Envelope, message: bytes) -> str:
            if len(self.outbox) == 3:
                raise TransportUnavailable("the server went away")
            return super().send(envelope, message)

    transport = Refusing()
    settings = replace(db_settings, send_batch_size=2)
    with pytest.raises(TransportUnavailable):
        run_edition(settings, transport, now=NOW, engine=engine, sleep=lambda s: None)
    assert len(transport.outbox) == 3
    left = statuses(factory)
    assert "sending" not in left  # the batch claimed ahead went back to the queue
    assert left.count("sent") == 3


def test_the_journal_keeps_the_batch_still_going_out_across_the_next_claim(
    tmp_path: Path,
) -> None:
    child = textwrap.dedent(
        f"""
        import datetime as dt, os, signal
        from pathlib import Path
        from digest.delivery.journal import FileJournal
        journal = FileJournal(Path({str(tmp_path)!r}), {DATABASE!r}, "2026-W49")
        at = dt.datetime(2026, 12, 4, 9, 0, tzinfo=dt.UTC)
        journal.claimed([1, 2])             # batch 1
        journal.on_wire(1)
        journal.outcome(1, {{"id": 1, "status": "sent", "sent_at": at}})
        journal.claimed([3, 4])             # batch 2, claimed while batch 1 goes out
        journal.on_wire(2)
        journal.outcome(2, {{"id": 2, "status": "sent", "sent_at": at}})
        # batch 1 is recorded; batch 3 is claimed while batch 2 goes out
        journal.on_wire(3)
        journal.claimed([5, 6])
        journal.outcome(3, {{"id": 3, "status": "sent", "sent_at": at}})
        journal.on_wire(4)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    process = subprocess.run([sys.executable, "-c", child], check=False)
    assert process.returncode == -signal.SIGKILL

    found = read_journals(tmp_path, DATABASE, "2026-W49")
    assert len(found) == 2  # the current file and the older one, nothing of batch 1's claim
    assert all(journal.trusted and not journal.alive for journal in found)
    decided = resolve([3, 4, 5, 6], found)  # left ``sending``: batches 2 and 3
    assert [row["id"] for row in decided.outcomes] == [3]  # its reply came: not sent again
    assert decided.resend == [4]  # on the wire when killed: at most one per connection
    assert decided.unsent == [5, 6]  # claimed ahead, never on the wire
    assert decided.unknown == 0


@pytest.mark.parametrize(
    ("overrides", "rows_at_a_time"),
    [
        ({}, 2000),  # no limit: send_batch_size
        ({"send_batch_size": "300"}, 300),
        ({"rate_per_second": "0.8"}, 8),  # 10 s of sending: a cancel waits at most that
        ({"rate_per_second": "50"}, 500),
        ({"rate_per_hour": "360"}, 1),
        ({"rate_per_hour": "36000", "rate_per_second": "5"}, 50),  # the slower one
        ({"rate_per_second": "100000"}, 2000),
    ],
)
def test_a_batch_holds_at_most_ten_seconds_of_sending_at_the_rate_limit(
    tmp_path: Path, overrides: dict[str, str], rows_at_a_time: int
) -> None:
    assert batch_size(make_settings(tmp_path, **overrides)) == rows_at_a_time


@pytest.mark.usefixtures("planned")
def test_under_a_slow_rate_limit_a_cancel_takes_effect_within_ten_seconds(
    db_settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    class CancelAtFirst(MemoryTransport):
        claimed: list[int] = []  # noqa: RUF012 (one instance)

        def send(self, envelope: Envelope, message: bytes) -> str:
            if not self.outbox:
                claimed_ahead(factory, 4)  # this batch of 2, and the next one
                self.claimed.append(statuses(factory).count("sending"))
                cancel(factory)
            return super().send(envelope, message)

    # 0.2 a second: 10 s of sending is 2 messages (send_batch_size would be 2000)
    settings = replace(db_settings, rate_per_second=0.2)
    transport = CancelAtFirst()
    report = run_edition(settings, transport, now=NOW, engine=engine)
    assert CancelAtFirst.claimed == [4]
    assert report.stopped and len(transport.outbox) == 2  # the batch going out, no more
    assert statuses(factory) == ["sent"] * 2 + ["skipped"] * 4
