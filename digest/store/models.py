"""Tables of the engine: summaries, editions, their variants and the delivery ledger."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Double,
    ForeignKey,
    Index,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from digest.store.db import Base, Category, UTCDateTime

summary_categories = Table(
    "summary_categories",
    Base.metadata,
    Column("summary_id", ForeignKey("summaries.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "category_id",
        ForeignKey("categories.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
)


class Summary(Base):
    """One plain-language summary published on the site."""

    __tablename__ = "summaries"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    doi: Mapped[str | None] = mapped_column(String(255), index=True)
    pmid: Mapped[str | None] = mapped_column(String(20))
    journal: Mapped[str | None] = mapped_column(String(300))
    year: Mapped[int | None]
    #: When the summary was published on the site (never the import time).
    published_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    simple_explanation: Mapped[str] = mapped_column(Text, default="")
    key_findings: Mapped[list[str]] = mapped_column(JSON, default=list)
    study_duration: Mapped[str | None] = mapped_column(String(200))
    participants: Mapped[str | None] = mapped_column(String(500))
    evidence_level: Mapped[str | None] = mapped_column(String(200))
    study_type: Mapped[str | None] = mapped_column(String(200))
    population: Mapped[str | None] = mapped_column(String(500))
    sample_size: Mapped[int | None]
    open_access: Mapped[bool | None]
    practical_implications: Mapped[str | None] = mapped_column(Text)
    limitations: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: ``published``, ``corrected`` or ``retracted`` (see :mod:`digest.sources.corrections`).
    status: Mapped[str] = mapped_column(String(20), default="published", server_default="published")
    #: What was corrected, or why the study was withdrawn.
    correction_note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    categories: Mapped[list[Category]] = relationship(
        secondary=summary_categories, order_by="Category.name", lazy="selectin"
    )


class EditionStatus(enum.StrEnum):
    OPEN = "open"  # created; deliveries may still be pending
    COMPLETE = "complete"  # every delivery ended (sent, failed or skipped)
    CANCELLED = "cancelled"
    #: Stopped by bounce processing after a sender-side policy bounce (blocklist, failed
    #: authentication); ``digest bounces resume KEY`` reopens it.
    PAUSED = "paused"


class Edition(Base):
    """One send of the digest for one period, keyed by ISO week (``2026-W48``)."""

    __tablename__ = "editions"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(20), unique=True)
    #: Summaries published up to this moment belong to this edition; fixed at creation.
    cutoff: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(20), default=EditionStatus.OPEN.value)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    #: When :attr:`totals` were fixed, before retention deleted ledger rows or bounce events
    #: of this edition (``digest maintenance``); None while everything is counted live.
    archived_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    #: The edition's counts as they were then: ``{"statuses": {"sent": n, ...}, "hard": n,
    #: "soft": n, "complaint": n, "unsubscribed": n}``; reports read these once set.
    totals: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    #: When its readers were last planned: a reader who becomes active (or a summary that
    #: arrives) after this moment, while the period lasts, makes the next run plan again.
    planned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    variants: Mapped[list[Variant]] = relationship(
        back_populates="edition", order_by="Variant.number"
    )


class Variant(Base):
    """A distinct digest within an edition: one category set and one list of summaries."""

    __tablename__ = "variants"
    __table_args__ = (UniqueConstraint("edition_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("editions.id", ondelete="CASCADE"))
    number: Mapped[int]
    #: Sorted category ids of the readers sharing this variant.
    category_ids: Mapped[list[int]] = mapped_column(JSON)
    #: Summary ids in the order they appear (all of them, also those past the card cap).
    summary_ids: Mapped[list[int]] = mapped_column(JSON)
    #: Unguessable id of the web version (no personal data in it).
    web_id: Mapped[str] = mapped_column(String(64), unique=True)
    #: Ids of the correction and retraction notices at its top, in order.
    notice_ids: Mapped[list[int]] = mapped_column(JSON, default=list, server_default="[]")

    edition: Mapped[Edition] = relationship(back_populates="variants")

    @property
    def key(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        return tuple(self.category_ids), tuple(self.summary_ids), tuple(self.notice_ids or ())


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"  # planned, not yet handed to the transport
    SENDING = "sending"  # claimed by a sender; may or may not have gone out if it crashed
    SENT = "sent"  # accepted by the transport
    DEFERRED = "deferred"  # temporary failure (4xx, dropped connection); will be retried
    FAILED = "failed"  # permanent failure (5xx, or too many temporary ones); never retried
    SKIPPED = "skipped"  # not sent on purpose (e.g. unsubscribed after planning)


#: The condition of the partial index of rows sent (only they have a ``sent_at``); a query
#: that should use that index repeats it as it is. Not ``status = 'sent'``: a column in an
#: index's condition counts as indexed, so every change of status (queued -> sending ->
#: sent) was a full update with new entries in all six indexes; now the claim's update
#: touches no indexed column and PostgreSQL makes it in place (HOT, migration 0014).
SENT_ROWS = "sent_at IS NOT NULL"


class Delivery(Base):
    """The ledger: who got which variant of which edition. One row per (edition, subscriber,
    part): part 1 is the edition; a reader who changes topics after they were sent it gets
    part 2 (and up) with only the new topics' summaries."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("edition_id", "subscriber_id", "part"),
        # No index is keyed on ``status`` nor has it in its condition: every row changes
        # status twice as it is sent, and moving index entries was half the cost of those
        # updates. Rows of an edition are read in id order (claims) or counted by
        # scanning that edition's rows.
        Index("ix_deliveries_edition_id_id", "edition_id", "id"),
        Index("ix_deliveries_subscriber_id", "subscriber_id"),
        # The last edition each reader was sent (planning): only rows ``sent`` are in it.
        Index(
            "ix_deliveries_subscriber_sent",
            "subscriber_id",
            sqlite_where=text(SENT_ROWS),
            postgresql_where=text(SENT_ROWS),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("editions.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL")
    )
    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id", ondelete="CASCADE"))
    #: 1, or 2 and up for the messages of a reader who changed topics after part 1 was sent.
    part: Mapped[int] = mapped_column(server_default="1")
    status: Mapped[str] = mapped_column(String(20), default=DeliveryStatus.QUEUED.value)
    #: Chosen when the row is created and reused on every retry.
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    attempts: Mapped[int] = mapped_column(default=0)
    #: The server's reply for the last attempt, or why the row was skipped.
    detail: Mapped[str | None] = mapped_column(Text)
    #: The in-flight mark: the message may already have reached its reader once (it was
    #: on the wire, outcome unknown, when a sender died or lost its lock). Never cleared,
    #: so a later deferral or failure keeps it counted as possibly duplicated.
    possibly_duplicated: Mapped[bool] = mapped_column(server_default=false())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class Notice(Base):
    """A correction or retraction of a summary, owed to everyone who was sent it before."""

    __tablename__ = "notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    summary_id: Mapped[int] = mapped_column(
        ForeignKey("summaries.id", ondelete="CASCADE"), index=True
    )
    #: ``corrected`` or ``retracted``.
    kind: Mapped[str] = mapped_column(String(20))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class NoticeDelivery(Base):
    """Which notice rides on which ledger row: planned with the row, in its transaction, so
    a notice goes out exactly when its digest does (a failed row owes it again)."""

    __tablename__ = "notice_deliveries"

    notice_id: Mapped[int] = mapped_column(
        ForeignKey("notices.id", ondelete="CASCADE"), primary_key=True
    )
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    subscriber_id: Mapped[int | None] = mapped_column(index=True)
    edition_id: Mapped[int] = mapped_column(
        ForeignKey("editions.id", ondelete="CASCADE"), index=True
    )


