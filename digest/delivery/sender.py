"""Send claimed batches: personalise each message, hand it over, classify the outcome.

Policy lives here, not in transports: a 5xx reply fails the row for good; a 4xx reply or a
dropped connection defers it until ``MAX_ATTEMPTS``; an unreachable server (or too many
temporary failures in a row) stops the run, the rest of the batch given back untouched.
Messages go out on as many threads as the transport has connections, all under one
rate limiter.
"""

from __future__ import annotations

import random
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from digest.delivery.ledger import GAVE_UP, Claim, record, release
from digest.delivery.ratelimit import RateLimiter
from digest.errors import SendLockLost, TransportUnavailable
from digest.mail.message import MessageTemplate, Recipient
from digest.mail.transports.base import DeliveryFailed, Envelope, Transport
from digest.store.db import utcnow
from digest.store.models import DeliveryStatus
from subscribers.models import Status

_SENT = DeliveryStatus.SENT.value  # read once: an enum's .value is a property

_ADDRESS = re.compile(r"<[^<>@\s]*@[^<>\s]*>|[^\s<>@,;:()\"']+@[^\s<>,;:()\"']+")

#: A temporary failure is retried until a delivery has had this many attempts.
MAX_ATTEMPTS = 5
#: Temporary failures in a row that mean the server is down: the run stops.
DOWN_AFTER = 25
#: Outcomes are recorded after this many messages of a batch: after a crash, at most these
#: (and those still on the wire) can have reached the server without being recorded.
RECORD_EVERY = 100


def backoff_delays(retries: int, base: float, rng: random.Random | None = None) -> list[float]:
    """Exponential back-off with jitter: ``base * 2**i``, each between half and 1.5 times."""
    rng = rng or random.Random()
    return [base * 2**i * rng.uniform(0.5, 1.5) for i in range(retries)]


@dataclass
class Tally:
    """What happened to the messages of a run."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0
    resent_after_crash: int = 0
    #: messages whose outcome is unknown and that may reach (or have reached) their reader
    #: twice: a timeout or a dropped connection after the end of data (the SMTP transport)
    possibly_duplicated: int = 0
    failures: Counter[str] = field(default_factory=Counter)

    def add(self, other: Tally) -> None:
        """Count ``other``'s messages too (a worker process's, say)."""
        self.sent, self.failed = self.sent + other.sent, self.failed + other.failed
        self.skipped += other.skipped
        self.resent_after_crash += other.resent_after_crash
        self.possibly_duplicated += other.possibly_duplicated
        self.failures.update(other.failures)


@dataclass(frozen=True)
class Outbound:
    """Everything constant across a run's messages."""

    sender: Callable[[int], str]  # delivery id -> envelope sender (fixed, or VERP)
    edition_key: str
    templates: Mapping[int, MessageTemplate]  # by variant id
    numbers: Mapping[int, int]  # variant id -> variant number
    sign: Callable[[bytes], bytes] | None = None  # DKIM


#: A row's new column values, or the reason it was not handed over (left as it was).
Outcome = dict[str, object] | TransportUnavailable | SendLockLost


class Journal(Protocol):
    """Where a sender notes what is on the wire, so that a crash re-sends only that
    (:mod:`digest.delivery.journal`)."""

    def on_wire(self, delivery_id: int) -> None:
        """Just before the write holding this message's end of data."""

    def outcome(self, delivery_id: int, row: Mapping[str, object]) -> None:
        """The reply is known: ``row`` is what the ledger will record."""

    def flushed(self) -> None:
        """Every outcome passed so far is committed in the database."""


