"""Amazon SNS message signatures: RSA (PKCS#1 v1.5) over a canonical string, SHA1 for
SignatureVersion 1 and SHA256 for 2, with the certificate at SigningCertURL, which must be
an https URL on an amazonaws.com host. Uses dkimpy's RSA code (no extra dependency)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from dkim.crypto import RSASSA_PKCS1_v1_5_verify, UnparsableKeyError, parse_public_key

from digest.errors import DataError

Fetch = Callable[[str], bytes]
_NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRM_KEYS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL)


def check_aws_url(url: str) -> str:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not (host == "amazonaws.com" or host.endswith(".amazonaws.com")):
        raise DataError(f"{url!r} is not an https URL on an amazonaws.com host")
    return url


def canonical(message: Mapping[str, Any]) -> bytes:
    keys = _NOTIFICATION_KEYS if message.get("Type") == "Notification" else _CONFIRM_KEYS
    parts = [f"{key}\n{message[key]}\n" for key in keys if message.get(key) is not None]
    return "".join(parts).encode("utf-8")


def verify(message: Mapping[str, Any], fetch: Fetch) -> None:
    """Raise DataError unless ``message`` carries a valid SNS signature."""
    version = str(message.get("SignatureVersion", ""))
    if version not in ("1", "2"):
        raise DataError(f"unsupported SNS SignatureVersion {version!r}")
    cert_url = check_aws_url(str(message.get("SigningCertURL", "")))
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
    except (binascii.Error, ValueError):
        raise DataError("the SNS signature is not base64") from None
    key = public_key(fetch(cert_url))
    digest = hashlib.sha1 if version == "1" else hashlib.sha256
    try:
        valid = RSASSA_PKCS1_v1_5_verify(digest(canonical(message)), signature, key)
    except (KeyError, ValueError, TypeError, OverflowError):
        valid = False
    if not valid:
        raise DataError("the SNS signature does not verify")


def public_key(pem: bytes) -> Any:
    """The RSA public key of a PEM X.509 certificate (its SubjectPublicKeyInfo)."""
    match = _PEM.search(pem)
    if match is None:
        raise DataError("SigningCertURL did not return a PEM certificate")
    try:
        der = base64.b64decode(b"".join(match[1].split()), validate=True)
        certificate = _children(_element(der, 0)[1])
        tbs = _children(certificate[0])
        if tbs and tbs[0][0] == 0xA0:  # [0] version
            tbs = tbs[1:]
        tag, spki = tbs[5]
        return parse_public_key(_encode(tag, spki))
    except (binascii.Error, IndexError, ValueError, UnparsableKeyError) as exc:
        raise DataError(f"cannot read the SNS certificate: {exc}") from None


def _element(data: bytes, at: int) -> tuple[int, bytes, int]:
    """(tag, content, next offset) of the DER element at ``at``."""
    tag, size = data[at], data[at + 1]
    at += 2
    if size & 0x80:
        count = size & 0x7F
        size = int.from_bytes(data[at : at + count], "big")
        at += count
    if at + size > len(data):
        raise ValueError("truncated DER")
    return tag, data[at : at + size], at + size


def _children(content: bytes | tuple[int, bytes]) -> list[tuple[int, bytes]]:
    data = content[1] if isinstance(content, tuple) else content
    found, at = [], 0
    while at < len(data):
        tag, inner, at = _element(data, at)
        found.append((tag, inner))
    return found


def _encode(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content
