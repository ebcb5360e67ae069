"""Send claimed batches: personalise each message, hand it over, classify the outcome.

Policy lives here, not in transports: a 5xx reply fails the row for good; a 4xx reply or a
dropped connection defers it until ``MAX_ATTEMPTS`` (retried later, per recipient, by the
run's back-off passes); an unreachable server (or too many temporary failures in a row)
stops the run, the rest of the batch given back untouched. Only server-wide signals (a 421,
a reply saying rate limit or too many) slow the shared rate limiter: one greylisted or full
mailbox does not slow the others.

Each of the transport's connections drains a shared queue of the batch's rows on its own
thread (:meth:`Transport.deliver`: a run of messages, pipelined across messages by SMTP);
the outcomes come back to the calling thread, which records them every ``RECORD_EVERY``.

Exactly once, as far as a sender can know it: a message whose end of data went out but
whose reply never came is *possibly duplicated*: it is deferred with a detail saying so,
never sent again in the same run, and counted, as is every row re-sent after a crash. A
:class:`Journal` hears of each message just before its end of data is written and of each
outcome, so that a crash re-sends at most what was on the wire. ``holds()`` is asked before
each message: when the sender can no longer prove it holds the edition, nothing more goes.
"""

from __future__ import annotations

import queue
import random
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from digest.delivery.ledger import Claim, record, release
from digest.delivery.outcomes import (
    MAX_ATTEMPTS,
    Tally,
    failure_reason,
    failure_row,
    server_wide,
    skipped_row,
)
from digest.delivery.ratelimit import RateLimiter
from digest.errors import SendLockLost, TransportUnavailable
from digest.mail.message import MessageTemplate, Recipient
from digest.mail.transports.base import DeliveryFailed, Envelope, Job, Transport
from digest.store.db import utcnow
from digest.store.models import DeliveryStatus

__all__ = ["MAX_ATTEMPTS", "Journal", "Outbound", "Sender", "Tally", "backoff_delays"]
__all__ += ["failure_reason"]

_SENT = DeliveryStatus.SENT.value  # read once: an enum's .value is a property
_DEFERRED = DeliveryStatus.DEFERRED.value

#: Temporary failures in a row that mean the server is down: the run stops.
DOWN_AFTER = 25
#: Outcomes are recorded after this many messages of a batch: after a crash, at most these
#: (and those still on the wire) can have reached the server without being recorded.
RECORD_EVERY = 100
#: A limiter slower than this many messages a second makes a connection finish the message
#: it holds before waiting (a server must not sit on an open DATA for the wait).
_SLOW = 1.0


class Journal(Protocol):
    """What a crash journal hears from the sender. ``on_wire`` and ``outcome`` are called
    from the connection threads (they must be thread-safe); ``flushed`` from the thread
    that called :meth:`Sender.send_batch`."""

    def on_wire(self, delivery_id: int) -> None:
        """Just BEFORE the write that holds this message's end of data (".\\r\\n")."""

    def outcome(self, delivery_id: int, row: Mapping[str, object]) -> None:
        """Its reply is known (``row``: the ledger columns it will be recorded with)."""

    def flushed(self) -> None:
        """Every outcome passed so far is committed in the database."""


def backoff_delays(retries: int, base: float, rng: random.Random | None = None) -> list[float]:
    """Exponential back-off with jitter: ``base * 2**i``, each between half and 1.5 times."""
    rng = rng or random.Random()
    return [base * 2**i * rng.uniform(0.5, 1.5) for i in range(retries)]


@dataclass(frozen=True)
class Outbound:
    """Everything constant across a run's messages."""

    sender: Callable[[int], str]  # delivery id -> envelope sender (fixed, or VERP)
    edition_key: str
    templates: Mapping[int, MessageTemplate]  # by variant id
    numbers: Mapping[int, int]  # variant id -> variant number
    sign: Callable[[bytes], bytes] | None = None  # DKIM


#: What a connection thread passes back: a row's outcome, or that the thread has ended
#: (with the claims it took and never handed over, and what stopped it, if anything).
_Done = tuple[list[Claim], BaseException | None]


