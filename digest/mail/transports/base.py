"""The transport contract: hand over finished bytes, report how it went, close.

Transports only deliver. Retries, rate limits and the ledger live in
:mod:`digest.edition.run`, so every transport is a few dozen lines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import NamedTuple, Protocol

from digest.errors import TransportError


class Envelope(NamedTuple):
    """SMTP envelope plus where the message belongs (for transports that file messages)."""

    sender: str
    recipient: str
    edition_key: str = ""
    variant: int = 0


class Job(NamedTuple):
    """One message for :meth:`Transport.deliver`: ``key`` names it in the callbacks (the
    ledger row's id); ``message`` is its bytes in pieces, to be written one after another
    (``MessageTemplate.pieces``: never joined on the way to an SMTP server); ``plain``
    says no line of the message starts with a dot, so SMTP need not look for one (the
    template knows it: see ``MessageTemplate.plain``)."""

    key: int
    envelope: Envelope
    message: Sequence[bytes]
    plain: bool = False

    def whole(self) -> bytes:
        """The message in one piece (a copy, unless it is one piece already)."""
        message = self.message
        return message[0] if len(message) == 1 else b"".join(message)


class DeliveryFailed(TransportError):
    """One message was refused. ``permanent`` failures (5xx) must never be retried.
    ``unknown``: its end of data was written but no reply came (a timeout, a dropped
    connection); the server may have taken it, so it must not be sent again at once."""

    def __init__(
        self, reply: str, *, permanent: bool, code: int | None = None, unknown: bool = False
    ) -> None:
        super().__init__(reply)
        self.reply = reply
        self.permanent = permanent
        self.code = code
        self.unknown = unknown


#: What :meth:`Transport.deliver` yields per message: the server's reply, or the failure.
Delivered = tuple[Job, "str | DeliveryFailed"]
#: Called with a job's key just before the write that holds its end of data.
OnWire = Callable[[int], None]


class Transport(Protocol):
    """Send one message; raise :class:`DeliveryFailed` for that message, or
    :class:`~digest.errors.TransportUnavailable` when nothing can be sent at all."""

    name: str
    #: How many threads may call :meth:`send` at once (SMTP: its connections).
    concurrency: int

    def send(self, envelope: Envelope, message: bytes) -> str:
        """Deliver ``message``; return the server's reply (or where it was written)."""
        ...

    def deliver(self, jobs: Iterable[Job | None], on_wire: OnWire) -> Iterator[Delivered]:
        """Deliver a run of messages on one connection, yielding each outcome as soon as it
        is known (SMTP with PIPELINING: one message later). A ``None`` among the jobs means
        "nothing more for a while": finish what is on the wire first. Raises
        TransportUnavailable (after yielding what it knows) when nothing more can be sent;
        jobs it took but did not yield are then untouched."""
        ...

    def close(self) -> None: ...


class TransportBase:
    """Context-manager support for transports."""

    name = "base"
    concurrency = 1

    def send(self, envelope: Envelope, message: bytes) -> str:
        raise NotImplementedError

    def deliver(self, jobs: Iterable[Job | None], on_wire: OnWire) -> Iterator[Delivered]:
        """One message at a time through :meth:`send` (transports that do not pipeline)."""
        for job in jobs:
            if job is None:
                continue
            on_wire(job.key)
            try:
                reply = self.send(job.envelope, job.whole())
            except DeliveryFailed as exc:
                yield job, exc
                continue
            yield job, reply

    def close(self) -> None:
        return None

    def __enter__(self) -> TransportBase:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
