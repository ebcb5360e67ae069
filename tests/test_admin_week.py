"""The "This week" page while a send started from the console runs: its live progress
(the page reloads itself, no script), a second start refused, cancelling with
confirmation, and what the page says before and after; on SQLite and PostgreSQL.

The sends go through a transport that waits at a gate before each message (a real
in-memory transport otherwise), so the test sees the send while it runs."""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, select

from digest.mail.transports.base import Envelope
from digest.mail.transports.memory import MemoryTransport
from digest.sources.corrections import correct
from digest.store.db import transaction
from digest.store.models import Delivery
from digest.web.admin import create_admin_app, weekview
from digest.web.admin.sending import AlreadySending, SendJobs
from tests.admin_support import Console, make_console, signed_in
from tests.conftest import NOW, SmtpServer, add_reader, add_summary

HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)


@dataclass
class GatedTransport(MemoryTransport):
    """Keeps messages in memory, each only once the test lets one more through."""

    gate: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))

    def send(self, envelope: Envelope, message: bytes) -> str:
        assert self.gate.acquire(timeout=30), "the test never opened the gate"
        return super().send(envelope, message)

    def let_through(self, messages: int = 100) -> None:
        self.gate.release(messages)


@pytest.fixture
def gated(
    tmp_path: Path, engine: Engine, smtp_server: SmtpServer
) -> tuple[Console, GatedTransport]:
    console = make_console(tmp_path, engine, smtp_server, send_batch_size="1")
    transport = GatedTransport()
    console.app = create_admin_app(
        console.settings, engine, now=lambda: console.clock[0], transport=lambda: transport
    )
    return console, transport


