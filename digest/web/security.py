"""Safeguards of the subscriber pages: signed form values, rate limits, response headers
and keeping tokens out of logs. Pure functions and small classes, no Flask globals.

* **CSRF.** The preferences form carries ``hmac(key, "prefs:" + token)``; the key is a
  random value kept in the database (:func:`subscribers.preferences.form_key`), so every
  process agrees and no cookie is needed. The sign-up and "email me my link" forms carry a
  signed time stamp instead (there is no token yet): a form older than a day is refused.
* **Rate limits**: the forms' limits are counted in the database (:mod:`digest.web.limits`);
  :class:`RateLimiter` is a bounded sliding window in process memory for other uses. The
  client is the peer, or behind a trusted proxy the last ``X-Forwarded-For`` hop that is
  not one (:func:`forwarded_client`).
* **Logs**: :class:`RedactTokens` replaces every token in a path (``/u/``, ``/p/``,
  ``/confirm/``) with ``<token>``, and the value of every secret-looking query parameter
  (``secret``, ``token``, ``key``, ``signature``...) with ``<redacted>``, in the records of
  the loggers it is attached to (werkzeug's access log among them).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

#: Pages whose URL holds a personal token: never cached, never sent as a referrer.
TOKEN_PATHS = re.compile(r"/(u|p|confirm)/[^/?#\s\"']+")
#: A query parameter whose value is a credential (``?secret=`` of a bounce webhook...).
SECRET_PARAMS = re.compile(
    r"(?i)([?&;](?:[\w.-]*(?:secret|token|key|signature|password|passwd|auth|sig|code))=)"
    r"[^&;#\s\"']*"
)
FORM_MAX_AGE = 24 * 3600.0
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

PAGE_CSP = (
    "default-src 'none'; style-src 'nonce-{nonce}'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
#: The web version of an email: its own inline styles and remote images, no script, no form.
EMAIL_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
    "sandbox allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation"
)


def csrf_value(key: bytes, token: str) -> str:
    """The CSRF value of the preferences form of ``token``."""
    return hmac.new(key, f"prefs:{token}".encode(), hashlib.sha256).hexdigest()


def csrf_ok(key: bytes, token: str, sent: str) -> bool:
    return hmac.compare_digest(csrf_value(key, token).encode(), sent.encode("utf-8", "replace"))


def form_stamp(key: bytes, now: float) -> str:
    """A signed time stamp for a form that has no token (sign-up, link request)."""
    moment = str(int(now))
    mac = hmac.new(key, f"form:{moment}".encode(), hashlib.sha256).hexdigest()[:32]
    return f"{moment}.{mac}"


def stamp_ok(key: bytes, stamp: str, now: float, max_age: float = FORM_MAX_AGE) -> bool:
    moment, _, mac = stamp.partition(".")
    if not (moment.isascii() and moment.isdigit()) or len(moment) > 12:
        return False
    expected = hmac.new(key, f"form:{moment}".encode(), hashlib.sha256).hexdigest()[:32]
    return hmac.compare_digest(expected.encode(), mac.encode("utf-8", "replace")) and (
        0 <= now - int(moment) <= max_age
    )


def redact(text: str) -> str:
    """``text`` with every token of a subscriber link replaced by ``<token>`` and the value
    of every secret query parameter by ``<redacted>``."""
    text = TOKEN_PATHS.sub(lambda m: f"/{m.group(1)}/<token>", text)
    return SECRET_PARAMS.sub(lambda m: f"{m.group(1)}<redacted>", text)


class RedactTokens(logging.Filter):
    """Rewrites log records so no token of a subscriber link is ever written."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_redaction(*loggers: logging.Logger) -> None:
    for logger in loggers:
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


class RateLimiter:
    """At most ``limit`` events per ``window`` seconds per key, remembering at most
    ``max_keys`` keys (least recently seen forgotten first). Thread-safe."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window, self.max_keys, self.clock = limit, window, max_keys, clock
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, key: str) -> bool:
        """Count one event for ``key``; False when it is over the limit (not counted)."""
        now = self.clock()
        with self._lock:
            times = self._seen.pop(key, None) or deque()
            while times and now - times[0] >= self.window:
                times.popleft()
            allowed = len(times) < self.limit
            if allowed:
                times.append(now)
            self._seen[key] = times
            while len(self._seen) > self.max_keys:
                self._seen.popitem(last=False)
            return allowed

    def __len__(self) -> int:
        return len(self._seen)


def address_key(key: bytes, address: str) -> str:
    """What the per-address limiter remembers: a keyed hash, never the address."""
    return hmac.new(key, address.strip().lower().encode(), hashlib.sha256).hexdigest()[:32]


def networks(text: str | None) -> tuple[Network, ...]:
    """The networks of a ``trusted_proxies`` setting (already validated)."""
    if not text:
        return ()
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(","))


def _within(address: str, proxies: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def forwarded_client(remote: str, forwarded: list[str], proxies: tuple[Network, ...]) -> str:
    """The client's address: ``remote`` unless it is a trusted proxy; then the last hop of
    ``X-Forwarded-For`` that is not a trusted proxy (hops before it could be forged)."""
    if not _within(remote, proxies):
        return remote
    hops = [hop.strip() for header in forwarded for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _within(hop, proxies):
            return hop[:64]
    return hops[0][:64] if hops else remote


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


def headers_for(path: str, nonce: str, *, email: bool = False) -> dict[str, str]:
    """Security headers of a response to ``path``."""
    headers = {
        "Content-Security-Policy": EMAIL_CSP if email else PAGE_CSP.format(nonce=nonce),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "interest-cohort=()",
    }
    if TOKEN_PATHS.match(path) or path.startswith(("/subscribe", "/unsubscribe")):
        headers["Cache-Control"] = "no-store"
        headers["X-Robots-Tag"] = "noindex"
    return headers
