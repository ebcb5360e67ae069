"""Opaque tokens for unsubscribe, preference and confirmation links.

Every token is 43 URL-safe characters with no ``-`` (about 255 random bits): one word, so
that no spam filter's pattern for a crypto-wallet address can find one inside it (see
:func:`new_token`); tokens made before that may hold a ``-`` and keep working.
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
    """A fresh unguessable token: ``secrets.token_urlsafe(32)``, drawn again while it holds a
    ``-`` (about half the draws), so each is uniform over the 43-character tokens without one.

    A ``-`` split a token into words, and a word of 26 to 35 characters that starts with 1 or 3
    is a bitcoin address to SpamAssassin (``__BITCOIN_ID``): about one token in 4,000 made
    its reader's digest look like one, and a summary saying "within 24 hours" then scored
    BITCOIN_DEADLINE. A token of one 43-character word is too long for any such pattern."""
    while "-" in (token := secrets.token_urlsafe(TOKEN_BYTES)):
        pass
    return token


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
