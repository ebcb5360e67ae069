"""run_edition end to end: a real SMTP server on loopback, the ledger, re-runs and failures."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from dataclasses import replace

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings, parse_smtp_url
from digest.edition.run import run_edition
from digest.errors import TransportUnavailable
from digest.mail.transports import MemoryTransport, SmtpTransport
from digest.planning.plan import (
    get_or_create_edition,
    iter_readers,
    plan_edition,
    planned_between,
)
from digest.store.models import Delivery, DeliveryStatus, Edition, EditionStatus
from subscribers import service
from tests.conftest import NOW, SmtpServer, add_categories, add_reader, add_summary, free_port

DAY = dt.timedelta(days=1)


@pytest.fixture
def week(factory: sessionmaker[Session]) -> None:
    """Three categories, five summaries this week, one last month, and five readers."""
    add_categories(factory, "Pharmacology", "Neurology", "Rehabilitation")
    add_summary(factory, "Riluzole after acute injury", ["pharmacology"], NOW - 1 * DAY)
    add_summary(
        factory, "Minocycline and inflammation", ["pharmacology", "neurology"], NOW - 2 * DAY
    )
    add_summary(factory, "Nerve transfers for hand function", ["neurology"], NOW - 3 * DAY)
    add_summary(factory, "Robotic gait training at home", ["rehabilitation"], NOW - 4 * DAY)
    add_summary(factory, "Epidural stimulation and walking", ["neurology"], NOW - 5 * DAY)
    add_summary(factory, "An old study", ["pharmacology"], NOW - 40 * DAY)
    add_reader(factory, "pharma@example.org", ["pharmacology"], name="Ada Lovelace")
    add_reader(factory, "both@example.org", ["pharmacology", "neurology"], name="Zoë Müller")
    add_reader(factory, "both2@example.org", ["Neurology", "PHARMACOLOGY"])
    add_reader(factory, "rehab@example.org", ["rehabilitation"])
    add_reader(factory, "pending@example.org", ["pharmacology"], confirmed=False)
    gone = add_reader(factory, "gone@example.org", ["neurology"])
    with factory.begin() as session:
        subscriber = session.merge(gone)
        service.unsubscribe(session, subscriber, now=NOW - DAY)


def smtp(server: SmtpServer) -> SmtpTransport:
    return SmtpTransport(parse_smtp_url(server.url))


def ledger(factory: sessionmaker[Session]) -> dict[str, str]:
    from subscribers.models import Subscriber

    with factory() as session:
        rows = session.execute(
            select(Subscriber.email, Delivery.status).join(
                Subscriber, Subscriber.id == Delivery.subscriber_id
            )
        ).all()
        return {address: status for address, status in rows}


@pytest.mark.usefixtures("week")
def test_full_edition_reaches_the_smtp_server_once(
    db_settings: Settings, engine, factory, smtp_server: SmtpServer
) -> None:
    with smtp(smtp_server) as transport:
        report = run_edition(db_settings, transport, now=NOW, engine=engine)
    got = smtp_server.handler.by_recipient()
    assert sorted(got) == [
        "both2@example.org",
        "both@example.org",
        "pharma@example.org",
        "rehab@example.org",
    ]
    assert report.sent == 4 and report.complete and report.key == "2026-W48"
    assert len(report.variants) == 3  # both@ and both2@ share one digest
    assert ledger(factory) == {e: "sent" for e in got}

    msg = email.message_from_bytes(got["both@example.org"].data, policy=email.policy.default)
    assert msg["Subject"] == "4 new summaries in Neurology and Pharmacology"
    assert msg["To"].addresses[0].display_name == "Zoë Müller"
    text = msg.get_body(("plain",)).get_content()
    # in two of the reader's categories, shown once
    assert text.count("Read the summary: https://example.org/research/minocycline-and-") == 1
    assert "Riluzole after acute injury" in text and "An old study" not in text

    # a second run delivers nothing
    with smtp(smtp_server) as transport:
        again = run_edition(db_settings, transport, now=NOW + DAY, engine=engine)
    assert again.sent == 0 and again.previously_sent == 4 and not again.variants
    assert len(smtp_server.handler.messages) == 4


@pytest.mark.usefixtures("week")
def test_next_week_brings_only_what_was_published_since(
    db_settings: Settings, engine, factory
) -> None:
    memory = MemoryTransport()
    run_edition(db_settings, memory, now=NOW, engine=engine)
    # published after the edition was created: belongs to next week
    add_summary(factory, "Bladder care after injury", ["pharmacology"], NOW + dt.timedelta(hours=1))
    same_week = run_edition(db_settings, memory, now=NOW + 2 * DAY, engine=engine)
    assert same_week.sent == 0
    next_week = MemoryTransport()
    report = run_edition(db_settings, next_week, now=NOW + 7 * DAY, engine=engine)
    assert report.key == "2026-W49"
    recipients = sorted(env.recipient for env, _ in next_week.outbox)
    assert recipients == ["both2@example.org", "both@example.org", "pharma@example.org"]
    for _, raw in next_week.outbox:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert msg["Subject"] == "1 new summary in Pharmacology"
        assert "Riluzole" not in msg.get_body(("plain",)).get_content()


@pytest.mark.usefixtures("week")
def test_smtp_server_refusing_connections_stops_with_nothing_marked_sent(
    db_settings: Settings, engine, factory
) -> None:
    down = SmtpTransport(parse_smtp_url(f"smtp://127.0.0.1:{free_port()}?timeout=2"))
    with pytest.raises(TransportUnavailable, match=r"cannot connect to SMTP server 127\.0\.0\.1"):
        run_edition(db_settings, down, now=NOW, engine=engine)
    assert set(ledger(factory).values()) == {"queued"}


@pytest.mark.usefixtures("week")
def test_permanent_refusal_is_recorded_and_not_retried(
    db_settings: Settings, engine, factory, smtp_server: SmtpServer
) -> None:
    smtp_server.handler.refuse["rehab@example.org"] = "550 5.1.1 no such mailbox"
    with smtp(smtp_server) as transport:
        report = run_edition(db_settings, transport, now=NOW, engine=engine, sleep=lambda s: None)
    assert report.failed == 1 and report.sent == 3
    with factory() as session:
        row = session.scalar(select(Delivery).where(Delivery.status == "failed"))
        assert row is not None and row.detail == "550 5.1.1 no such mailbox"
        assert row.attempts == 1
    with smtp(smtp_server) as transport:
        again = run_edition(db_settings, transport, now=NOW, engine=engine)
    assert again.sent == 0 and again.failed == 0


@pytest.mark.usefixtures("week")
def test_temporary_refusal_is_retried_within_the_run(
    db_settings: Settings, engine, factory, smtp_server: SmtpServer
) -> None:
    smtp_server.handler.refuse["rehab@example.org"] = "451 4.3.0 try again later"
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        smtp_server.handler.refuse.clear()  # the server recovers while we wait

    settings = replace(db_settings, retry_base_seconds=2.0)
    with smtp(smtp_server) as transport:
        report = run_edition(settings, transport, now=NOW, engine=engine, sleep=sleep)
    assert len(waits) == 1 and 1.0 <= waits[0] <= 3.0  # back-off with jitter
    assert report.sent == 4 and report.deferred == 0 and report.complete
    assert ledger(factory)["rehab@example.org"] == "sent"


@pytest.mark.usefixtures("week")
def test_reader_who_unsubscribes_after_planning_is_skipped(
    db_settings: Settings, engine, factory, smtp_server: SmtpServer
) -> None:
    down = SmtpTransport(parse_smtp_url(f"smtp://127.0.0.1:{free_port()}?timeout=2"))
    with pytest.raises(TransportUnavailable):
        run_edition(db_settings, down, now=NOW, engine=engine)  # plans, sends nothing
    with factory.begin() as session:
        subscriber = service.find_by_email(session, "rehab@example.org")
        assert subscriber is not None
        service.unsubscribe(session, subscriber, now=NOW)
    with smtp(smtp_server) as transport:
        report = run_edition(db_settings, transport, now=NOW, engine=engine)
    assert "rehab@example.org" not in smtp_server.handler.by_recipient()
    assert report.skipped == 1 and report.sent == 3
    assert ledger(factory)["rehab@example.org"] == "skipped"


@pytest.mark.usefixtures("week")
def test_crash_while_sending_resends_only_in_flight_rows_with_same_message_id(
    db_settings: Settings, engine, factory
) -> None:
    first = MemoryTransport()
    run_edition(db_settings, first, now=NOW, engine=engine)
    with factory.begin() as session:  # pretend the process died with two rows in flight
        rows = session.scalars(select(Delivery).order_by(Delivery.id).limit(2)).all()
        for row in rows:
            row.status = DeliveryStatus.SENDING.value
        in_flight = {row.message_id for row in rows}
        edition = session.scalar(select(Edition))
        assert edition is not None
        edition.status = EditionStatus.OPEN.value
    again = MemoryTransport()
    # no journal knows those rows (as if sent from another machine): the run waits three
    # heartbeats (a tenth of a 1 s lease here) for a sender that may live, then counts them
    short = replace(db_settings, send_lease_seconds=1.0)
    report = run_edition(short, again, now=NOW, engine=engine)
    assert report.resent_after_crash == report.possibly_duplicated == 2 and report.sent == 2
    resent = {
        email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"]
        for _, raw in again.outbox
    }
    assert resent == in_flight
    assert set(ledger(factory).values()) == {"sent"}


@pytest.mark.usefixtures("week")
def test_a_plan_interrupted_midway_is_completed_by_the_next_run(
    db_settings: Settings, engine, factory
) -> None:
    edition, _ = get_or_create_edition(factory, "2026-W48", now=NOW)
    assert edition is not None
    assert plan_edition(factory, db_settings, edition, now=NOW).queued == 4
    with factory.begin() as session:  # as if the plan had died after its first readers
        last_two = session.scalars(select(Delivery.id).order_by(Delivery.id.desc()).limit(2))
        session.execute(delete(Delivery).where(Delivery.id.in_(list(last_two))))
    kept = set(ledger(factory))
    assert plan_edition(factory, db_settings, edition, now=NOW).queued == 2
    assert plan_edition(factory, db_settings, edition, now=NOW).queued == 0
    memory = MemoryTransport()
    report = run_edition(db_settings, memory, now=NOW, key="2026-W48", engine=engine)
    assert report.sent == 4 and len(kept) == 2
    assert sorted(envelope.recipient for envelope, _ in memory.outbox) == sorted(ledger(factory))
    assert set(ledger(factory).values()) == {"sent"}


@pytest.mark.usefixtures("week")
@pytest.mark.parametrize("batch", [1, 2, 3, 5000])
def test_resumed_plan_reads_exactly_the_readers_not_yet_planned_in_any_batch_size(
    db_settings: Settings, factory, batch: int
) -> None:
    """Which readers are planned already is read per batch of readers, by a range of ids:
    none is missed or read twice at a batch's edges, and rows of another edition do not
    count."""
    earlier, _ = get_or_create_edition(factory, "2026-W47", now=NOW - dt.timedelta(days=7))
    edition, _ = get_or_create_edition(factory, "2026-W48", now=NOW)
    assert earlier is not None and edition is not None
    assert plan_edition(factory, db_settings, edition, now=NOW).queued == 4
    with factory.begin() as session:  # as if the plan had died: readers 2 and 4 not planned
        rows = session.execute(select(Delivery.id, Delivery.subscriber_id).order_by("id"))
        planned = [(row_id, reader) for row_id, reader in rows]
        dropped = [planned[1], planned[3]]
        session.execute(delete(Delivery).where(Delivery.id.in_([d for d, _ in dropped])))
        for number, (_, reader) in enumerate(dropped):  # sent in the edition before
            row = Delivery(
                edition_id=earlier.id,
                subscriber_id=reader,
                variant_id=session.scalar(select(Delivery.variant_id).limit(1)),
                status=DeliveryStatus.QUEUED.value,
                message_id=f"<earlier.{number}@example.org>",
                created_at=NOW,
                updated_at=NOW,
            )
            session.add(row)
    with factory() as session:
        seen = [
            r.subscriber_id for part in iter_readers(session, edition, batch=batch) for r in part
        ]
        assert planned_between(session, edition.id, 0, 10**9) == {planned[0][1], planned[2][1]}
        assert planned_between(session, None, 0, 10**9) == set()
    assert seen == [reader for _, reader in dropped]


@pytest.mark.usefixtures("week")
def test_dry_run_counts_per_variant_and_writes_nothing(db_settings: Settings, engine, factory):
    memory = MemoryTransport()
    report = run_edition(db_settings, memory, now=NOW, engine=engine, dry_run=True)
    assert memory.outbox == []
    assert sorted(v.recipients for v in report.variants) == [1, 1, 2]
    assert {v.subject for v in report.variants} == {
        "4 new summaries in Neurology and Pharmacology",
        "2 new summaries in Pharmacology",
        "1 new summary in Rehabilitation",
    }
    with factory() as session:
        assert session.scalar(select(Edition)) is None
        assert session.scalar(select(Delivery)) is None


def test_nobody_gets_an_empty_digest(db_settings: Settings, engine, factory) -> None:
    add_categories(factory, "Pharmacology", "Neurology")
    add_summary(factory, "Only neurology", ["neurology"], NOW - DAY)
    add_reader(factory, "pharma@example.org", ["pharmacology"])
    memory = MemoryTransport()
    report = run_edition(db_settings, memory, now=NOW, engine=engine)
    assert memory.outbox == [] and report.nothing_new == 1


def test_card_cap_links_the_rest(db_settings: Settings, engine, factory) -> None:
    add_categories(factory, "Pharmacology")
    for i in range(18):
        add_summary(factory, f"Study number {i}", ["pharmacology"], NOW - dt.timedelta(hours=i + 1))
    add_reader(factory, "pharma@example.org", ["pharmacology"])
    memory = MemoryTransport()
    run_edition(replace(db_settings, card_cap=15), memory, now=NOW, engine=engine)
    msg = email.message_from_bytes(memory.outbox[0][1], policy=email.policy.default)
    html = msg.get_body(("html",)).get_content()
    assert html.count("<h3") == 15  # one card, one heading
    assert all(f"Study number {i}</a>" in html for i in range(15))
    assert "3 more new summaries" in html and "Study number 17" not in html
    assert "18 new summaries" in msg["Subject"]
