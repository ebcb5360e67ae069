"""What the subscriber pages' views share: settings, sessions, clock, transport, the form
key, the forms' abuse limits (:mod:`digest.web.limits`) and the trusted proxies, kept in
``current_app.extensions`` by ``create_app`` and read through :func:`current_web`."""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask, current_app
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings
from digest.mail.transports.base import Transport
from digest.store.db import transaction
from digest.web import security
from digest.web.limits import SignupLimits
from subscribers.preferences import form_key

#: The key of the shared state in ``app.extensions``.
EXTENSION = "digest_web"
CACHED_PAGES = 64


class PageCache:
    """The last ``size`` pages built, by key (least recently stored forgotten first).
    Thread-safe."""

    def __init__(self, size: int = CACHED_PAGES) -> None:
        self.size = size
        self._pages: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._pages.get(key)

    def put(self, key: str, page: str) -> None:
        with self._lock:
            self._pages[key] = page
            while len(self._pages) > self.size:
                self._pages.popitem(last=False)


@dataclass
class WebApp:
    """What the views share (one per app)."""

    settings: Settings
    factory: sessionmaker[Session]
    now: Callable[[], dt.datetime]
    transport: Callable[[], Transport]
    key: bytes
    """The database's form-signing key (see :func:`ensure_form_key`)."""
    limits: SignupLimits
    proxies: tuple[security.Network, ...] = ()
    """Reverse proxies whose ``X-Forwarded-For`` is believed (``trusted_proxies``)."""
    web_versions: PageCache = field(default_factory=PageCache)

    def install(self, app: Flask) -> None:
        """Make this the state :func:`current_web` returns inside ``app``."""
        app.extensions[EXTENSION] = self


def ensure_form_key(factory: sessionmaker[Session]) -> bytes:
    """The database's form-signing key, created (one row of ``instance_secrets``) if it
    does not exist yet. Called once when the app is created, so no request has to write."""
    with transaction(factory) as session:
        return form_key(session)


def current_web() -> WebApp:
    """The shared state of the app handling the current request."""
    web = current_app.extensions[EXTENSION]
    assert isinstance(web, WebApp), "create_app() installs the shared state"
    return web
