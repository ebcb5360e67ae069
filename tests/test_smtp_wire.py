"""SMTP on the wire: replies attributed to the right recipient under pipelining across
messages, outcomes that stay unknown (no reply to the end of data), the journal's moments,
a lost send lock, and per-recipient deferrals that never slow the others. Always through a
real SMTP server (aiosmtpd) and a real database."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections import Counter
from dataclasses import dataclass, field, replace

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session, sessionmaker

import digest.edition.run
from digest.config import Settings, parse_smtp_url
from digest.delivery import ledger as ledger_module
from digest.delivery.ratelimit import RateLimiter
from digest.delivery.sender import Sender
from digest.edition.run import run_edition
from digest.errors import ConfigError, SendLockLost
from digest.mail.transports import MemoryTransport, SmtpTransport
from digest.mail.verp import parse_verp
from digest.store.db import transaction
from digest.store.models import Delivery
from subscribers.instance import token_key
from subscribers.models import Status, Subscriber, Subscription
from subscribers.suppression import email_hash, email_salt
from subscribers.tokens import token_digest
from tests.conftest import NOW, RecordingHandler, add_categories, add_reader, add_summary, free_port
from tests.test_sending import DAY, ledger

VERP_SECRET = "a-long-random-verp-secret"


@dataclass
class WireHandler(RecordingHandler):
    """A server that can refuse or misbehave at every step, per recipient, once each:

    * ``mail``: reply to the MAIL of this recipient's message (known from its VERP sender);
    * ``rcpt``: reply to its RCPT, "drop" (the connection is cut before its end of data) or
      "slow" (the reply comes after ``stall`` seconds);
    * ``data``: reply to the DATA command (instead of 354);
    * ``end``: reply to its end of data, "drop" (cut: outcome unknown, not taken) or
      "stall" (the message is taken, the reply comes after ``stall`` seconds).
    """

    mail: dict[str, str] = field(default_factory=dict)
    rcpt: dict[str, str] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)
    end: dict[str, str] = field(default_factory=dict)
    pipelining: bool = True
    stall: float = 3.5
    owner: dict[int, str] = field(default_factory=dict)  # delivery id -> address
    rcpts: Counter[str] = field(default_factory=Counter)
    taken: Counter[str] = field(default_factory=Counter)  # messages stored per recipient

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
        session.host_name = hostname
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # type: ignore[no-untyped-def]
        delivery_id = parse_verp(address, VERP_SECRET.encode())
        reply = self.mail.pop(self.owner.get(delivery_id or 0, ""), None)
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        self.rcpts[address] += 1
        reply = self.rcpt.pop(address, None)
        if reply == "slow":  # no reply within the client's timeout: it gives up on it
            await asyncio.sleep(self.stall)
            reply = None
        if reply == "drop":
            server.transport.abort()
            return "421 4.4.2 dropped"
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        reply = self.end.pop(envelope.rcpt_tos[0], None)
        if reply == "drop":
            server.transport.abort()
            return "421 4.4.2 dropped"
        if reply and reply != "stall":
            return reply
        with self.lock:
            self.taken.update(envelope.rcpt_tos)
        stored = await super().handle_DATA(server, session, envelope)
        if reply == "stall":
            await asyncio.sleep(self.stall)
        return stored


class WireSMTP(SMTP):
    async def smtp_DATA(self, arg: str) -> None:
        handler = self.event_handler
        if self.envelope is not None and self.envelope.rcpt_tos:
            reply = handler.data.pop(self.envelope.rcpt_tos[0], None)
            if reply:
                await self.push(reply)
                return
        await super().smtp_DATA(arg)


class WireController(Controller):
    def factory(self) -> SMTP:
        return WireSMTP(self.handler, **self.SMTP_kwargs)


@pytest.fixture
def wire():
    handler = WireHandler()
    port = free_port()
    controller = WireController(handler, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    yield handler, f"smtp://127.0.0.1:{port}"
    controller.stop()


def verp_settings(db_settings: Settings) -> Settings:
    return replace(db_settings, bounce_address="bounces@example.org", verp_secret=VERP_SECRET)


def owners(factory: sessionmaker[Session]) -> dict[int, str]:
    with factory() as session:
        rows = session.execute(
            select(Delivery.id, Subscriber.email).join(
                Subscriber, Subscriber.id == Delivery.subscriber_id
            )
        ).all()
    return {delivery_id: address for delivery_id, address in rows}


def run(settings: Settings, engine: Engine, url: str, connections: int = 1, **kw: object):
    transport = SmtpTransport(parse_smtp_url(url), connections=connections)
    try:
        return run_edition(settings, transport, now=NOW, engine=engine, sleep=lambda s: None, **kw)  # type: ignore[arg-type]
    finally:
        transport.close()


def plan(settings: Settings, engine: Engine) -> None:
    """Plan the edition and stop before the first message (to know its rows' ids)."""
    run_edition(settings, MemoryTransport(), now=NOW, engine=engine, should_stop=lambda: True)


@pytest.fixture
def twelve(factory: sessionmaker[Session]) -> list[str]:
    add_categories(factory, "Pharmacology")
    add_summary(factory, "A study", ["pharmacology"], NOW - 2 * DAY)
    addresses = [f"r{i:02d}@example.org" for i in range(12)]
    for address in addresses:
        add_reader(factory, address, ["pharmacology"])
    return addresses


@pytest.mark.parametrize("pipelining", [True, False])
def test_every_refusal_is_attributed_to_its_own_recipient(
    db_settings: Settings,
    engine: Engine,
    factory: sessionmaker[Session],
    twelve: list[str],
    wire: tuple[WireHandler, str],
    pipelining: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler, url = wire
    handler.pipelining = pipelining
    settings = verp_settings(db_settings)
    plan(settings, engine)
    handler.owner.update(owners(factory))
    r = twelve
    handler.mail[r[1]] = "451 4.3.2 sender queue full for this recipient"
    handler.rcpt[r[2]] = "450 4.2.0 greylisted, come back later"
    handler.rcpt[r[3]] = "550 5.1.1 no such mailbox"
    handler.rcpt[r[4]] = "drop"  # before its end of data: sent again at once
    handler.data[r[5]] = "452 4.2.2 mailbox full"
    handler.data[r[6]] = "554 5.7.1 not for this recipient"
    handler.end[r[7]] = "421 4.7.0 too many messages, slow down"
    handler.end[r[8]] = "554 5.7.1 message refused"
    handler.end[r[9]] = "drop"  # after its end of data: outcome unknown
    handler.end[r[10]] = "stall"  # taken, but the reply comes after data_timeout
    handler.rcpt[r[0]] = "slow"  # no reply in time, before its end of data: again at once
    limiters: list[RateLimiter] = []
    real = digest.edition.run.limiter_for
    monkeypatch.setattr(
        digest.edition.run,
        "limiter_for",
        lambda *a: limiters.append(real(*a)) or limiters[-1],
    )

    report = run(settings, engine, url + "?data_timeout=1&timeout=2")

    rows = ledger(factory)
    status = {address: row[0] for address, row in rows.items()}
    for address in (r[0], r[1], r[2], r[4], r[5], r[7], r[11]):
        assert status[address] == "sent", (address, rows[address])
    assert rows[r[1]][1] == rows[r[2]][1] == rows[r[5]][1] == rows[r[7]][1] == 2  # retried
    for address in (r[0], r[4]):  # again at once on a new connection, same attempt
        assert rows[address][1] == 1 and handler.rcpts[address] == 2
    assert rows[r[3]] == ("failed", 1, "550 5.1.1 no such mailbox")
    assert rows[r[6]] == ("failed", 1, "554 5.7.1 not for this recipient")
    assert rows[r[8]] == ("failed", 1, "554 5.7.1 message refused")
    for address in (r[9], r[10]):  # not sent again in this run
        state, attempts, detail = rows[address]
        assert (state, attempts) == ("deferred", 1) and "outcome unknown" in (detail or "")
    assert report.possibly_duplicated == 2 and report.deferred == 2 and not report.complete
    # what each reader got: once, or not at all
    expected = Counter({a: 1 for a in r if a not in (r[3], r[6], r[8], r[9])})
    assert handler.taken == expected
    # only the 421 lowered the rate, not the greylisting, the full mailbox or the queue
    assert limiters[0].lowered == 1

    again = run(settings, engine, url)
    assert again.sent == 2 and again.complete
    assert handler.taken[r[10]] == 2  # the stalled one arrived twice, as reported
    assert sum(n - 1 for n in handler.taken.values()) <= report.possibly_duplicated


def test_data_timeout_is_an_smtp_url_option() -> None:
    assert parse_smtp_url("smtp://127.0.0.1:25").data_timeout == 600
    assert parse_smtp_url("smtp://127.0.0.1:25?data_timeout=90&timeout=5").data_timeout == 90
    with pytest.raises(ConfigError, match="data_timeout must be a positive number of seconds"):
        parse_smtp_url("smtp://127.0.0.1:25?data_timeout=soon")
    with pytest.raises(ConfigError, match="did you mean data_timeout"):
        parse_smtp_url("smtp://127.0.0.1:25?data_timout=5")


@dataclass
class Journal:
    """A journal that checks, at each call, what the server has stored so far."""

    handler: WireHandler
    owner: dict[int, str]
    calls: list[tuple[str, int, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_wire(self, delivery_id: int) -> None:
        with self.lock:
            stored = self.handler.taken[self.owner[delivery_id]] > 0
            self.calls.append(("on_wire", delivery_id, stored))

    def outcome(self, delivery_id: int, row: object) -> None:
        with self.lock:
            stored = self.handler.taken[self.owner[delivery_id]] > 0
            self.calls.append(("outcome", delivery_id, stored))

    def flushed(self) -> None:
        with self.lock:
            self.calls.append(("flushed", 0, False))


def sender_for(
    settings: Settings,
    engine: Engine,
    factory: sessionmaker[Session],
    transport: SmtpTransport,
    **kw: object,
) -> tuple[Sender, int]:
    """A Sender for the planned edition, as a run builds it."""
    from digest.edition.passes import prepare
    from digest.planning.plan import EditionRef
    from digest.store.models import Edition

    with factory() as session:
        edition = session.scalars(select(Edition)).one()
        ref = EditionRef(edition.id, edition.key, edition.cutoff, edition.status)
    outbound, _ = prepare(factory, settings, ref, now=NOW)
    return Sender(factory, transport, outbound, **kw), edition.id  # type: ignore[arg-type]


@pytest.mark.parametrize("connections", [1, 3])
def test_the_journal_hears_of_each_message_just_before_its_end_of_data(
    db_settings: Settings,
    engine: Engine,
    factory: sessionmaker[Session],
    twelve: list[str],
    wire: tuple[WireHandler, str],
    connections: int,
) -> None:
    handler, url = wire
    settings = verp_settings(db_settings)
    plan(settings, engine)
    owner = owners(factory)
    journal = Journal(handler, owner)
    transport = SmtpTransport(parse_smtp_url(url), connections=connections)
    sender, edition_id = sender_for(settings, engine, factory, transport, journal=journal)
    claims = ledger_module.claim(factory, edition_id, 0, 100)
    assert claims is not None and sender.send_batch(claims) == 12
    transport.close()
    on_wire = [(i, stored) for kind, i, stored in journal.calls if kind == "on_wire"]
    outcomes = [(i, stored) for kind, i, stored in journal.calls if kind == "outcome"]
    assert sorted(i for i, _ in on_wire) == sorted(i for i, _ in outcomes) == sorted(owner)
    assert not any(stored for _, stored in on_wire)  # nothing was taken before on_wire
    assert all(stored for _, stored in outcomes)  # and everything once its reply came
    for delivery_id in owner:
        kinds = [kind for kind, i, _ in journal.calls if i == delivery_id]
        assert kinds == ["on_wire", "outcome"]
    assert journal.calls[-1][0] == "flushed"  # after the last outcome, it was committed


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_lost_send_lock_stops_before_the_next_message(
    db_settings: Settings,
    engine: Engine,
    factory: sessionmaker[Session],
    twelve: list[str],
    wire: tuple[WireHandler, str],
    pipelining: bool,
) -> None:
    handler, url = wire
    handler.pipelining = pipelining
    settings = verp_settings(db_settings)
    plan(settings, engine)
    asked = []

    def holds() -> bool:
        asked.append(1)
        return len(asked) <= 5  # the lock is lost after five messages

    transport = SmtpTransport(parse_smtp_url(url))
    sender, edition_id = sender_for(settings, engine, factory, transport, holds=holds)
    claims = ledger_module.claim(factory, edition_id, 0, 100)
    assert claims is not None
    with pytest.raises(SendLockLost, match=r"lost the send lock.*nothing more was sent"):
        sender.send_batch(claims)
    transport.close()
    # five messages were handed over; with pipelining the fifth's content was still to
    # go (its DATA accepted): it is abandoned, not finished, and its row given back
    went = 4 if pipelining else 5
    assert sum(handler.taken.values()) == went
    states = Counter(row[0] for row in ledger(factory).values())
    assert states == {"sent": went, "queued": 12 - went}  # recorded; the rest given back
    assert sorted(a for a, row in ledger(factory).items() if row[0] == "sent") == sorted(
        handler.taken
    )


def bulk_readers(factory: sessionmaker[Session], engine: Engine, count: int) -> list[str]:
    """``count`` confirmed readers of one summary's category, inserted in bulk."""
    add_categories(factory, "Pharmacology")
    add_summary(factory, "A study", ["pharmacology"], NOW - 2 * DAY)
    first = add_reader(factory, "first@example.org", ["pharmacology"])
    with transaction(factory) as session:
        salt, key = email_salt(session), token_key(session)
        category = session.scalars(
            select(Subscription.category_id).where(Subscription.subscriber_id == first.id)
        ).one()
    joined = NOW - 2 * DAY
    addresses = [f"g{i:05d}@example.org" for i in range(count - 1)]
    rows, subscriptions = [], []
    for n, address in enumerate(addresses, start=first.id + 1):
        token = secrets.token_urlsafe(32)
        rows.append(
            {
                "id": n,
                "email": address,
                "email_key": address,
                "email_hash": email_hash(salt, address),
                "status": Status.ACTIVE.value,
                "token": token,
                "token_hash": token_digest(key, token),
                "created_at": joined,
                "confirmed_at": joined,
                "active_since": joined,
                "frequency": "weekly",
            }
        )
        subscriptions.append({"subscriber_id": n, "category_id": category})
    with engine.begin() as conn:
        conn.execute(insert(Subscriber.__table__), rows)
        conn.execute(insert(Subscription.__table__), subscriptions)
    return ["first@example.org", *addresses]


@dataclass
class GreylistSink:
    """A fast aiosmtpd sink that greylists some recipients: 451 at their first RCPT."""

    greylisted: set[str]
    seen: set[str] = field(default_factory=set)
    taken: Counter[str] = field(default_factory=Counter)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
        session.host_name = hostname
        responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if address in self.greylisted and address not in self.seen:
            self.seen.add(address)
            return "451 4.7.1 greylisted, please try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.taken.update(envelope.rcpt_tos)
        return "250 OK"


def test_greylisted_readers_never_slow_the_others(
    db_settings: Settings,
    engine: Engine,
    factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("the limiter is the same on both databases; 20,000 readers once is enough")
    readers = bulk_readers(factory, engine, 20_000)
    greylisted = set(readers[::37])
    sink = GreylistSink(greylisted)
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    limiters: list[RateLimiter] = []
    real = digest.edition.run.limiter_for
    monkeypatch.setattr(
        digest.edition.run,
        "limiter_for",
        lambda *a: limiters.append(real(*a)) or limiters[-1],
    )
    passes: list[int] = []
    try:
        report = run(
            replace(db_settings, send_batch_size=500),
            engine,
            f"smtp://127.0.0.1:{port}",
            connections=2,
            progress=lambda done, total, failed: passes.append(done),
        )
    finally:
        controller.stop()
    assert len(greylisted) == 541
    # everyone got it once; the greylisted on their second attempt, in the same run
    assert sink.taken == Counter(set(readers)) and report.sent == 20_000 and report.complete
    assert limiters[0].lowered == 0 and limiters[0].rate is None  # never slowed down
    rows = ledger(factory)
    assert {a for a, row in rows.items() if row[1] == 2} == greylisted
