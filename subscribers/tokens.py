"""Opaque tokens for unsubscribe, preference and confirmation links.

Every token is ``secrets.token_urlsafe(32)``: 256 random bits in 43 URL-safe characters.
Unsubscribe/preferences tokens are kept as they are (each digest is built with them) and
are found only by their keyed hash (:func:`token_digest`: HMAC-SHA256 with the database's
``token_key``), so the time a look-up takes says nothing about the stored tokens; a
confirmation token is stored only as its sha256 (:func:`token_hash`). Tokens are compared
in constant time and never logged or printed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

TOKEN_BYTES = 32
TOKEN_LENGTH = 43
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43}")


def new_token() -> str:
    """A fresh unguessable token of 256 bits."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def looks_like_token(value: str) -> bool:
    """Whether ``value`` has a token's shape (checked before any database look-up)."""
    return _TOKEN_RE.fullmatch(value) is not None


def tokens_equal(a: str, b: str) -> bool:
    """Compare two tokens (or two token hashes) in constant time."""
    return hmac.compare_digest(a.encode("ascii", "replace"), b.encode("ascii", "replace"))


def token_hash(token: str) -> str:
    """The sha256 of ``token`` in hex: what is stored for confirmation tokens."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def token_digest(key: bytes, token: str) -> str:
    """HMAC-SHA256(key, token) in hex: what a subscriber's token is looked up by. Any text
    (malformed tokens included) goes through the same steps."""
    data = token.encode("utf-8", "surrogatepass")
    return hmac.new(key, data, hashlib.sha256).hexdigest()
