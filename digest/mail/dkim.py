"""DKIM signing (RFC 6376) with dkimpy: optional, one signature per key, once per message.

On when ``dkim_selector`` is set. Signatures use ``c=relaxed/relaxed`` (an MTA that refolds a
header does not break them), ``rsa-sha256`` or ``ed25519-sha256`` (never ``rsa-sha1``, RFC 8301),
and cover every header a reader or a one-click unsubscriber relies on, each listed twice in
``h=`` (over-signed) so that no second copy can be added after signing (RFC 8058 §4,
RFC 6376 §5.4). ``d=`` must be the From domain or a parent of it (DMARC alignment).

Key files: RSA as PEM (PKCS#1 ``BEGIN RSA PRIVATE KEY`` or PKCS#8 ``BEGIN PRIVATE KEY``, e.g.
``openssl genrsa -out dkim.pem 2048``); ed25519 as PKCS#8 PEM (``openssl genpkey -algorithm
ed25519 -out dkim.pem``) or dkimpy's ``dknewkey --ktype ed25519`` base64 file.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import dkim
import nacl.exceptions
import nacl.signing
from dkim.crypto import UnparsableKeyError, parse_private_key

from digest.config import domain_aligned
from digest.errors import ConfigError, MessageError

#: Header fields signed, in this order; each is then listed a second time (over-signing), so an
#: added copy, or an added Reply-To where there was none, breaks the signature.
SIGNED_HEADERS: tuple[bytes, ...] = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"mime-version",
    b"content-type",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)
INCLUDE_HEADERS: tuple[bytes, ...] = SIGNED_HEADERS + SIGNED_HEADERS
MIN_RSA_BITS = 1024  # RFC 8301 §3.2; 2048 recommended
_RSA_OID = bytes.fromhex("2a864886f70d010101")  # 1.2.840.113549.1.1.1 rsaEncryption
_ED25519_PKCS8 = bytes.fromhex("302e020100300506032b657004220420")  # + 32-byte seed
_ED25519_OID = bytes.fromhex("06032b6570")  # 1.3.101.112 in DER
_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_KEY = "dkim_key_file"


class DkimOptions(Protocol):
    """What signing depends on (the settings carry it)."""

    @property
    def dkim_selector(self) -> str | None: ...
    @property
    def dkim_key_file(self) -> Path | None: ...
    @property
    def dkim_algorithm(self) -> str: ...
    @property
    def dkim_domain(self) -> str | None: ...
    @property
    def sender_address(self) -> str: ...


@dataclass(frozen=True)
class DkimKey:
    """One private key, ready for dkimpy, and the public half to publish."""

    selector: str
    algorithm: str  # "rsa-sha256" or "ed25519-sha256"
    private: bytes = field(repr=False)  # what dkim.sign takes: PEM (RSA) or base64 seed
    public: str  # base64, the p= of the TXT record
    bits: int

    @property
    def key_type(self) -> str:
        return "rsa" if self.algorithm == "rsa-sha256" else "ed25519"

    @property
    def txt(self) -> str:
        """The TXT record's value: ``v=DKIM1; k=rsa; p=...``."""
        return f"v=DKIM1; k={self.key_type}; p={self.public}"

    @classmethod
    def from_file(cls, path: Path, *, selector: str, algorithm: str) -> DkimKey:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(_KEY, f"cannot read {path}: {exc.strerror}") from None
        return cls.from_bytes(data, selector=selector, algorithm=algorithm, name=str(path))

    @classmethod
    def from_bytes(
        cls, data: bytes, *, selector: str, algorithm: str, name: str = "the key"
    ) -> DkimKey:
        """Load a private key; a ConfigError naming ``dkim_key_file`` says what is wrong."""
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise ConfigError(_KEY, f"{name} is not a PEM text file") from None
        if "ENCRYPTED" in text:
            raise ConfigError(
                _KEY, f"{name} is encrypted; use an unencrypted key readable only by digest"
            )
        match = _PEM.search(text)
        if match is None:
            if algorithm == "ed25519-sha256":
                return _ed25519(_b64(text, name), selector, name)
            raise ConfigError(_KEY, f"{name} holds no PEM private key")
        label, der = match[1], _b64(match[2], name)
        is_ed25519 = _ED25519_OID in der[:16]
        if algorithm == "ed25519-sha256":
            if not is_ed25519:
                raise ConfigError(_KEY, f"{name} is not an ed25519 key (dkim_algorithm)")
            return _ed25519(der, selector, name)
        if is_ed25519:
            raise ConfigError(
                _KEY, f"{name} is an ed25519 key; set dkim_algorithm = 'ed25519-sha256'"
            )
        return _rsa(label, der, selector, name)


