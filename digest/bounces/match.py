"""Tie a report to the delivery it is about: by VERP address, by Message-ID, or by the
recipient address and that reader's most recent delivery. Nothing is guessed: no match is
``None``, and the caller reports it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.bounces.parse import Recipient, Report
from digest.mail.verp import parse_verp
from digest.store.models import Delivery, DeliveryStatus, Edition
from subscribers.models import Confirmation, Subscriber

#: Rows that may have reached a mail server (a queued or skipped row cannot bounce).
_HANDED_OVER = (
    DeliveryStatus.SENT.value,
    DeliveryStatus.SENDING.value,
    DeliveryStatus.DEFERRED.value,
    DeliveryStatus.FAILED.value,
)


@dataclass(frozen=True)
class Match:
    #: None for a complaint about someone who was never sent a digest (a confirmation
    #: email, for one): it is tied to the reader alone.
    delivery_id: int | None
    edition_id: int | None
    edition_key: str | None
    subscriber_id: int | None
    address: str | None  # None once the subscriber was erased
    how: str  # "VERP", "Message-ID" or "recipient address"


def _load(session: Session, delivery_id: int, how: str) -> Match | None:
    row = session.execute(
        select(
            Delivery.id, Delivery.edition_id, Edition.key, Delivery.subscriber_id, Subscriber.email
        )
        .join(Edition, Edition.id == Delivery.edition_id)
        .outerjoin(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.id == delivery_id)
    ).first()
    if row is None:
        return None
    return Match(row[0], row[1], row[2], row[3], row[4], how)


def by_verp(session: Session, addresses: Iterable[str], secret: bytes | None) -> Match | None:
    if not secret:
        return None
    for address in addresses:
        delivery_id = parse_verp(address, secret)
        if delivery_id is not None:
            found = _load(session, delivery_id, "VERP")
            if found is not None:
                return found
    return None


def by_message_id(session: Session, message_ids: Iterable[str]) -> Match | None:
    for message_id in message_ids:
        delivery_id = session.scalar(select(Delivery.id).where(Delivery.message_id == message_id))
        if delivery_id is not None:
            return _load(session, delivery_id, "Message-ID")
    return None


def by_address(session: Session, address: str) -> Match | None:
    """The most recent delivery handed over to ``address``."""
    if not address:
        return None
    delivery_id = session.scalar(
        select(Delivery.id)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Subscriber.email_key == address.lower(), Delivery.status.in_(_HANDED_OVER))
        .order_by(Delivery.created_at.desc(), Delivery.id.desc())
        .limit(1)
    )
    return _load(session, delivery_id, "recipient address") if delivery_id is not None else None


def reader_only(session: Session, report: Report, address: str) -> Match | None:
    """A complaint's reader when no delivery names them: by the Message-ID of their
    confirmation email, or by their address. Complaints must never be lost."""
    subscriber_id = None
    if report.message_ids:
        subscriber_id = session.scalar(
            select(Confirmation.subscriber_id).where(
                Confirmation.message_id.in_(report.message_ids)
            )
        )
    how = "Message-ID"
    if subscriber_id is None and address:
        subscriber_id = session.scalar(
            select(Subscriber.id).where(Subscriber.email_key == address.lower())
        )
        how = "recipient address"
    if subscriber_id is None:
        return None
    email = session.scalar(select(Subscriber.email).where(Subscriber.id == subscriber_id))
    return Match(None, None, None, subscriber_id, email, how)


def match_report(session: Session, report: Report, secret: bytes | None) -> Match | None:
    """The delivery the whole report is about, by VERP or Message-ID (either names exactly one
    delivery)."""
    return by_verp(session, report.envelope, secret) or by_message_id(session, report.message_ids)


def match_recipient(
    session: Session, report: Report, recipient: Recipient, whole: Match | None
) -> Match | None:
    """The delivery one recipient block is about. A VERP/Message-ID match applies to a report
    with one recipient, or to the block naming that reader; other blocks go by address."""
    names = {recipient.address, recipient.original} - {""}
    if whole is not None and (
        len(report.recipients) <= 1 or (whole.address or "").lower() in names
    ):
        return whole
    for name in (recipient.original, recipient.address):
        found = by_address(session, name)
        if found is not None:
            return found
    return None
