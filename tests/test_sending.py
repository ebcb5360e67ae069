"""Sending under faults: 4xx and 5xx replies, dropped connections, pipelining, the rate
limiter, retries, workers, and ``--retry-failed``; always through a real SMTP server."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings, parse_smtp_url
from digest.delivery.locks import working_on
from digest.delivery.ratelimit import RateLimiter
from digest.edition.run import run_edition
from digest.errors import TransportUnavailable
from digest.mail.transports import FileTransport, MemoryTransport, SmtpTransport
from digest.store.models import Delivery, DeliveryStatus
from subscribers.models import Subscriber
from tests.conftest import (
    NOW,
    FakeTime,
    RecordingHandler,
    add_categories,
    add_reader,
    add_summary,
    free_port,
)

DAY = dt.timedelta(days=1)


@dataclass
class ScriptedHandler(RecordingHandler):
    """Answers each recipient's successive attempts from a script: "250", a reply such as
    "451 4.3.0 later" (given at RCPT or DATA), or "drop" (the connection is cut)."""

    script: dict[str, list[str]] = field(default_factory=dict)
    pipelining: bool = False
    peers: set[tuple[str, int]] = field(default_factory=set)
    attempts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
        session.host_name = hostname
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    def _next(self, address: str) -> str:
        self.attempts[address] += 1
        replies = self.script.get(address, [])
        return replies.pop(0) if replies else "250"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        reply = self._next(address)
        if reply.startswith("rcpt:"):
            return reply[5:]
        envelope.rcpt_tos.append(address)
        envelope.__dict__.setdefault("planned", {})[address] = reply
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        reply = envelope.__dict__["planned"][envelope.rcpt_tos[0]]
        if reply == "drop":
            server.transport.abort()
            return "421 4.4.2 dropped"
        if reply != "250":
            return reply
        self.peers.add(session.peer[:2])
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def scripted() -> ScriptedHandler:
    return ScriptedHandler()


@pytest.fixture
def server_url(scripted: ScriptedHandler):
    port = free_port()
    controller = Controller(scripted, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    yield f"smtp://127.0.0.1:{port}"
    controller.stop()


@pytest.fixture
def readers(factory: sessionmaker[Session]) -> list[str]:
    add_categories(factory, "Pharmacology")
    add_summary(factory, "A study", ["pharmacology"], NOW - 2 * DAY)
    addresses = [f"reader{i}@example.org" for i in range(8)]
    for address in addresses:
        add_reader(factory, address, ["pharmacology"])
    return addresses


def send(settings: Settings, engine: Engine, url: str, connections: int = 1, **kw: object):
    transport = SmtpTransport(parse_smtp_url(url), connections=connections)
    try:
        return run_edition(settings, transport, now=NOW, engine=engine, sleep=lambda s: None, **kw)  # type: ignore[arg-type]
    finally:
        transport.close()


def ledger(factory: sessionmaker[Session]) -> dict[str, tuple[str, int, str | None]]:
    with factory() as session:
        rows = session.execute(
            select(Subscriber.email, Delivery.status, Delivery.attempts, Delivery.detail).join(
                Subscriber, Subscriber.id == Delivery.subscriber_id
            )
        ).all()
    return {address: (status, attempts, detail) for address, status, attempts, detail in rows}


@pytest.mark.parametrize("pipelining", [False, True])
def test_replies_are_classified_and_only_temporary_ones_retried(
    db_settings: Settings,
    engine: Engine,
    factory,
    readers: list[str],
    scripted: ScriptedHandler,
    server_url: str,
    pipelining: bool,
) -> None:
    scripted.pipelining = pipelining
    scripted.script.update(
        {
            "reader0@example.org": ["rcpt:451 4.3.0 greylisted, try later"],
            "reader1@example.org": ["421 4.7.0 too many messages, slow down"],
            "reader2@example.org": ["rcpt:550 5.1.1 no such mailbox"],
            "reader3@example.org": ["554 5.7.1 message refused"],
            "reader4@example.org": ["drop"],
        }
    )
    report = send(db_settings, engine, server_url)
    rows = ledger(factory)
    assert rows["reader0@example.org"][:2] == ("sent", 2)
    assert rows["reader1@example.org"][:2] == ("sent", 2)
    # the connection dropped after the end of data: the server may have taken it, so it
    # is not sent again in this run, and the report says it may arrive twice
    status, attempts, detail = rows["reader4@example.org"]
    assert (status, attempts) == ("deferred", 1) and detail and "outcome unknown" in detail
    assert scripted.attempts["reader4@example.org"] == 1
    assert report.possibly_duplicated == 1 and report.deferred == 1
    assert rows["reader2@example.org"] == ("failed", 1, "550 5.1.1 no such mailbox")
    assert rows["reader3@example.org"] == ("failed", 1, "554 5.7.1 message refused")
    assert scripted.attempts["reader2@example.org"] == 1  # 5xx never retried
    assert report.sent == 5 and report.failed == 2 and not report.complete
    received = [r for m in scripted.messages for r in m.recipients]
    refused = {"reader2@example.org", "reader3@example.org", "reader4@example.org"}
    assert sorted(received) == sorted(set(readers) - refused)
    # the next run sends it (with its original Message-ID) and completes the edition
    again = send(db_settings, engine, server_url)
    assert again.sent == 1 and again.complete
    assert ledger(factory)["reader4@example.org"][:2] == ("sent", 2)


def test_pipelined_bytes_arrive_exactly_as_built(
    db_settings: Settings,
    engine: Engine,
    readers: list[str],
    scripted: ScriptedHandler,
    server_url: str,
) -> None:
    scripted.pipelining = True
    memory = MemoryTransport()
    report = run_edition(db_settings, memory, now=NOW, engine=engine, dry_run=False)
    assert report.sent == 8
    # same edition content through the pipelined transport, into a fresh database is not
    # needed: compare what the server stored with a direct send of the same bytes
    transport = SmtpTransport(parse_smtp_url(server_url))
    for envelope, raw in memory.outbox:
        transport.send(envelope, raw)
    transport.close()
    assert [m.data for m in scripted.messages] == [raw for _, raw in memory.outbox]


def test_a_server_that_keeps_deferring_stops_the_run_and_it_resumes_later(
    db_settings: Settings,
    engine: Engine,
    factory,
    readers: list[str],
    scripted: ScriptedHandler,
    server_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import digest.delivery.sender

    monkeypatch.setattr(digest.delivery.sender, "DOWN_AFTER", 3)
    for address in readers:
        scripted.script[address] = ["rcpt:421 4.3.2 system not accepting messages"]
    with pytest.raises(TransportUnavailable, match="3 temporary failures in a row"):
        send(db_settings, engine, server_url)
    statuses = sorted(status for status, _, _ in ledger(factory).values())
    assert statuses == ["deferred"] * 3 + ["queued"] * 5  # the rest untouched
    scripted.script.clear()  # the server is back
    report = send(db_settings, engine, server_url)
    assert report.sent == 8 and report.complete
    assert sorted(r for m in scripted.messages for r in m.recipients) == sorted(readers)


def test_retry_failed_requeues_only_temporary_failures(
    db_settings: Settings,
    engine: Engine,
    factory,
    readers: list[str],
    scripted: ScriptedHandler,
    server_url: str,
) -> None:
    scripted.script["reader5@example.org"] = ["rcpt:550 5.1.1 no such mailbox"]
    send(db_settings, engine, server_url)
    with factory.begin() as session:  # as if reader6 had failed temporarily five times
        session.execute(
            update(Delivery)
            .where(
                Delivery.subscriber_id
                == select(Subscriber.id)
                .where(Subscriber.email_key == "reader6@example.org")
                .scalar_subquery()
            )
            .values(
                status=DeliveryStatus.FAILED.value,
                detail="gave up after 5 attempts: 451 4.3.0 later",
            )
        )
    scripted.messages.clear()
    report = send(db_settings, engine, server_url, retry_failed=True)
    assert report.requeued == 1 and report.sent == 1 and report.complete
    assert [m.recipients for m in scripted.messages] == [["reader6@example.org"]]
    assert ledger(factory)["reader5@example.org"][0] == "failed"


def test_several_connections_share_the_work_once(
    db_settings: Settings,
    engine: Engine,
    factory,
    readers: list[str],
    scripted: ScriptedHandler,
    server_url: str,
) -> None:
    report = send(db_settings, engine, server_url, connections=4)
    assert report.sent == 8
    assert sorted(r for m in scripted.messages for r in m.recipients) == sorted(readers)
    assert len(scripted.peers) > 1


@dataclass
class FewConnectionsHandler(RecordingHandler):
    """Takes at most ``most`` connections at once; greets any further one with a 421.
    Its first MAIL waits (up to 20 s) until a further connection has been refused, so that
    the test does not depend on how fast the first connections drain the batch."""

    most: int = 2
    open: int = 0
    refused: int = 0

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # type: ignore[no-untyped-def]
        for _ in range(200):
            if self.refused:
                break
            await asyncio.sleep(0.1)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"


class FewConnections(SMTP):
    async def _handle_client(self) -> None:
        handler = self.event_handler
        with handler.lock:
            handler.open += 1
            refused = handler.open > handler.most
            handler.refused += refused
        try:
            if refused:
                await self.push("421 4.7.0 too many connections from your address")
                assert self.transport is not None
                self.transport.close()
                return
            await super()._handle_client()
        finally:
            with handler.lock:
                handler.open -= 1


class FewConnectionsController(Controller):
    def factory(self) -> SMTP:
        return FewConnections(self.handler, **self.SMTP_kwargs)


def test_a_server_taking_fewer_connections_than_configured_gets_them_all_sent(
    db_settings: Settings, engine: Engine, factory, readers: list[str]
) -> None:
    handler = FewConnectionsHandler(most=2)
    port = free_port()
    controller = FewConnectionsController(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        transport = SmtpTransport(parse_smtp_url(f"smtp://127.0.0.1:{port}"), connections=4)
        try:
            report = run_edition(db_settings, transport, now=NOW, engine=engine)
        finally:
            transport.close()
    finally:
        controller.stop()
    assert handler.refused >= 1  # a third connection was tried and greeted with 421
    assert transport.most == 2  # and the two open ones were shared from then on
    assert report.sent == 8 and report.failed == 0 and report.complete
    assert sorted(r for m in handler.messages for r in m.recipients) == sorted(readers)
    assert {status for status, _, _ in ledger(factory).values()} == {"sent"}


def worker_edition(
    engine: Engine, factory, db_settings: Settings, server_url: str, **changes: object
) -> Settings:
    """200 readers of one summary (PostgreSQL only), and settings that send them through
    the test SMTP server slowly enough (20 a second, 10 s in all) for a worker process to start
    and help even on a loaded machine (at 80 a second, spawning took longer than the send)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("worker processes share an edition through PostgreSQL")
    add_categories(factory, "Pharmacology")
    add_summary(factory, "A study", ["pharmacology"], NOW - 2 * DAY)
    for i in range(200):
        add_reader(factory, f"w{i}@example.org", ["pharmacology"])
    return replace(
        db_settings,
        smtp=parse_smtp_url(server_url),
        transport="smtp",
        send_batch_size=20,
        rate_per_second=20.0,
        **changes,
    )