def _b64(text: str, name: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(_KEY, f"{name} is not valid PEM (bad base64)") from None


def _ed25519(der: bytes, selector: str, name: str) -> DkimKey:
    if len(der) == len(_ED25519_PKCS8) + 32 and der.startswith(_ED25519_PKCS8):
        seed = der[len(_ED25519_PKCS8) :]
    elif len(der) == 32:  # dknewkey's format: the bare seed in base64
        seed = der
    else:
        raise ConfigError(_KEY, f"{name} is not an ed25519 private key")
    try:
        signing = nacl.signing.SigningKey(seed)
    except nacl.exceptions.CryptoError:
        raise ConfigError(_KEY, f"{name} is not an ed25519 private key") from None
    return DkimKey(
        selector=selector,
        algorithm="ed25519-sha256",
        private=base64.b64encode(seed),
        public=base64.b64encode(bytes(signing.verify_key)).decode("ascii"),
        bits=256,
    )


def _rsa(label: str, der: bytes, selector: str, name: str) -> DkimKey:
    try:
        key = parse_private_key(der)
    except (UnparsableKeyError, ValueError, IndexError, TypeError):
        raise ConfigError(_KEY, f"{name} is not an RSA private key (PKCS#1 or PKCS#8)") from None
    modulus, exponent = int(key["modulus"]), int(key["publicExponent"])
    bits = modulus.bit_length()
    if bits < MIN_RSA_BITS:
        raise ConfigError(
            _KEY, f"{name} is a {bits}-bit RSA key; use at least {MIN_RSA_BITS} (2048 is best)"
        )
    # dkimpy wants LF-separated PEM; rewrap whatever line ends the file had.
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    pem = "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----", ""])
    spki = _der(
        0x30,
        _der(0x30, _der(0x06, _RSA_OID) + _der(0x05, b""))
        + _der(0x03, b"\x00" + _der(0x30, _der_int(modulus) + _der_int(exponent))),
    )
    return DkimKey(
        selector=selector,
        algorithm="rsa-sha256",
        private=pem.encode("ascii"),
        public=base64.b64encode(spki).decode("ascii"),
        bits=bits,
    )


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _der_int(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


class DkimSigner:
    """Adds one DKIM-Signature per key (two keys, RSA and ed25519, give a dual signature)."""

    def __init__(self, keys: Sequence[DkimKey], *, domain: str, from_domain: str) -> None:
        if not keys:
            raise ConfigError(_KEY, "no DKIM key given")
        if len({key.selector for key in keys}) != len(keys):
            raise ConfigError("dkim_selector", "each DKIM key needs its own selector")
        if not domain_aligned(domain, from_domain):
            raise ConfigError(
                "dkim_domain",
                f"{domain!r} must be the sender's domain {from_domain!r} or a parent of it "
                "(DMARC alignment)",
            )
        self.keys = tuple(keys)
        self.domain = domain.lower().rstrip(".")
        self._domain = self.domain.encode("ascii")
        self._self_test(from_domain)

    @classmethod
    def from_settings(cls, options: DkimOptions) -> DkimSigner | None:
        """The signer the options ask for, or None when ``dkim_selector`` is not set."""
        if options.dkim_selector is None:
            return None
        if options.dkim_key_file is None:
            raise ConfigError(_KEY, "is missing but dkim_selector is set")
        key = DkimKey.from_file(
            options.dkim_key_file,
            selector=options.dkim_selector,
            algorithm=options.dkim_algorithm,
        )
        sender_domain = options.sender_address.rpartition("@")[2]
        return cls(
            [key],
            domain=options.dkim_domain or sender_domain,
            from_domain=sender_domain,
        )

    def sign(self, raw: bytes) -> bytes:
        """``raw`` (a complete message with CRLF line ends) with DKIM-Signature header(s)
        prepended. Call it once per message, on the exact bytes handed to the transport."""
        try:
            signatures = [
                dkim.sign(
                    raw,
                    key.selector.encode("ascii"),
                    self._domain,
                    key.private,
                    canonicalize=(b"relaxed", b"relaxed"),
                    signature_algorithm=key.algorithm.encode("ascii"),
                    include_headers=list(INCLUDE_HEADERS),
                )
                for key in self.keys
            ]
        except dkim.DKIMException as exc:
            raise MessageError(f"cannot DKIM-sign the message: {exc}") from None
        return b"".join(signatures) + raw

    def dns_records(self) -> list[str]:
        """Zone-file lines to publish, one per key (TXT strings split at 255 characters)."""
        records = []
        for key in self.keys:
            txt = key.txt
            strings = " ".join(f'"{txt[i : i + 255]}"' for i in range(0, len(txt), 255))
            records.append(f"{key.selector}._domainkey.{self.domain}. IN TXT {strings}")
        return records

    def _self_test(self, from_domain: str) -> None:
        """Sign and verify a tiny message, so a broken key fails at start-up, not mid-send."""
        probe = (
            f"From: probe@{from_domain}\r\nTo: probe@{from_domain}\r\nSubject: probe\r\n"
            "Date: Mon, 23 Nov 2026 08:00:00 +0000\r\nMessage-ID: <probe@digest>\r\n\r\nprobe\r\n"
        ).encode("ascii")
        records = {
            f"{key.selector}._domainkey.{self.domain}.".encode("ascii"): key.txt.encode("ascii")
            for key in self.keys
        }
        signed = self.sign(probe)
        for index in range(len(self.keys)):
            verifier = dkim.DKIM(signed)
            if not verifier.verify(idx=index, dnsfunc=lambda name, timeout=5: records.get(name)):
                raise ConfigError(_KEY, "the key does not produce verifiable signatures")


def dns_records(options: DkimOptions) -> list[str]:
    """The DKIM TXT records to publish for the configured key (empty when DKIM is off)."""
    signer = DkimSigner.from_settings(options)
    return signer.dns_records() if signer is not None else []
