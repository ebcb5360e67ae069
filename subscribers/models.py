"""Subscriber tables: subscribers, their categories, consent records, pending confirmations,
the suppression list and the per-database secret that salts its hashes."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from digest.store.db import Base, Category, UTCDateTime
from subscribers.tokens import new_token


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
    #: Opaque unsubscribe/preferences token (256 bits); rotate it to revoke old links.
    token: Mapped[str] = mapped_column(String(64), unique=True, default=new_token)
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
