"""The transport of a run, built at the edge from the settings (transports never see them)."""

from __future__ import annotations

from digest.config import Settings
from digest.errors import ConfigError
from digest.mail.transports import (
    ConsoleTransport,
    FileTransport,
    MemoryTransport,
    SmtpTransport,
    Transport,
)


def make_transport(settings: Settings, name: str | None = None) -> Transport:
    """The transport called ``name`` (default: the configured one)."""
    name = name or settings.transport
    if name == "smtp":
        if settings.smtp is None:
            raise ConfigError("smtp_url", "is needed to send through SMTP")
        return SmtpTransport(settings.smtp, connections=settings.smtp_connections)
    if name == "file":
        return FileTransport(settings.outbox_dir)
    if name == "console":
        return ConsoleTransport()
    if name == "memory":
        return MemoryTransport()
    raise ConfigError("transport", f"unknown transport {name!r}")