def text(client: FlaskClient, path: str = "/admin/") -> str:
    page = client.get(path)
    assert page.status_code == 200
    body = re.sub(r"<style.*?</style>", "", page.get_data(as_text=True), flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", body).split())


def wait_until(check, seconds: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def in_flight(console: Console) -> int:
    """Rows claimed by the send and not recorded yet: the message held at the gate, and
    the next batch, claimed while it waits."""
    with console.factory() as session:
        return (
            session.scalar(
                select(func.count()).select_from(Delivery).where(Delivery.status == "sending")
            )
            or 0
        )


def sent(console: Console) -> int:
    with console.factory() as session:
        return (
            session.scalar(
                select(func.count()).select_from(Delivery).where(Delivery.status == "sent")
            )
            or 0
        )


def job(console: Console):  # type: ignore[no-untyped-def]
    with console.app.app_context():
        from digest.web.admin.state import current_admin

        return current_admin().sends.current


def test_a_send_shows_its_progress_refuses_a_second_start_and_finishes(
    gated: tuple[Console, GatedTransport],
) -> None:
    console, transport = gated
    client = signed_in(console.app)
    before = text(client)
    assert "due Due since Mon 23 Nov 2026 08:00 (UTC); not sent yet." in before
    assert 'http-equiv="refresh"' not in client.get("/admin/").get_data(as_text=True)
    confirm = text(client, "/admin/send")
    assert "Send edition 2026-W48 now? 3 readers would get a digest now" in confirm

    form = {"csrf_token": client.csrf, "edition": "2026-W48"}  # type: ignore[attr-defined]
    started = client.post("/admin/send", data=form)
    assert started.status_code == 303 and started.headers["Location"] == "/admin/"
    wait_until(lambda: in_flight(console) >= 1)  # and the next batch, claimed ahead
    shown = text(client)
    assert "Started sending edition 2026-W48; this page shows its progress." in shown
    page = client.get("/admin/").get_data(as_text=True)
    assert '<meta http-equiv="refresh" content="3">' in page
    assert "sending Sending now: 0 of 3 messages handled." in shown
    assert "0 of 3 messages handled, 0 failed" in shown
    assert '<progress id="send-progress" max="3" value="0">' in page

    again = client.post("/admin/send", data=form)
    assert again.status_code == 303
    assert (
        "Not started: edition 2026-W48 is being sent from this console: wait for it to end."
        in text(client)
    )
    transport.let_through(1)  # one message goes out: the page shows it
    wait_until(lambda: sent(console) == 1)
    assert "sending Sending now: 1 of 3 messages handled." in text(client)
    assert '<progress id="send-progress" max="3" value="1">' in client.get("/admin/").get_data(
        as_text=True
    )
    transport.let_through()
    wait_until(lambda: not job(console).running)
    assert len(transport.outbox) == 3  # each reader once: the second start sent nothing
    after = client.get("/admin/").get_data(as_text=True)
    assert 'http-equiv="refresh"' not in after
    shown = text(client)
    assert re.search(r"Sent 3 in \d+\.\d s \(\d+ msg/s\)\.", shown)
    assert "complete Complete since Mon 23 Nov 2026 08:00 UTC: 3 sent." in shown
    assert "Nobody is left to get a digest in this edition now." in shown
    assert "Deliveries 3 sent" in shown


def test_cancelling_while_a_send_runs_stops_it(gated: tuple[Console, GatedTransport]) -> None:
    console, transport = gated
    client = signed_in(console.app)
    form = {"csrf_token": client.csrf, "edition": "2026-W48"}  # type: ignore[attr-defined]
    client.post("/admin/send", data=form)
    wait_until(lambda: in_flight(console) >= 1)  # and the next batch, claimed ahead
    confirm = text(client, "/admin/cancel")
    assert "Cancel edition 2026-W48? It is open: 3 messages are not sent yet." in confirm
    cancelled = client.post("/admin/cancel", data=form)
    assert cancelled.status_code == 303
    shown = text(client)
    assert "Cancelled edition 2026-W48:" in shown
    transport.let_through()
    wait_until(lambda: not job(console).running)
    assert len(transport.outbox) < 3  # at most the batch in flight went out
    shown = text(client)
    assert "cancelled Cancelled: nothing more of it will be sent." in shown
    assert "Send edition 2026-W48" not in shown and "Cancel edition 2026-W48" not in shown


def test_a_confirmation_from_last_week_does_nothing(gated: tuple[Console, GatedTransport]) -> None:
    console, transport = gated
    client = signed_in(console.app)
    stale = {"csrf_token": client.csrf, "edition": "2026-W47"}  # type: ignore[attr-defined]
    client.post("/admin/send", data=stale)
    assert "The week has changed since that page: it is now edition 2026-W48." in text(client)
    assert job(console) is None and transport.outbox == []


def test_the_page_shows_late_readers_and_the_notices_carried(
    gated: tuple[Console, GatedTransport],
) -> None:
    console, transport = gated
    transport.let_through()
    client = signed_in(console.app)
    form = {"csrf_token": client.csrf, "edition": "2026-W48"}  # type: ignore[attr-defined]
    client.post("/admin/send", data=form)
    wait_until(lambda: job(console) is not None and not job(console).running)
    # a reader who joins after the cutoff, while the edition's week lasts
    console.clock[0] = NOW + 30 * HOUR
    add_reader(console.factory, "late@example.org", ["rehabilitation"], joined=NOW + 26 * HOUR)
    shown = text(client)
    assert "0 readers who became active after the cutoff were added to this edition" in shown
    assert "1 not planned yet: the next send adds them." in shown
    assert "None: no reader is owed a correction or retraction notice" in shown

    # next week: a summary sent this week is corrected; its readers' digests carry a notice
    console.clock[0] = NOW + 7 * DAY
    add_summary(console.factory, "Spasticity and cannabis", ["pharmacology"], NOW + 6 * DAY)
    with transaction(console.factory) as session:
        correct(
            session,
            "https://example.org/research/riluzole-after-acute-injury",
            "corrected",
            "The dose was 50 mg, not 500 mg.",
            now=NOW + 6 * DAY,
        )
    shown = text(client)
    assert "This week: edition 2026-W49" in shown
    assert "Corrected: Riluzole after acute injury (The dose was 50 mg, not 500 mg.)" in shown
    assert "with 1 correction or retraction notice" in shown


def test_only_the_variants_with_most_readers_are_rendered_on_the_page(
    gated: tuple[Console, GatedTransport], monkeypatch: pytest.MonkeyPatch
) -> None:
    console, _ = gated
    monkeypatch.setattr(weekview, "CHECKED_ON_PAGE", 1)
    client = signed_in(console.app)
    shown = text(client)
    assert (
        "1 3 new summaries in Neurology and Pharmacology Neurology, Pharmacology 3 summaries"
        in shown
    )
    assert "2 not rendered on this page Rehabilitation 1 summary 1 run the preflight" in shown
    assert "The variant with the fewest readers is not rendered on this page" in shown
    client.post("/admin/preflight", data={"csrf_token": client.csrf})  # type: ignore[attr-defined]
    shown = text(client)
    assert "Run at 2026-11-23 08:00:00 UTC: 2 variants, MJML validation" in shown
    assert "No problems found." in shown


def test_send_jobs_refuse_a_second_start_while_one_runs() -> None:
    jobs, gate = SendJobs(), threading.Event()

    def run(progress):  # type: ignore[no-untyped-def]
        progress(1, 2, 0)
        gate.wait(10)
        raise RuntimeError("boom")

    first = jobs.start("2026-W48", run, now=NOW, clock=lambda: NOW)
    with pytest.raises(AlreadySending):
        jobs.start("2026-W48", run, now=NOW, clock=lambda: NOW)
    gate.set()
    wait_until(lambda: not first.running)
    assert first.error == "the send stopped on an unexpected error (RuntimeError)"
    second = jobs.start("2026-W48", lambda progress: None, now=NOW, clock=lambda: NOW)  # type: ignore[arg-type,return-value]
    wait_until(lambda: not second.running)
    assert jobs.current is second
