"""Subscriber tables: subscribers, their categories, consent records, pending confirmations,
the suppression list and the per-database secrets that key its hashes. Every insert or
token change of a subscriber also stores the token's keyed hash (``token_hash``)."""

from __future__ import annotations

import datetime as dt
import enum
import secrets
from typing import Any

from sqlalchemy import JSON, Connection, ForeignKey, Index, String, event, insert, inspect, select
from sqlalchemy.orm import Mapped, Mapper, mapped_column, relationship

from digest.store.db import Base, Category, UTCDateTime
from subscribers.tokens import new_token, token_digest

#: The ``instance_secrets`` row keying token hashes (made by migration 0009). Deleting it
#: would make every unsubscribe and preferences link already sent unknown.
TOKEN_KEY_NAME = "token_key"  # noqa: S105 (the name of a row, not a secret)


class Status(enum.StrEnum):
    """Where a subscriber stands. Only ``active`` subscribers are ever sent a digest."""

    PENDING = "pending"  # signed up, not yet confirmed
    ACTIVE = "active"  # confirmed
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"  # suppressed: the address does not take mail
    COMPLAINED = "complained"  # suppressed: marked a digest as spam


#: Statuses that put the address on the suppression list.
SUPPRESSED = (Status.BOUNCED.value, Status.COMPLAINED.value)


class Frequency(enum.StrEnum):
    WEEKLY = "weekly"
    MONTHLY = "monthly"


class Subscriber(Base):
    __tablename__ = "subscribers"
    __table_args__ = (Index("ix_subscribers_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    #: ``email`` in lower case: addresses are unique whatever their letter case.
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    #: Salted hash of ``email_key`` (see :mod:`subscribers.suppression`), to match the
    #: suppression list without storing addresses there.
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default=Status.PENDING.value)
    #: Opaque unsubscribe/preferences token (about 255 bits); rotate it to revoke old links.
    token: Mapped[str] = mapped_column(String(64), unique=True, default=new_token)
    #: HMAC-SHA256 of ``token`` with the database's ``token_key``: links are looked up by
    #: it, never by the token (set on insert and on every token change, see below).
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    unsubscribed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    #: When the subscriber last became active here (confirmation, import or resubscription).
    #: Their first digest covers the look-back period before this moment.
    active_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    #: The reader's own IANA time zone (local delivery), or None for the list's.
    timezone: Mapped[str | None] = mapped_column(String(64))
    #: "weekly" or "monthly" (the first edition of each month).
    frequency: Mapped[str] = mapped_column(String(10), default="weekly", server_default="weekly")
    #: No digest until this moment.
    paused_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    categories: Mapped[list[Category]] = relationship(
        secondary="subscriptions", order_by="Category.name", lazy="selectin"
    )

    def __repr__(self) -> str:
        return f"Subscriber(id={self.id}, status={self.status!r})"


class Subscription(Base):
    """One row per (subscriber, category) they chose."""

    __tablename__ = "subscriptions"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    category_id: Mapped[int] = mapped_column(
        ForeignKey("categories.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Consent(Base):
    """What a subscriber agreed to, when and how: one row each time they (or an admin on
    their behalf) chose categories. Rows are only added, never changed, except for the
    confirmation of the row that is waiting for it."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    #: ``form``, ``import`` or ``admin`` (see :mod:`subscribers.consent`).
    source: Mapped[str] = mapped_column(String(20))
    #: Slugs of the categories chosen.
    categories: Mapped[list[str]] = mapped_column(JSON)
    #: Version of the consent text the person was shown (or the admin asserted).
    text_version: Mapped[str] = mapped_column(String(40))
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    #: ``link`` (confirmation email), ``admin``, ``import`` or ``preferences``.
    confirmed_by: Mapped[str | None] = mapped_column(String(20))


class Confirmation(Base):
    """The one open confirmation request of a pending subscriber. Only the sha256 of the
    token is stored; the row is deleted when it is used."""

    __tablename__ = "confirmations"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    #: Message-ID of the confirmation email (proof of what was sent).
    message_id: Mapped[str | None] = mapped_column(String(255))


class Suppression(Base):
    """An address that must not be mailed, kept as a salted hash only."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: ``bounced``, ``complained`` or ``erased``.
    reason: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class InstanceSecret(Base):
    """Random values created once per database (the salt of address hashes)."""

    __tablename__ = "instance_secrets"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class SignupHit(Base):
    """One email the sign-up or link-request form was asked to send, counted against the
    abuse limits (see :mod:`digest.web.limits`); rows older than a day are deleted. The
    client and the address are kept only as keyed hashes."""

    __tablename__ = "signup_hits"
    __table_args__ = (Index("ix_signup_hits_scope_key_at", "scope", "key", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: ``ip``, ``address``, ``links`` or ``site``.
    scope: Mapped[str] = mapped_column(String(10))
    key: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)


def token_key_of(connection: Connection) -> bytes:
    """The database's key of token hashes, read (or, on a database that lacks it, made)
    on ``connection``."""
    query = select(InstanceSecret.value).where(InstanceSecret.name == TOKEN_KEY_NAME)
    value = connection.scalar(query)
    if value is None:
        value = secrets.token_hex(32)
        connection.execute(
            insert(InstanceSecret).values(
                name=TOKEN_KEY_NAME, value=value, created_at=dt.datetime.now(dt.UTC)
            )
        )
    return bytes.fromhex(value)


@event.listens_for(Subscriber, "before_insert")
def _hash_new_token(_: Mapper[Any], connection: Connection, subscriber: Subscriber) -> None:
    if subscriber.token is None:
        subscriber.token = new_token()
    subscriber.token_hash = token_digest(token_key_of(connection), subscriber.token)


@event.listens_for(Subscriber, "before_update")
def _hash_changed_token(_: Mapper[Any], connection: Connection, subscriber: Subscriber) -> None:
    if inspect(subscriber).attrs.token.history.has_changes():
        subscriber.token_hash = token_digest(token_key_of(connection), subscriber.token)


class ImportRecord(Base):
    """One CSV import that was written (``digest subscribers import``): when, which file
    (its name only) and what it did. A dry run or an import refused for bad rows wrote
    nothing and is not recorded. Written only by :func:`subscribers.service.record_import`,
    in the import's own transaction; the admin console lists the latest ones."""

    __tablename__ = "imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    #: The file's name, without its folder (at most 200 characters).
    source: Mapped[str] = mapped_column(String(200))
    #: The admin vouched for everyone's consent (``--confirmed``): new people are active.
    confirmed: Mapped[bool]
    rows: Mapped[int]
    #: New subscribers by status: ``{"active": n, "pending": n, ...}``.
    created: Mapped[dict[str, int]] = mapped_column(JSON)
    merged: Mapped[int]
    unchanged: Mapped[int]
    duplicates: Mapped[int]
    kept_out: Mapped[int]
    #: Bad rows left out (``--skip-invalid``).
    invalid: Mapped[int]
