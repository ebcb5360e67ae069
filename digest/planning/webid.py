"""The id of a variant's web version (``BASE/v/<web_id>``): unguessable, yet the same for
a preview and for the send, so a preview is byte for byte what the send hands over.

It is HMAC-SHA256 of (edition key, variant key) under this database's random salt
(:func:`subscribers.suppression.email_salt`, made by migration 0002), with its own
prefix so it can never equal an address hash: 192 bits, 32 URL-safe characters.
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
    return base64.urlsafe_b64encode(mac[:24]).decode("ascii")


def web_salt(session: Session) -> bytes:
    return email_salt(session)