@pytest.mark.postgres
def test_two_worker_processes_claim_disjoint_batches(
    db_settings: Settings,
    engine: Engine,
    factory,
    scripted: ScriptedHandler,
    server_url: str,
) -> None:
    settings = worker_edition(engine, factory, db_settings, server_url, smtp_connections=1)
    progress: list[tuple[int, int, int]] = []
    report = send(settings, engine, server_url, workers=2, progress=lambda *p: progress.append(p))
    received = [r for m in scripted.messages for r in m.recipients]
    assert len(received) == len(set(received)) == 200
    assert len(scripted.peers) >= 2  # the main process and the worker both sent
    assert report.complete
    # the summary and the progress count what the worker sent too
    assert report.sent == 200 and 0 < report.sent_by_workers < 200
    assert progress[-1] == (200, 200, 0)
    assert set(status for status, _, _ in ledger(factory).values()) == {"sent"}


def test_rate_limiter_spaces_messages_exactly_and_backs_off() -> None:
    time = FakeTime()
    slept = time.slept
    limiter = RateLimiter(per_second=10, clock=time.clock, sleep=time.sleep, recover_after=2)
    for _ in range(3):
        limiter.acquire()
    assert slept == [0.1, 0.1]
    limiter.deferred()
    assert limiter.rate == 5
    limiter.acquire()
    assert slept[-1] == 0.1  # the slot already reserved at the old rate
    limiter.acquire()
    assert slept[-1] == 0.2
    for _ in range(4):
        limiter.accepted()
    assert limiter.rate == pytest.approx(6.05)


