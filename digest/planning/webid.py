"""The id of a variant's web version (``BASE/v/<web_id>``): unguessable, yet the same for
a preview and for the send, so a preview is byte for byte what the send hands over.

It is HMAC-SHA256 of (edition key, variant key) under this database's random salt
(:func:`subscribers.suppression.email_salt`, made by migration 0002), with its own
prefix so it can never equal an address hash: 192 bits, 39 characters of lowercase base32
(``a-z2-7``). One word that long is no spam filter's crypto-wallet address: the 32
characters of base64url that earlier versions used were, for about one variant in 600 (a
word of 26 to 35 characters starting with 1 or 3 is a bitcoin address to SpamAssassin), and
that variant's digest then scored BITCOIN_DEADLINE wherever a summary said "within 24
hours". Variants planned before keep their stored ids, and their links keep working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from sqlalchemy.orm import Session

from digest.planning.selection import VariantKey
from subscribers.suppression import email_salt


def web_id_for(salt: bytes, edition_key: str, key: VariantKey) -> str:
    message = f"web-version\0{edition_key}\0{key[0]!r}\0{key[1]!r}"
    if key[2]:  # notices; a digest without any keeps the id it always had
        message += f"\0{key[2]!r}"
    mac = hmac.new(salt, message.encode("ascii"), hashlib.sha256).digest()
    return base64.b32encode(mac[:24]).decode("ascii").rstrip("=").lower()


def web_salt(session: Session) -> bytes:
    return email_salt(session)
