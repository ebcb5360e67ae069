"""VERP: a per-delivery envelope sender, so a bounce names the delivery it is about.

With ``bounce_address = "bounces@example.org"`` the SMTP ``MAIL FROM`` of delivery 1234 is
``bounces+1234-<check>@example.org``, where ``<check>`` is the first 8 hex digits of an
HMAC-SHA256 of the delivery id under ``verp_secret``. A bounce sent to that address maps back
to the ledger row; one with a forged or damaged check maps to nothing, so nobody can make us
suppress a reader by mailing a fake bounce. The check is lower-case hex and compared
case-insensitively, because some mail systems change the case of local parts.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Protocol

from digest.errors import ConfigError

SEPARATOR = "+"
CHECK_LENGTH = 8
MAX_ID = 10**19 - 1
_CONTEXT = b"digest-verp\x00"
_VERP = re.compile(
    r"(?P<local>[^@\s<>]+)\+(?P<id>0|[1-9][0-9]{0,18})-(?P<check>[0-9a-fA-F]{8})"
    r"@(?P<domain>[^@\s<>]+)"
)


def _check(secret: bytes, delivery_id: int) -> str:
    digest = hmac.new(secret, _CONTEXT + str(delivery_id).encode("ascii"), hashlib.sha256)
    return digest.hexdigest()[:CHECK_LENGTH]


def verp_address(bounce_local: str, domain: str, delivery_id: int, secret: bytes) -> str:
    """``bounce_local+<delivery_id>-<check>@domain``."""
    if not secret:
        raise ValueError("the VERP secret is empty")
    if isinstance(delivery_id, bool) or not 0 <= delivery_id <= MAX_ID:
        raise ValueError(f"delivery id {delivery_id!r} is out of range")
    if not bounce_local or not domain or re.search(r"[@\s<>]", bounce_local + domain):
        raise ValueError(f"{bounce_local!r}@{domain!r} is not a plain address")
    check = _check(secret, delivery_id)
    return f"{bounce_local}{SEPARATOR}{delivery_id}-{check}@{domain}"


def parse_verp(address: str, secret: bytes) -> int | None:
    """The delivery id in a VERP address we made, or None (forged, damaged, or not VERP).

    Accepts the address bare or in angle brackets; never raises.
    """
    if not isinstance(address, str) or not secret or len(address) > 320:
        return None
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    match = _VERP.fullmatch(text)
    if match is None:
        return None
    delivery_id = int(match["id"])
    if not hmac.compare_digest(_check(secret, delivery_id), match["check"].lower()):
        return None
    return delivery_id


class VerpOptions(Protocol):
    """What the envelope sender depends on (the settings carry it)."""

    @property
    def sender_address(self) -> str: ...
    @property
    def bounce_address(self) -> str | None: ...
    @property
    def verp_secret(self) -> str | None: ...


def envelope_sender(options: VerpOptions, delivery_id: int) -> str:
    """The SMTP ``MAIL FROM`` for one delivery: VERP when ``bounce_address`` is set, else the
    sender address."""
    if options.bounce_address is None:
        return options.sender_address
    if not options.verp_secret:
        raise ConfigError("verp_secret", "is missing but bounce_address is set")
    local, _, domain = options.bounce_address.rpartition("@")
    return verp_address(local, domain, delivery_id, options.verp_secret.encode("utf-8"))