def test_without_a_limit_a_deferral_halves_the_measured_rate_until_it_recovers() -> None:
    time = FakeTime()
    slept = time.slept
    limiter = RateLimiter(clock=time.clock, sleep=time.sleep, recover_after=2)
    for _ in range(300):  # 200 messages a second, unlimited: nobody waits
        limiter.acquire()
        time.now += 0.005
    assert slept == [] and limiter.rate is None
    limiter.deferred()
    assert limiter.rate == pytest.approx(100, rel=0.02)
    limiter.acquire()
    limiter.acquire()
    assert slept[-1] == pytest.approx(0.01, rel=0.02)  # now spaced as at 100 a second
    accepted = 0
    while limiter.rate is not None:
        limiter.accepted()
        accepted += 1
        assert accepted < 100, limiter.rate
    # back by a tenth every 2 accepted: 100 -> 200 in 8 steps, then unlimited again
    assert accepted == 2 * 8 + 1
    slept.clear()
    for _ in range(10):
        limiter.acquire()
    assert slept == []


def test_rate_limiter_caps_an_hour() -> None:
    time = FakeTime()
    limiter = RateLimiter(per_hour=3, clock=time.clock, sleep=time.sleep)
    for _ in range(4):
        limiter.acquire()
    assert time.now == 3600  # the fourth waited for the first to leave the hour


