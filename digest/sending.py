"""Send one claimed batch: personalise each message, hand it over, classify the outcome.

Policy lives here, not in transports: a 5xx reply fails the row for good; a 4xx reply or a
dropped connection defers it until ``MAX_ATTEMPTS``; an unreachable server stops the run
with the rest of the batch given back untouched.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from digest.db import utcnow
from digest.errors import TransportUnavailable
from digest.ledger import Claim, record, release
from digest.message import MessageTemplate, Recipient
from digest.models import DeliveryStatus
from digest.transports.base import DeliveryFailed, Envelope, Transport
from subscribers.models import Status

#: A temporary failure is retried until a delivery has had this many attempts.
MAX_ATTEMPTS = 5


@dataclass
class Tally:
    """What happened to the messages of a run."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0
    resent_after_crash: int = 0
    failures: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Outbound:
    """Everything constant across a run's messages."""

    sender: str
    edition_key: str
    templates: Mapping[int, MessageTemplate]  # by variant id
    numbers: Mapping[int, int]  # variant id -> variant number


def send_batch(
    factory: sessionmaker[Session],
    transport: Transport,
    outbound: Outbound,
    claims: list[Claim],
    tally: Tally,
    *,
    before_send: Callable[[], None] | None = None,
) -> int:
    """Send ``claims`` and record every outcome in one statement; returns how many rows were
    handled. ``before_send`` runs before each hand-over (the rate limiter)."""
    outcomes: list[dict[str, object]] = []
    index = 0
    try:
        for index, item in enumerate(claims):  # noqa: B007  (index is used after the loop)
            row: dict[str, object] = {"id": item.delivery_id, "updated_at": utcnow()}
            if item.address is None or item.token is None:
                row.update(status=DeliveryStatus.SKIPPED.value, detail="subscriber was erased")
                tally.skipped += 1
            elif item.subscriber_status != Status.ACTIVE:
                row.update(
                    status=DeliveryStatus.SKIPPED.value,
                    detail=f"subscriber is {item.subscriber_status} since planning",
                )
                tally.skipped += 1
            else:
                raw = outbound.templates[item.variant_id].personalize(
                    Recipient(item.address, item.name, item.token, item.message_id)
                )
                envelope = Envelope(
                    outbound.sender,
                    item.address,
                    outbound.edition_key,
                    outbound.numbers[item.variant_id],
                )
                if before_send is not None:
                    before_send()
                try:
                    reply = transport.send(envelope, raw)
                except DeliveryFailed as exc:
                    row.update(_failure(item, exc, tally))
                else:
                    row.update(
                        status=DeliveryStatus.SENT.value, sent_at=row["updated_at"], detail=reply
                    )
                    tally.sent += 1
                    tally.resent_after_crash += item.resend
            outcomes.append(row)
    except TransportUnavailable:
        release(factory, claims[index:])
        raise
    finally:
        record(factory, outcomes)
    return len(outcomes)


def _failure(item: Claim, exc: DeliveryFailed, tally: Tally) -> dict[str, object]:
    if exc.permanent:
        tally.failed += 1
        tally.failures[exc.reply[:60]] += 1
        return {"status": DeliveryStatus.FAILED.value, "detail": exc.reply}
    if item.attempts >= MAX_ATTEMPTS:
        tally.failed += 1
        tally.failures["too many temporary failures"] += 1
        return {
            "status": DeliveryStatus.FAILED.value,
            "detail": f"gave up after {item.attempts} attempts: {exc.reply}",
        }
    return {"status": DeliveryStatus.DEFERRED.value, "detail": exc.reply}