class Sender:
    """Sends batches through one transport, on ``transport.concurrency`` threads."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        transport: Transport,
        outbound: Outbound,
        limiter: RateLimiter | None = None,
        *,
        journal: Journal | None = None,
        holds: Callable[[], bool] | None = None,
    ) -> None:
        self.factory = factory
        self.journal = journal
        self.holds = holds
        self.transport = transport
        self.outbound = outbound
        self.limiter = limiter or RateLimiter()
        self.tally = Tally()
        self._lock = threading.Lock()
        self._in_a_row = 0
        self._down: TransportUnavailable | SendLockLost | None = None
        threads = transport.concurrency
        self._pool = ThreadPoolExecutor(threads, "digest-send") if threads > 1 else None

    def send_batch(self, claims: list[Claim]) -> int:
        """Send ``claims``, recording outcomes every ``RECORD_EVERY`` messages (one
        statement per kind of outcome) while the next ones go out; returns how many rows
        were handled. Raises TransportUnavailable (after recording what was done and
        giving back what was not) when the server is unreachable or keeps deferring."""
        if self._pool is None:
            results: Iterator[Outcome] = map(self._one, claims)
        else:  # all submitted at once, results taken in order as they come
            results = self._pool.map(self._one, claims)
        handled = 0
        outcomes: list[dict[str, object]] = []
        untouched: list[Claim] = []
        for item, result in zip(claims, results, strict=True):
            if isinstance(result, dict):
                outcomes.append(result)
                self._count(item, result)
                if len(outcomes) == RECORD_EVERY:
                    record(self.factory, outcomes)
                    self._flushed()
                    handled, outcomes = handled + len(outcomes), []
            else:
                untouched.append(item)
        record(self.factory, outcomes)
        self._flushed()
        release(self.factory, untouched)
        if self._down is not None:
            raise self._down
        return handled + len(outcomes)

    def _flushed(self) -> None:
        if self.journal is not None:
            self.journal.flushed()

    def _one(self, item: Claim) -> Outcome:
        if self._down is None and self.holds is not None and not self.holds():
            with self._lock:
                self._down = self._down or SendLockLost(
                    f"lost the send lock of edition {self.outbound.edition_key}; stopped "
                    "after recording what was sent (another `digest send` may be sending it)"
                )
        if self._down is not None:
            return self._down  # the server is down or the lock lost: leave the row untouched
        row = self._handed(item)
        if isinstance(row, dict) and self.journal is not None:
            self.journal.outcome(item.delivery_id, row)
        return row

    def _handed(self, item: Claim) -> Outcome:
        row: dict[str, object] = {"id": item.delivery_id}
        if item.address is None or item.token is None:
            row.update(
                status=DeliveryStatus.SKIPPED.value,
                detail="subscriber was erased",
                updated_at=utcnow(),
            )
            return row
        if item.subscriber_status != Status.ACTIVE:
            row.update(
                status=DeliveryStatus.SKIPPED.value,
                detail=f"subscriber is {item.subscriber_status} since planning",
                updated_at=utcnow(),
            )
            return row
        out = self.outbound
        raw = out.templates[item.variant_id].personalize(
            Recipient(item.address, item.name, item.token, item.message_id)
        )
        if out.sign is not None:
            raw = out.sign(raw)
        envelope = Envelope(
            out.sender(item.delivery_id),
            item.address,
            out.edition_key,
            out.numbers[item.variant_id],
        )
        self.limiter.acquire()
        if self.journal is not None:  # one message per connection at a time: the bound holds
            self.journal.on_wire(item.delivery_id)
        try:
            reply = self.transport.send(envelope, raw)
        except TransportUnavailable as exc:
            with self._lock:
                self._down = self._down or exc
            return exc
        except DeliveryFailed as exc:
            row.update(_failure(item, exc), updated_at=utcnow())
            self._temporary(not exc.permanent)
            return row
        self._temporary(False)
        now = utcnow()
        row.update(status=_SENT, detail=reply, sent_at=now, updated_at=now)
        return row

    def _temporary(self, failed: bool) -> None:
        """Track temporary failures in a row; past DOWN_AFTER the server counts as down."""
        if not failed:
            self.limiter.accepted()
            with self._lock:
                self._in_a_row = 0
            return
        self.limiter.deferred()
        with self._lock:
            self._in_a_row += 1
            if self._in_a_row >= DOWN_AFTER and self._down is None:
                self._down = TransportUnavailable(
                    f"{self._in_a_row} temporary failures in a row (the mail server seems "
                    "down); stopped, run `digest send` again later"
                )

    def _count(self, item: Claim, row: Mapping[str, object]) -> None:
        tally, status = self.tally, row["status"]
        if status == DeliveryStatus.SENT:
            tally.sent += 1
            tally.resent_after_crash += item.resend
        elif status == DeliveryStatus.SKIPPED:
            tally.skipped += 1
        elif status == DeliveryStatus.FAILED:
            tally.failed += 1
            tally.failures[failure_reason(str(row["detail"]))] += 1

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> Sender:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def failure_reason(detail: str) -> str:
    """A failure's reply as a reason shared by every recipient it happened to: addresses
    are replaced by ``<address>`` and the text is cut at 60 characters."""
    if detail.startswith(GAVE_UP):
        return "too many temporary failures"
    return _ADDRESS.sub("<address>", detail)[:60]


def _failure(item: Claim, exc: DeliveryFailed) -> dict[str, object]:
    if exc.permanent:
        return {"status": DeliveryStatus.FAILED.value, "detail": exc.reply}
    if item.attempts >= MAX_ATTEMPTS:
        return {
            "status": DeliveryStatus.FAILED.value,
            "detail": f"{GAVE_UP} {item.attempts} attempts: {exc.reply}",
        }
    return {"status": DeliveryStatus.DEFERRED.value, "detail": exc.reply}
