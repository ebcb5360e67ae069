"""The transport contract: hand over finished bytes, report how it went, close.

Transports only deliver. Retries, rate limits and the ledger live in
:mod:`digest.edition.run`, so every transport is a few dozen lines.
"""

from __future__ import annotations

from types import TracebackType
from typing import NamedTuple, Protocol

from digest.errors import TransportError


class Envelope(NamedTuple):
    """SMTP envelope plus where the message belongs (for transports that file messages)."""

    sender: str
    recipient: str
    edition_key: str = ""
    variant: int = 0


class DeliveryFailed(TransportError):
    """One message was refused. ``permanent`` failures (5xx) must never be retried."""

    def __init__(self, reply: str, *, permanent: bool, code: int | None = None) -> None:
        super().__init__(reply)
        self.reply = reply
        self.permanent = permanent
        self.code = code


class Transport(Protocol):
    """Send one message; raise :class:`DeliveryFailed` for that message, or
    :class:`~digest.errors.TransportUnavailable` when nothing can be sent at all."""

    name: str
    #: How many threads may call :meth:`send` at once (SMTP: its connections).
    concurrency: int

    def send(self, envelope: Envelope, message: bytes) -> str:
        """Deliver ``message``; return the server's reply (or where it was written)."""
        ...

    def close(self) -> None: ...


class TransportBase:
    """Context-manager support for transports."""

    name = "base"
    concurrency = 1

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
