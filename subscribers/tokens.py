"""Opaque tokens for unsubscribe and preference links."""

from __future__ import annotations

import hmac
import re
import secrets

#: ``secrets.token_urlsafe(32)``: 256 random bits, 43 URL-safe characters.
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
    """Compare two tokens in constant time."""
    return hmac.compare_digest(a.encode("ascii", "replace"), b.encode("ascii", "replace"))
