"""Transports: smtp, file, console and memory, all keeping :class:`Transport`.

Transports know no database and no settings: each is built from its own small options
(``SmtpOptions``, a folder, nothing) by :func:`digest.delivery.transport.make_transport`.
"""

from __future__ import annotations

from digest.mail.transports.base import DeliveryFailed, Envelope, Transport
from digest.mail.transports.console import ConsoleTransport
from digest.mail.transports.file import FileTransport
from digest.mail.transports.memory import MemoryTransport
from digest.mail.transports.smtp import SmtpOptions, SmtpTransport

__all__ = [
    "ConsoleTransport",
    "DeliveryFailed",
    "Envelope",
    "FileTransport",
    "MemoryTransport",
    "SmtpOptions",
    "SmtpTransport",
    "Transport",
]