def test_sent_messages_are_dkim_signed_and_bounce_to_a_verp_address(
    tmp_path, engine: Engine, factory, readers: list[str], smtp_server
) -> None:
    import dkim
    import nacl.signing

    from digest.mail.dkim import dns_records
    from digest.mail.verp import parse_verp
    from tests.conftest import make_settings
    from tests.test_dkim import dns_stub, ed25519_pem

    (tmp_path / "dkim.pem").write_bytes(ed25519_pem(bytes(nacl.signing.SigningKey.generate())))
    settings = make_settings(
        tmp_path,
        dkim_selector="sel",
        dkim_key_file="dkim.pem",
        dkim_algorithm="ed25519-sha256",
        bounce_address="bounces@example.org",
        verp_secret="a-long-random-verp-secret",
        database_url=engine.url.render_as_string(hide_password=False),
    )
    transport = SmtpTransport(parse_smtp_url(smtp_server.url))
    report = run_edition(settings, transport, now=NOW, engine=engine)
    transport.close()
    assert report.sent == len(readers)
    resolver = dns_stub(dns_records(settings))
    with factory() as session:
        ids = dict(
            session.execute(
                select(Subscriber.email, Delivery.id).join(
                    Subscriber, Subscriber.id == Delivery.subscriber_id
                )
            ).all()
        )
    for message in smtp_server.handler.messages:
        assert dkim.verify(message.data, dnsfunc=resolver)
        assert message.sender.startswith("bounces+")
        assert (
            parse_verp(message.sender, b"a-long-random-verp-secret") == ids[message.recipients[0]]
        )


@pytest.mark.postgres
def test_workers_send_through_the_transport_of_the_run(
    db_settings: Settings,
    engine: Engine,
    factory,
    scripted: ScriptedHandler,
    server_url: str,
    tmp_path,
) -> None:
    """``digest send --transport file --workers 2`` with SMTP configured: nothing by SMTP."""
    outbox = tmp_path / "outbox"
    settings = worker_edition(engine, factory, db_settings, server_url, outbox_dir=outbox)
    report = run_edition(
        settings, FileTransport(settings.outbox_dir), now=NOW, engine=engine, workers=2
    )
    assert scripted.messages == []
    files = list((tmp_path / "outbox" / report.key).glob("*.eml"))
    assert len(files) == 200
    assert report.sent == 200 and report.sent_by_workers > 0 and report.complete
    # one variant, one template: the worker sent what the run checked (its MIME boundary,
    # random per build), not a build of its own
    boundaries = {re.search(rb'boundary="([^"]+)"', f.read_bytes()).group(1) for f in files}  # type: ignore[union-attr]
    assert len(boundaries) == 1


