"""What the subscriber pages' handlers share: settings, sessions, clock, transport and
the in-process rate limiters (documented in :mod:`digest.web.security`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings
from digest.mail.transports.base import Transport
from digest.store.db import transaction
from digest.web import security
from subscribers.preferences import form_key

#: Sign-ups and link requests: per client address, and per email address.
IP_LIMIT, IP_WINDOW = 10, 600.0
ADDRESS_LIMIT, ADDRESS_WINDOW = 3, 3600.0


@dataclass
class WebApp:
    """What the page handlers share (one per app)."""

    settings: Settings
    factory: sessionmaker[Session]
    now: Callable[[], dt.datetime]
    transport: Callable[[], Transport]
    per_ip: security.RateLimiter = field(
        default_factory=lambda: security.RateLimiter(IP_LIMIT, IP_WINDOW)
    )
    per_address: security.RateLimiter = field(
        default_factory=lambda: security.RateLimiter(ADDRESS_LIMIT, ADDRESS_WINDOW)
    )
    _key: bytes | None = None

    @property
    def key(self) -> bytes:
        """The database's form-signing key (read once)."""
        if self._key is None:
            with transaction(self.factory) as session:
                self._key = form_key(session)
        return self._key
