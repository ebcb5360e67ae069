"""Text from the bytes spreadsheets and sites write: which encoding a file is in.

UTF-8 (with or without a byte-order mark) and UTF-16 with a byte-order mark are read as
such; anything else is guessed to be Windows-1252, a superset of Latin-1 (Latin-1 when a
byte is one of the five Windows-1252 leaves undefined). A leaf: it imports nothing from
``digest``, so the summaries importers and the subscriber importer share one rule.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

#: Bytes Windows-1252 does not define (Python's cp1252 refuses them).
_CP1252_UNDEFINED = (b"\x81", b"\x8d", b"\x8f", b"\x90", b"\x9d")
_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class Encoding:
    """How a file's bytes are read."""

    codec: str  # for bytes.decode() and open(): utf-8-sig, utf-16, cp1252 or latin-1
    name: str  # for people: UTF-8, UTF-16, Windows-1252 or Latin-1
    #: 1-based offset of the first byte that is not UTF-8, when the encoding was guessed.
    first_bad_byte: int | None = None

    @property
    def guessed(self) -> bool:
        return self.first_bad_byte is not None


UTF8 = Encoding("utf-8-sig", "UTF-8")
UTF16 = Encoding("utf-16", "UTF-16")


class _Detector:
    """Feeds the bytes of a file to every decoder still in the running."""

    def __init__(self) -> None:
        self.utf8 = codecs.getincrementaldecoder("utf-8")()
        self.utf16 = codecs.getincrementaldecoder("utf-16")()
        self.is_utf16: bool | None = None  # unknown until the first three bytes are seen
        self.bad: int | None = None  # 0-based offset of the first byte that is not UTF-8
        self.cp1252 = True
        self.offset = 0
        self.head = b""

    def feed(self, chunk: bytes, *, last: bool = False) -> None:
        if self.is_utf16 is None:
            self.head += chunk
            if len(self.head) < 3 and not last:
                return
            chunk, self.head = self.head, b""
            self.is_utf16 = chunk.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
            if chunk.startswith(codecs.BOM_UTF8):
                chunk, self.offset = chunk[3:], 3
        if self.is_utf16:
            try:
                self.utf16.decode(chunk)
            except UnicodeDecodeError:
                self.is_utf16 = False
        self.cp1252 = self.cp1252 and not any(byte in chunk for byte in _CP1252_UNDEFINED)
        if self.bad is None:
            pending = len(self.utf8.getstate()[0])
            try:
                self.utf8.decode(chunk)
            except UnicodeDecodeError as exc:
                self.bad = self.offset - pending + exc.start
        self.offset += len(chunk)

    def result(self) -> Encoding:
        if self.is_utf16 is None:  # fewer than three bytes in all
            self.feed(b"", last=True)
        if self.is_utf16:
            try:
                self.utf16.decode(b"", True)
                return UTF16
            except UnicodeDecodeError:
                pass
        if self.bad is None:
            try:
                self.utf8.decode(b"", True)
                return UTF8
            except UnicodeDecodeError:
                self.bad = self.offset - len(self.utf8.getstate()[0])
        if self.cp1252:
            return Encoding("cp1252", "Windows-1252", self.bad + 1)
        return Encoding("latin-1", "Latin-1", self.bad + 1)


def detect_encoding(chunks: Iterable[bytes]) -> Encoding:
    """The encoding of the bytes ``chunks`` make up, read once, a chunk at a time (memory
    does not grow with the file)."""
    detector = _Detector()
    for chunk in chunks:
        detector.feed(chunk)
    return detector.result()


def decode_text(data: bytes) -> tuple[str, Encoding]:
    """``data`` as text, and the encoding it was read in."""
    encoding = detect_encoding([data])
    return data.decode(encoding.codec), encoding


def _read_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            yield chunk


def open_text(path: Path) -> tuple[TextIO, Encoding]:
    """``path`` opened as text in its encoding (for the csv module: newlines untouched).

    The file is read twice, the first time only to tell its encoding, so a file of any size
    streams. Raises :class:`OSError` when it cannot be read."""
    encoding = detect_encoding(_read_chunks(path))
    return path.open(encoding=encoding.codec, newline=""), encoding