@pytest.mark.postgres
def test_rows_a_running_worker_holds_are_left_to_it_not_sent_again(
    db_settings: Settings, engine: Engine, factory, readers: list[str]
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("worker processes share an edition through PostgreSQL")
    first = run_edition(db_settings, MemoryTransport(), now=NOW, engine=engine)
    assert first.sent == 8
    held = readers[:3]
    with factory.begin() as session:  # a worker has claimed these and is sending them
        session.execute(
            update(Delivery)
            .where(
                Delivery.subscriber_id.in_(
                    select(Subscriber.id).where(Subscriber.email_key.in_(held))
                )
            )
            .values(status=DeliveryStatus.SENDING.value)
        )
    with working_on(engine, first.key):  # ... and is alive
        memory = MemoryTransport()
        again = run_edition(db_settings, memory, now=NOW, engine=engine)
        assert memory.outbox == [] and again.held_by_workers == 3 and not again.complete
        assert sorted(a for a, (s, _, _) in ledger(factory).items() if s == "sending") == held
    # the worker is gone without recording them (killed): the next run sends them again
    # (no journal here knows them: it waits three heartbeats of a 1 s lease, then counts them)
    memory = MemoryTransport()
    short = replace(db_settings, send_lease_seconds=1.0)
    last = run_edition(short, memory, now=NOW, engine=engine)
    assert sorted(e.recipient for e, _ in memory.outbox) == held
    assert last.resent_after_crash == last.possibly_duplicated == 3
    assert last.held_by_workers == 0 and last.complete


class Interrupted(BaseException):
    """As if the process were killed: nothing below ``run_edition`` catches it."""


@dataclass
class DyingTransport(MemoryTransport):
    """Takes messages until the ``dies_at``-th, which it never finishes."""

    dies_at: int = 0

    def send(self, envelope, message: bytes) -> str:  # type: ignore[no-untyped-def]
        if len(self.outbox) + 1 == self.dies_at:
            raise Interrupted
        return super().send(envelope, message)


def test_outcomes_are_recorded_every_hundred_messages_within_a_batch(
    db_settings: Settings, engine: Engine, factory
) -> None:
    import digest.delivery.sender

    add_categories(factory, "Pharmacology")
    add_summary(factory, "A study", ["pharmacology"], NOW - 2 * DAY)
    for i in range(300):
        add_reader(factory, f"c{i:03d}@example.org", ["pharmacology"])
    settings = replace(db_settings, send_batch_size=500)
    dying = DyingTransport(dies_at=251)
    with pytest.raises(Interrupted):
        run_edition(settings, dying, now=NOW, engine=engine)
    assert len(dying.outbox) == 250
    statuses = [status for status, _, _ in ledger(factory).values()]
    every = digest.delivery.sender.RECORD_EVERY
    # what was recorded before the crash stays sent; only the rest of the batch is in flight
    assert statuses.count("sent") == 250 // every * every
    assert statuses.count("sending") == 300 - 250 // every * every

    # the journal knew the other 50 replies: recorded, not sent again; the 251st was on
    # the wire without a reply: sent again, and counted as possibly reaching its reader twice
    memory = MemoryTransport()
    report = run_edition(settings, memory, now=NOW, engine=engine)
    assert report.recorded_from_journal == 250 % every
    assert report.possibly_duplicated == report.resent_after_crash == 1
    assert report.sent == 300 - 250
    got = sorted(e.recipient for e, _ in dying.outbox + memory.outbox)
    assert len(set(got)) == len(got) == 300  # this transport never took the 251st: no twice
    assert {status for status, _, _ in ledger(factory).values()} == {"sent"}


def test_the_rate_recovers_within_seconds_once_deferrals_stop() -> None:
    time = FakeTime()
    limiter = RateLimiter(per_second=1000, clock=time.clock, sleep=time.sleep)
    for _ in range(20):  # a burst of 421s takes it down to the floor
        limiter.deferred()
    assert limiter.rate == limiter.floor == 0.5 and limiter.lowered == 20
    while limiter.rate < 1000:  # then every message is accepted
        limiter.acquire()
        limiter.accepted()
        assert time.now < 15, limiter.rate
    # at the floor, 50 accepted messages alone would take 100 s for each tenth gained
    assert time.now < 15
