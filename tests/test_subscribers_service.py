"""The subscriber service on SQLite and PostgreSQL: double opt-in, consent, categories,
suppression, erasure and tokens, seen through stored rows and real sends."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings
from digest.edition.audience import ERASED, erase_subscriber
from digest.edition.run import run_edition
from digest.errors import SubscriberError
from digest.mail.transports import MemoryTransport
from digest.store import schema
from digest.store.models import Delivery
from subscribers import service, suppression
from subscribers.models import Confirmation, Consent, Subscriber, Suppression
from subscribers.tokens import looks_like_token
from tests.conftest import NOW, add_categories, add_reader, add_summary

DAY = dt.timedelta(days=1)


@pytest.fixture
def topics(factory: sessionmaker[Session]) -> None:
    add_categories(factory, "Pharmacology", "Neurology")


def get(session: Session, address: str) -> Subscriber:
    subscriber = service.find_by_email(session, address)
    assert subscriber is not None
    return subscriber


@pytest.mark.usefixtures("topics")
def test_add_is_pending_with_a_consent_record_and_one_row_per_address(factory) -> None:
    with factory.begin() as session:
        ada = service.add_subscriber(
            session, " Ada@EXAMPLE.org ", ["Pharmacology"], now=NOW, name="Ada\r\nLovelace"
        )
        assert (ada.email, ada.email_key, ada.status) == (
            "Ada@example.org",
            "ada@example.org",
            "pending",
        )
        assert ada.name == "Ada Lovelace" and looks_like_token(ada.token)
        # the same address in another letter case updates the pending subscriber
        again = service.add_subscriber(session, "ADA@example.org", ["neurology"], now=NOW + DAY)
        assert again.id == ada.id and [c.slug for c in again.categories] == ["neurology"]
        consents = session.scalars(select(Consent).order_by(Consent.id)).all()
        assert [(c.source, c.categories, c.text_version, c.confirmed_at) for c in consents] == [
            ("admin", ["pharmacology"], "2026-11", None),
            ("admin", ["neurology"], "2026-11", None),
        ]
        service.confirm(session, again, now=NOW + DAY)
        assert consents[-1].confirmed_by == "admin" and consents[-1].confirmed_at == NOW + DAY
        with pytest.raises(SubscriberError, match="already an active subscriber"):
            service.add_subscriber(session, "ada@example.org", ["neurology"], now=NOW)
        with pytest.raises(SubscriberError, match="unknown category 'Cardiology'"):
            service.add_subscriber(session, "bob@example.org", ["Cardiology"], now=NOW)
        with pytest.raises(SubscriberError, match="not a valid email address"):
            service.add_subscriber(session, "bob@@example.org", ["neurology"], now=NOW)
        with pytest.raises(SubscriberError, match="without SMTPUTF8"):
            service.add_subscriber(session, "用户@example.org", ["neurology"], now=NOW)
        assert session.scalar(select(Subscriber.email).where(Subscriber.id != ada.id)) is None


@pytest.mark.usefixtures("topics")
def test_confirmation_token_is_stored_hashed_single_use_and_expires(factory) -> None:
    with factory.begin() as session:
        zoe = service.add_subscriber(session, "zoe@example.org", ["neurology"], now=NOW)
        token = service.open_confirmation(session, zoe, now=NOW, message_id="<c@example.org>")
        row = session.get(Confirmation, zoe.id)
        assert row is not None and row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert row.expires_at == NOW + 7 * DAY and token not in (row.token_hash, zoe.token)
        with pytest.raises(SubscriberError, match="expired on 2026-11-30"):
            service.confirm_with_token(session, token, now=NOW + 7 * DAY)
        newer = service.open_confirmation(session, zoe, now=NOW + 7 * DAY)
        with pytest.raises(SubscriberError, match="not valid"):
            service.confirm_with_token(session, token, now=NOW + 7 * DAY)  # replaced
        confirmed = service.confirm_with_token(session, newer, now=NOW + 8 * DAY)
        assert confirmed.id == zoe.id and zoe.status == "active"
        assert zoe.confirmed_at == zoe.active_since == NOW + 8 * DAY
        assert session.scalar(select(Consent.confirmed_by)) == "link"
        assert session.get(Confirmation, zoe.id) is None
        for used in (newer, "short", "x" * 43 + "'"):
            with pytest.raises(SubscriberError, match="not valid"):
                service.confirm_with_token(session, used, now=NOW + 8 * DAY)


@pytest.mark.usefixtures("topics")
def test_leave_one_category_then_all_and_only_the_owner_can_come_back(factory) -> None:
    add_reader(factory, "ada@example.org", ["pharmacology", "neurology"])
    with factory.begin() as session:
        ada = get(session, "ada@example.org")
        assert service.unsubscribe_category(session, ada, "Neurology", now=NOW)
        assert [c.slug for c in ada.categories] == ["pharmacology"] and ada.status == "active"
        assert not service.unsubscribe_category(session, ada, "neurology", now=NOW)
        assert service.unsubscribe_category(session, ada, "pharmacology", now=NOW)
        assert ada.status == "unsubscribed" and ada.unsubscribed_at == NOW
        assert not service.unsubscribe(session, ada, now=NOW)
        with pytest.raises(SubscriberError, match="is unsubscribed: only its owner"):
            service.add_subscriber(
                session, "ada@example.org", ["neurology"], now=NOW, confirmed=True
            )
        invited = service.add_subscriber(session, "ada@example.org", ["neurology"], now=NOW + DAY)
        assert invited.status == "pending"
        with pytest.raises(SubscriberError, match="unsubscribed before: only its owner"):
            service.confirm(session, invited, now=NOW)
        with pytest.raises(SubscriberError, match="pending after unsubscribing: only its owner"):
            service.add_subscriber(
                session, "ada@example.org", ["neurology"], now=NOW, confirmed=True
            )
        service.resubscribe(session, invited, now=NOW + 2 * DAY, categories=["pharmacology"])
        assert invited.status == "active" and invited.active_since == NOW + 2 * DAY
        consents = session.scalars(select(Consent).order_by(Consent.id)).all()
        assert consents[-1].confirmed_by == "preferences" and consents[-1].categories == [
            "pharmacology"
        ]


@pytest.mark.usefixtures("topics")
def test_time_zone_and_frequency_are_validated(factory) -> None:
    with factory.begin() as session:
        ada = service.add_subscriber(
            session,
            "ada@example.org",
            ["neurology"],
            now=NOW,
            timezone="Europe/Paris",
            frequency="Monthly",
        )
        assert (ada.timezone, ada.frequency) == ("Europe/Paris", "monthly")
        service.set_preferences(ada, timezone="", frequency="weekly")
        assert (ada.timezone, ada.frequency) == (None, "weekly")
        with pytest.raises(SubscriberError, match="not an IANA time zone"):
            service.set_preferences(ada, timezone="Europe/Atlantis")
        with pytest.raises(SubscriberError, match="weekly or monthly"):
            service.set_preferences(ada, frequency="daily")
    with factory() as session:
        assert session.scalar(select(Subscriber.frequency)) == "weekly"


@pytest.mark.usefixtures("topics")
def test_rotated_token_revokes_old_links(factory) -> None:
    add_reader(factory, "ada@example.org", ["neurology"])
    with factory.begin() as session:
        ada = get(session, "ada@example.org")
        old = ada.token
        service.rotate_token(session, ada)
        assert looks_like_token(ada.token) and ada.token != old
        assert service.find_by_token(session, old) is None
        assert service.find_by_token(session, ada.token) is ada


@pytest.mark.usefixtures("topics")
def test_suppressed_and_pending_addresses_are_never_sent_a_digest(
    db_settings: Settings, engine: Engine, factory
) -> None:
    add_summary(factory, "Riluzole after acute injury", ["pharmacology"], NOW - DAY)
    for address in ("ada@example.org", "bounce@example.org", "spam@example.org"):
        add_reader(factory, address, ["pharmacology"])
    add_reader(factory, "pending@example.org", ["pharmacology"], confirmed=False)
    with factory.begin() as session:
        salt = suppression.email_salt(session)
        # listed (say by a bounce processor) while the subscriber row still says active
        suppression.suppress(
            session, suppression.email_hash(salt, "BOUNCE@example.org"), "bounced", now=NOW
        )
        get(session, "spam@example.org").status = "complained"
    memory = MemoryTransport()
    report = run_edition(db_settings, memory, now=NOW, engine=engine)
    assert [envelope.recipient for envelope, _ in memory.outbox] == ["ada@example.org"]
    assert report.sent == 1


@pytest.mark.usefixtures("topics")
def test_erase_keeps_true_counts_and_only_a_salted_hash(
    db_settings: Settings, engine: Engine, factory
) -> None:
    add_summary(factory, "Riluzole after acute injury", ["pharmacology"], NOW - DAY)
    add_reader(factory, "Ada@example.org", ["pharmacology"], name="Ada Lovelace")
    run_edition(db_settings, MemoryTransport(), now=NOW, engine=engine)
    with factory.begin() as session:
        session.execute(
            Delivery.__table__.update().values(detail="250 ok <ada@EXAMPLE.org> queued")
        )
    with factory.begin() as session:
        ada = get(session, "ada@example.org")
        assert erase_subscriber(session, ada, now=NOW + DAY) == 1
    with factory() as session:
        assert session.scalar(select(Subscriber.id)) is None
        assert session.scalar(select(Consent.id)) is None
        delivery = session.scalars(select(Delivery)).one()
        assert delivery.subscriber_id is None and delivery.status == "sent"
        assert delivery.detail == f"250 ok <{ERASED}> queued"
        listed = session.scalars(select(Suppression)).one()
        salt = suppression.email_salt(session)
        assert (listed.email_hash, listed.reason) == (
            suppression.email_hash(salt, "ADA@example.org"),
            "erased",
        )
    with factory.begin() as session:
        with pytest.raises(SubscriberError, match=r"on the suppression list \(erased\)"):
            service.add_subscriber(
                session, "ada@example.org", ["neurology"], now=NOW, confirmed=True
            )
        # only a new confirmation by its owner brings the address back
        back = service.add_subscriber(session, "ada@example.org", ["neurology"], now=NOW + 2 * DAY)
        token = service.open_confirmation(session, back, now=NOW + 2 * DAY)
        service.confirm_with_token(session, token, now=NOW + 2 * DAY)
        assert back.status == "active" and session.scalar(select(Suppression.id)) is None


def test_migration_hashes_the_addresses_already_stored(engine: Engine) -> None:
    schema.downgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscribers (email, email_key, status, token, created_at) "
                "VALUES ('Old@example.org', 'old@example.org', 'active', :token, :now)"
            ),
            {"token": "t" * 43, "now": NOW.replace(tzinfo=None)},
        )
    schema.upgrade(engine)
    with Session(engine) as session:
        old = session.scalars(select(Subscriber)).one()
        salt = suppression.email_salt(session)
        assert len(salt) == 32
        assert old.email_hash == suppression.email_hash(salt, "OLD@example.org")
        assert old.frequency == "weekly"
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
            session.execute(
                insert(Suppression), [{"email_hash": "h", "reason": "x", "created_at": NOW}] * 2
            )


def test_the_subscribers_package_imports_only_the_leaves_of_digest() -> None:
    import ast
    from pathlib import Path

    allowed = {"digest.config", "digest.store.db", "digest.errors"}
    for path in Path(service.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("digest"):
                    assert name in allowed, f"{path.name} imports {name}"
