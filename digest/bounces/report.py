"""``digest deliverability``: what happened to sent mail, against the bulk-sender limits, and
the DNS records to publish (email-standards.md §7)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import Session

from digest.bounces.classify import COMPLAINT, HARD, SOFT
from digest.config import Settings
from digest.errors import ConfigError, EditionError
from digest.mail.dkim import dns_records as dkim_records
from digest.store.models import BounceEvent, Delivery, DeliveryStatus, Edition
from subscribers.models import Status, Subscriber

#: Google: keep the spam rate under 0.10 %, never reach 0.30 %; Yahoo: under 0.30 %.
COMPLAINT_TARGET = 0.001
COMPLAINT_LIMIT = 0.003
#: Not a published Gmail/Yahoo limit: a common ESP guideline for bounces.
BOUNCE_GUIDE = 0.02


@dataclass(frozen=True)
class Deliverability:
    scope: str  # "edition 2026-W48" or "all editions"
    sent: int
    hard: int
    soft: int
    complained: int
    unsubscribed: int

    def rate(self, count: int) -> float:
        return count / self.sent if self.sent else 0.0

    def lines(self) -> list[str]:
        complaint_rate = self.rate(self.complained)
        if complaint_rate >= COMPLAINT_LIMIT:
            verdict = "OVER the 0.30% limit (Gmail and Yahoo): stop and find the cause"
        elif complaint_rate >= COMPLAINT_TARGET:
            verdict = "above Gmail's 0.10% target, under the 0.30% limit"
        else:
            verdict = "under Gmail's 0.10% target and the 0.30% limit (Gmail, Yahoo)"
        bounce_rate = self.rate(self.hard + self.soft)
        bounce_note = "ok" if bounce_rate < BOUNCE_GUIDE else "high: clean the list"
        return [
            f"Deliverability, {self.scope}",
            f"  sent          {self.sent}",
            f"  bounced       {self.hard + self.soft} ({self.hard} hard, {self.soft} soft)"
            f"  {bounce_rate:.2%}  ({bounce_note}; common guideline under {BOUNCE_GUIDE:.0%})",
            f"  complained    {self.complained}  {complaint_rate:.3%}  {verdict}",
            f"  unsubscribed  {self.unsubscribed}  {self.rate(self.unsubscribed):.2%}",
        ]


def deliverability(session: Session, key: str | None = None) -> Deliverability:
    """Counts for one edition, or for every edition. An edition whose rows retention deleted
    (``digest maintenance``) counts with the totals it kept."""
    scope = select(Edition.id)
    if key is not None:
        edition = session.scalar(select(Edition).where(Edition.key == key))
        if edition is None:
            raise EditionError(f"no edition {key}")
        scope = scope.where(Edition.id == edition.id)
    live = live_counts(session, scope.where(Edition.archived_at.is_(None)))
    kept = [t for (t,) in session.execute(select(Edition.totals).where(
        Edition.id.in_(scope), Edition.archived_at.is_not(None), Edition.totals.is_not(None)
    ))]  # fmt: skip
    total = {name: live[name] + sum(int(t.get(name, 0)) for t in kept) for name in live}
    total["sent"] = live["sent"] + sum(int(t.get("statuses", {}).get("sent", 0)) for t in kept)
    return Deliverability(
        scope=f"edition {key}" if key else "all editions",
        sent=total["sent"],
        hard=total[HARD],
        soft=total[SOFT],
        complained=total[COMPLAINT],
        unsubscribed=total["unsubscribed"],
    )


def live_counts(session: Session, editions: Select[Any]) -> dict[str, int]:
    """Sent messages, bounced and complained deliveries and readers who unsubscribed after
    a digest, counted from the rows of the editions ``editions`` selects."""
    in_scope = Delivery.edition_id.in_(editions)
    sent = session.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(Delivery.status == DeliveryStatus.SENT.value, in_scope)
    )

    def events(kind: str) -> int:
        query = select(func.count(func.distinct(BounceEvent.delivery_id))).where(
            BounceEvent.kind == kind,
            BounceEvent.delivery_id.is_not(None),
            BounceEvent.edition_id.in_(editions),
        )
        return int(session.scalar(query) or 0)

    unsubscribed = session.scalar(
        select(func.count(func.distinct(Subscriber.id)))
        .select_from(Delivery)
        .join(
            Subscriber,
            and_(
                Subscriber.id == Delivery.subscriber_id,
                Subscriber.status == Status.UNSUBSCRIBED.value,
                Subscriber.unsubscribed_at >= Delivery.sent_at,
            ),
        )
        .where(Delivery.status == DeliveryStatus.SENT.value, in_scope)
    )
    return {
        "sent": int(sent or 0),
        HARD: events(HARD),
        SOFT: events(SOFT),
        COMPLAINT: events(COMPLAINT),
        "unsubscribed": int(unsubscribed or 0),
    }


def dns_lines(settings: Settings) -> list[str]:
    """SPF, DKIM and DMARC records for the configured domains, as zone-file lines."""
    domain = settings.sender_domain
    envelope_domain = (settings.bounce_address or settings.sender_address).rpartition("@")[2]
    relay = settings.smtp.host if settings.smtp is not None else None
    mechanism = (
        f"a:{relay}"
        if relay and relay not in ("localhost", "127.0.0.1", "::1")
        else ("include:<your mail provider's SPF domain>")
    )
    lines = [
        "DNS records to publish",
        f'  SPF   {envelope_domain}. IN TXT "v=spf1 {mechanism} ~all"',
        "        (for the envelope sender's domain; use your relay's or provider's mechanism)",
    ]
    try:
        dkim = dkim_records(settings)
    except ConfigError as exc:
        dkim = []
        lines.append(f"  DKIM  cannot read the key: {exc}")
    if dkim:
        lines.extend(f"  DKIM  {record}" for record in dkim)
    elif settings.dkim_selector is None:
        lines.append("  DKIM  not configured: set dkim_selector and dkim_key_file")
    lines.append(
        f'  DMARC _dmarc.{domain}. IN TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}"'
    )
    lines.append("        (start with p=none and read the reports; then quarantine or reject)")
    return lines


@dataclass(frozen=True)
class UnmatchedEvent:
    """A bounce or complaint that named no known delivery or reader (kept without the
    address it named, until ``bounce_retention_days``)."""

    received_at: dt.datetime
    kind: str
    status: str
    reference: str
    detail: str


def unmatched_events(session: Session, limit: int = 100) -> list[UnmatchedEvent]:
    """The latest unmatched events, newest first."""
    rows = session.execute(
        select(
            BounceEvent.received_at,
            BounceEvent.kind,
            BounceEvent.status,
            BounceEvent.reference,
            BounceEvent.detail,
        )
        .where(BounceEvent.matched_by.is_(None))
        .order_by(BounceEvent.received_at.desc(), BounceEvent.id.desc())
        .limit(limit)
    ).all()
    return [
        UnmatchedEvent(at, kind, status or "", reference, detail or "")
        for at, kind, status, reference, detail in rows
    ]