class BounceEvent(Base):
    """One processed bounce or complaint about one delivery (see :mod:`digest.bounces`)."""

    __tablename__ = "bounce_events"
    __table_args__ = (Index("ix_bounce_events_subscriber_kind", "subscriber_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    #: ``hard``, ``soft``, ``policy`` or ``complaint``.
    kind: Mapped[str] = mapped_column(String(20))
    #: Enhanced status code (``5.1.1``), or the feedback type of a complaint (``abuse``).
    status: Mapped[str | None] = mapped_column(String(40))
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL"), index=True
    )
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL")
    )
    edition_id: Mapped[int | None] = mapped_column(
        ForeignKey("editions.id", ondelete="SET NULL"), index=True
    )
    #: How it was tied to a delivery (``VERP``, ``Message-ID``, ``recipient address``), or
    #: None: unmatched (``digest bounces unmatched``).
    matched_by: Mapped[str | None] = mapped_column(String(20))
    #: What came in: the report's Message-ID, ``sha256:<hex>`` of its bytes, a provider's
    #: event id, or ``json:sha256:<hex>`` of a webhook payload without one (never an address).
    reference: Mapped[str] = mapped_column(String(255))
    #: The same report seen twice (a re-run, a re-polled mailbox) is recorded once.
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    #: The remote server's words, shortened, with any address replaced by ``[address]``.
    detail: Mapped[str | None] = mapped_column(Text)


class EditionLock(Base):
    """A lease on sending an edition (SQLite; PostgreSQL uses advisory locks instead)."""

    __tablename__ = "edition_locks"

    edition_key: Mapped[str] = mapped_column(String(20), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class SendRate(Base):
    """The sending rate shared by every process sending through one relay (PostgreSQL; see
    :mod:`digest.delivery.ratelimit_shared`). Times are seconds of the database clock."""

    __tablename__ = "send_rates"

    #: The relay, e.g. the SMTP host.
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    #: Messages per second now (halved on deferrals, recovering); None: no per-second limit.
    rate: Mapped[float | None] = mapped_column(Double)
    #: When the next free slot starts (epoch seconds).
    next_at: Mapped[float] = mapped_column(Double)
    #: Accepted messages counted towards the next recovery step.
    good: Mapped[int]
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class SendRateGrant(Base):
    """A block of messages handed to one process, kept for an hour to enforce ``per_hour``."""

    __tablename__ = "send_rate_grants"
    __table_args__ = (Index("ix_send_rate_grants_name_ends_at", "name", "ends_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    #: The latest moment one of its messages may go (epoch seconds, database clock).
    ends_at: Mapped[float] = mapped_column(Double)
    count: Mapped[int]