class Sender:
    """Sends batches through one transport, one thread per connection."""

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
        self.transport = transport
        self.outbound = outbound
        self.limiter = limiter or RateLimiter()
        self.journal = journal
        self.holds = holds
        self.tally = Tally()
        self._lock = threading.Lock()
        self._in_a_row = 0
        self._down: TransportUnavailable | None = None
        self._lost = False
        #: rows whose outcome is unknown: deferred, never sent again by this sender
        self.held_back: set[int] = set()

    def send_batch(self, claims: list[Claim]) -> int:
        """Send ``claims``, recording outcomes every ``RECORD_EVERY`` messages while the
        next ones go out; returns how many rows were handled. Raises TransportUnavailable
        when the server is unreachable or keeps deferring, SendLockLost when ``holds()``
        said no; either after recording what was done and giving back what was not."""
        held = [c for c in claims if c.delivery_id in self.held_back]
        todo: queue.SimpleQueue[Claim] = queue.SimpleQueue()
        for item in claims:
            if item.delivery_id not in self.held_back:
                todo.put(item)
        outcomes: list[dict[str, object]] = []
        untouched: list[Claim] = list(held)
        handled = 0
        failure: BaseException | None = None

        def take(item: Claim, row: dict[str, object]) -> None:
            nonlocal outcomes, handled
            outcomes.append(row)
            self._count(item, row)
            if len(outcomes) == RECORD_EVERY:
                self._record(outcomes)
                handled, outcomes = handled + len(outcomes), []

        threads = max(1, self.transport.concurrency)
        if threads == 1:  # on this thread: an exception (a kill, in tests) records nothing
            left, failure = self._connection(todo, take)
            untouched += left
        else:
            handover = _Handover(RECORD_EVERY)
            workers = [
                threading.Thread(
                    target=self._threaded,
                    args=(todo, handover),
                    name=f"digest-send-{n}",
                    daemon=True,
                )
                for n in range(threads)
            ]
            for worker in workers:
                worker.start()
            running = len(workers)
            while running:
                rows, ended = handover.take()
                for item, row in rows:
                    take(item, row)
                for left, stopped in ended:
                    untouched += left
                    failure = failure or stopped
                    running -= 1
            for worker in workers:
                worker.join()
        while True:  # whatever no connection took (they all ended early)
            try:
                untouched.append(todo.get_nowait())
            except queue.Empty:
                break
        self._record(outcomes)
        release(self.factory, untouched)
        if failure is not None:
            raise failure
        if self._down is not None:
            raise self._down
        if self._lost:
            raise SendLockLost(self.outbound.edition_key)
        return handled + len(outcomes)

    def _record(self, outcomes: list[dict[str, object]]) -> None:
        record(self.factory, outcomes)
        if self.journal is not None and outcomes:
            self.journal.flushed()

    def _threaded(
        self,
        todo: queue.SimpleQueue[Claim],
        handover: _Handover,
    ) -> None:
        handover.end(self._connection(todo, handover.put))

    def _connection(
        self, todo: queue.SimpleQueue[Claim], put: Callable[[Claim, dict[str, object]], None]
    ) -> _Done:
        """One connection's run: hand over rows from ``todo`` until it is empty or the run
        must stop; returns the rows taken but not handed over, and an unexpected error."""
        taken: dict[int, Claim] = {}
        journal = self.journal
        on_wire = journal.on_wire if journal is not None else _nothing
        try:
            for job, result in self.transport.deliver(self._jobs(todo, taken, put), on_wire):
                item = taken.pop(job.key)
                row = self._outcome(item, result)
                if journal is not None:
                    journal.outcome(item.delivery_id, row)
                put(item, row)
        except _Stopped:  # a message whose DATA was accepted is abandoned, not finished
            pass
        except TransportUnavailable as exc:
            with self._lock:
                self._down = self._down or exc
        except Exception as exc:  # recorded and given back, then raised by send_batch
            with self._lock:
                self._down = self._down or TransportUnavailable(str(exc))
            return list(taken.values()), exc
        return list(taken.values()), None

    def _jobs(
        self,
        todo: queue.SimpleQueue[Claim],
        taken: dict[int, Claim],
        put: Callable[[Claim, dict[str, object]], None],
    ) -> Iterator[Job | None]:
        """The messages of one connection, personalised as it asks for them. Ends when
        the batch is done; raises _Stopped when the run must stop (the server is down, the
        send lock is lost): then nothing more goes, not even the content of a message whose
        DATA was accepted (its row is given back)."""
        out, limiter = self.outbound, self.limiter
        while True:
            if self._down is not None or self._lost:
                raise _Stopped
            if self.holds is not None and not self.holds():
                self._lost = True
                raise _Stopped
            try:
                item = todo.get_nowait()
            except queue.Empty:
                return
            skipped = skipped_row(item)
            if skipped is not None:
                put(item, skipped)
                continue
            assert item.address is not None
            assert item.token is not None
            template = out.templates[item.variant_id]
            pieces = template.pieces(
                Recipient(item.address, item.name, item.token, item.message_id)
            )
            plain = template.plain
            if out.sign is not None:
                raw = b"".join(pieces)
                signed = out.sign(raw)
                plain = plain and not _dotted(signed[: len(signed) - len(raw) + 1])
                pieces = [signed]
            envelope = Envelope(
                out.sender(item.delivery_id),
                item.address,
                out.edition_key,
                out.numbers[item.variant_id],
            )
            if limiter.per_hour or (limiter.rate is not None and limiter.rate < _SLOW):
                yield None  # a long wait may follow: finish the message on the wire first
            limiter.acquire()
            taken[item.delivery_id] = item
            yield Job(item.delivery_id, envelope, pieces, plain)

    def _outcome(self, item: Claim, result: str | DeliveryFailed) -> dict[str, object]:
        """The row's new columns; tracks temporary failures and server-wide slow-downs."""
        now = utcnow()
        if isinstance(result, str):
            self._temporary(False)
            return {
                "id": item.delivery_id,
                "status": _SENT,
                "detail": result,
                "sent_at": now,
                "updated_at": now,
            }
        row: dict[str, object] = {"id": item.delivery_id}
        if result.unknown:
            with self._lock:
                self.held_back.add(item.delivery_id)
            row.update(status=_DEFERRED, detail=result.reply)
        else:
            row.update(failure_row(item, result))
        row["updated_at"] = now
        if not result.permanent:
            self._temporary(True, slow_down=server_wide(result))
        return row

    def _temporary(self, failed: bool, *, slow_down: bool = False) -> None:
        """Track temporary failures in a row (past DOWN_AFTER the server counts as down);
        only a server-wide one slows the rate."""
        if not failed:
            self.limiter.accepted()
            with self._lock:
                self._in_a_row = 0
            return
        if slow_down:
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
        # a re-sent in-flight row was counted as possibly duplicated once, by the resume
        # that found it (whatever happens to it next); it is not counted again here
        if status == DeliveryStatus.SENT:
            tally.sent += 1
            tally.resent_after_crash += item.resend
        elif status == DeliveryStatus.SKIPPED:
            tally.skipped += 1
        elif status == DeliveryStatus.FAILED:
            tally.failed += 1
            tally.failures[failure_reason(str(row["detail"]))] += 1
        elif row["id"] in self.held_back:
            tally.possibly_duplicated += 1  # went out, no reply: counted once

    def close(self) -> None:
        return None

    def __enter__(self) -> Sender:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Handover:
    """Outcomes passed from the connection threads to the batch's thread, which is woken
    when ``every`` are waiting, a connection has ended or ``wait`` seconds have passed
    (counts stay current at a slow rate), not once per message: a thread switch per
    message was a large share of the sender's CPU."""

    def __init__(self, every: int, wait: float = 0.5) -> None:
        self.every = every
        self.wait = wait
        self._ready = threading.Condition(threading.Lock())
        self._rows: list[tuple[Claim, dict[str, object]]] = []
        self._ended: list[_Done] = []

    def put(self, item: Claim, row: dict[str, object]) -> None:
        with self._ready:
            self._rows.append((item, row))
            if len(self._rows) >= self.every:
                self._ready.notify()

    def end(self, done: _Done) -> None:
        """A connection's run is over (after every outcome it put)."""
        with self._ready:
            self._ended.append(done)
            self._ready.notify()

    def take(self) -> tuple[list[tuple[Claim, dict[str, object]]], list[_Done]]:
        """Wait until ``every`` outcomes are waiting, a connection has ended or ``wait``
        seconds have passed; take all there are."""
        with self._ready:
            self._ready.wait_for(
                lambda: len(self._rows) >= self.every or bool(self._ended), self.wait
            )
            rows, self._rows = self._rows, []
            ended, self._ended = self._ended, []
        return rows, ended


class _Stopped(Exception):
    """Raised into a connection's run: hand over nothing more."""


def _nothing(delivery_id: int) -> None:
    return None


def _dotted(data: bytes) -> bool:
    return data.startswith(b".") or b"\r\n." in data
