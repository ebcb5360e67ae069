"""A real transport that keeps messages in a list: for tests and previews."""

from __future__ import annotations

from dataclasses import dataclass, field

from digest.mail.transports.base import Envelope, TransportBase


@dataclass
class MemoryTransport(TransportBase):
    name = "memory"
    outbox: list[tuple[Envelope, bytes]] = field(default_factory=list)

    def send(self, envelope: Envelope, message: bytes) -> str:
        self.outbox.append((envelope, message))
        return f"250 kept in memory ({len(self.outbox)})"
