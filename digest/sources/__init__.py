"""Importers for what the site publishes: JSON, JSON Lines, CSV, and RSS/RDF/Atom/JSON feeds.

Parsing is pure (bytes in, :class:`Parsed` out, no database, no clock). Each parser turns its
format into :class:`SourceItem` values keyed by the JSON field names (``title``, ``url``,
``published_at``...); :mod:`digest.sources.validate` then checks every item the same way,
whatever its format, and :mod:`digest.sources.load` stores the valid ones in one transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from digest import textio
from digest.errors import DataError

FORMATS = ("auto", "json", "jsonl", "csv", "feed")
_HTML_PAGE = re.compile(r"<!doctype\s+html|<html[\s>]", re.IGNORECASE)
_CSV_HEADER = re.compile(r"\btitle\b", re.IGNORECASE)


@dataclass(frozen=True)
class Problem:
    """Something wrong with one record (or with the whole source), and where."""

    position: str  # "line 4", "item 3 (line 14)", "entry 2 (line 30)" or "" for the source
    message: str

    def __str__(self) -> str:
        return f"{self.position}: {self.message}" if self.position else self.message


@dataclass(frozen=True)
class SourceItem:
    """One record as a source gave it, keyed by the JSON field names, not yet checked."""

    position: str
    values: Mapping[str, object]
    #: For feeds: the date the feed parser understood when the raw text is unusual (UTC).
    fallback_published: dt.datetime | None = None


@dataclass(frozen=True)
class Parsed:
    """What a parser read: items, records it could not read at all, and warnings."""

    format: str  # "JSON", "JSON Lines", "CSV", "RSS 2.0", "RSS 1.0 (RDF)", "Atom", "JSON Feed"
    items: tuple[SourceItem, ...]
    rejects: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = field(default=())


def decode_text(data: bytes) -> tuple[str, Problem | None]:
    """Text from bytes (see :mod:`digest.textio`), with a warning when the encoding was
    guessed."""
    text, encoding = textio.decode_text(data)
    if not encoding.guessed:
        return text, None
    where = f"byte {encoding.first_bad_byte}"
    return text, Problem("", f"not UTF-8 (first bad {where}): read as Windows-1252/Latin-1")


def detect_format(data: bytes) -> str:
    """``json``, ``jsonl``, ``csv`` or ``feed``, from the content alone."""
    text, _ = decode_text(data[:1_000_000])
    start = text.lstrip()
    if start.startswith("<"):
        if _HTML_PAGE.match(start[:2000]) or _HTML_PAGE.search(start[:300]):
            raise DataError("this is an HTML page, not a feed or a data file")
        return "feed"
    if start.startswith("["):
        return "json"
    if start.startswith("{"):
        first, _, rest = start.partition("\n")
        try:
            json.loads(first)
        except (ValueError, RecursionError):
            return "json"
        return "jsonl" if rest.strip() else "json"
    if _CSV_HEADER.search(start.partition("\n")[0]):
        return "csv"
    if not start:
        raise DataError("the source is empty")
    raise DataError(
        "cannot tell the format (expected JSON, JSON Lines, CSV with a header row naming "
        "a title column, or an RSS/Atom feed): name it with --format"
    )


def parse_source(data: bytes, fmt: str = "auto", *, lenient: bool = False) -> Parsed:
    """Read ``data`` in format ``fmt`` (see :data:`FORMATS`). Raises :class:`DataError` when
    the source as a whole cannot be read (malformed XML unless ``lenient``, bad JSON...)."""
    from digest.sources import csvsrc, feeds, jsonsrc

    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if not data.strip():
        raise DataError("the source is empty")
    if fmt == "auto":
        fmt = detect_format(data)
    if fmt == "feed" and data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return jsonsrc.parse_json(data)  # a JSON Feed
    if fmt == "feed":
        return feeds.parse_feed(data, lenient=lenient)
    if fmt == "json":
        return jsonsrc.parse_json(data)
    if fmt == "jsonl":
        return jsonsrc.parse_json_lines(data)
    return csvsrc.parse_csv(data)
