"""Subscriber and subscription tables."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from digest.db import Base, Category, UTCDateTime
from subscribers.tokens import new_token


class Status(enum.StrEnum):
    """Where a subscriber stands. Only ``active`` subscribers are ever sent a digest."""

    PENDING = "pending"  # signed up, not yet confirmed
    ACTIVE = "active"  # confirmed
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"  # suppressed: the address does not take mail
    COMPLAINED = "complained"  # suppressed: marked a digest as spam


class Subscriber(Base):
    __tablename__ = "subscribers"
    __table_args__ = (Index("ix_subscribers_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    #: ``email`` in lower case: addresses are unique whatever their letter case.
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
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
