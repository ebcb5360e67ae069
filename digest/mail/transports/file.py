"""Writes each message as an ``.eml`` file (the outbox for local trials).

Messages of an edition go to ``OUTBOX/<edition key>/``; for each distinct digest the HTML
part is also written as ``variant-NN.html``, to open in a browser.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
from pathlib import Path

from digest.errors import TransportUnavailable
from digest.mail.transports.base import Envelope, TransportBase

_UNSAFE = re.compile(r"[^A-Za-z0-9@._+-]")


class FileTransport(TransportBase):
    name = "file"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._variants_written: set[tuple[str, int]] = set()

    def folder(self, edition_key: str) -> Path:
        return self.directory / (edition_key or "messages")

    def send(self, envelope: Envelope, message: bytes) -> str:
        folder = self.folder(envelope.edition_key)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TransportUnavailable(f"cannot create outbox {folder}: {exc.strerror}") from None
        name = _UNSAFE.sub("_", envelope.recipient)
        path = folder / f"{name}.eml"
        _write_atomically(path, message)
        key = (envelope.edition_key, envelope.variant)
        if envelope.variant and key not in self._variants_written:
            self._variants_written.add(key)
            html = _html_part(message)
            if html is not None:
                _write_atomically(folder / f"variant-{envelope.variant:02d}.html", html)
        return f"250 written to {path}"


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise TransportUnavailable(f"cannot write {path}: {exc.strerror}") from None


def _html_part(message: bytes) -> bytes | None:
    msg = email.message_from_bytes(message, policy=email.policy.default)
    for part in msg.walk():
        if part.get_content_type() == "text/html":
            return str(part.get_content()).encode("utf-8")
    return None


def forget(directory: Path, address: str, token: str) -> int:
    """Delete what the outbox holds about one person (erasure): their messages, named after
    their address, and any page written from one of them (a variant's HTML carries its
    first reader's links). Returns how many files were deleted."""
    if not directory.is_dir():
        return 0
    own_name = _UNSAFE.sub("_", address).lower() + ".eml"
    deleted = 0
    for path in sorted(directory.glob("*/*")):
        if not path.is_file():
            continue
        mine = path.name.lower() == own_name
        if not mine and path.suffix == ".html":
            mine = token.encode("ascii", "replace") in path.read_bytes()
        if mine:
            path.unlink()
            deleted += 1
    return deleted
