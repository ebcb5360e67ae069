"""RSS 2.0, RSS 1.0/RDF (with Dublin Core and PRISM, as journal publishers emit) and Atom,
read with feedparser after a strict well-formedness check.

Malformed XML is refused whole, naming its line and column; with ``lenient`` the entries
feedparser's forgiving parser recovers are kept, with a warning.
"""

from __future__ import annotations

import calendar
import datetime as dt
import io
import re
import xml.parsers.expat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import feedparser

from digest.errors import DataError
from digest.sources import Parsed, Problem, SourceItem
from digest.sources.cleaning import canonical_url, find_doi, find_pmid, normalise_doi

_VERSIONS = {"rss10": "RSS 1.0 (RDF)", "rss090": "RSS 0.90 (RDF)", "atom10": "Atom 1.0"}
_YEAR = re.compile(r"^\s*(\d{4})\b")


@dataclass(frozen=True)
class XmlCheck:
    entry_lines: tuple[int, ...]  # line of each <item>/<entry>, in document order
    error: str | None  # "line 3, column 7: mismatched tag"


def check_xml(data: bytes) -> XmlCheck:
    """Well-formedness as expat sees it (no external entities are ever fetched)."""
    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    lines: list[int] = []

    def start(name: str, _attrs: Any) -> None:
        if name.rpartition(" ")[2] in ("item", "entry"):
            lines.append(parser.CurrentLineNumber)

    parser.StartElementHandler = start
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as exc:
        reason = xml.parsers.expat.ErrorString(exc.code)
        return XmlCheck(tuple(lines), f"line {exc.lineno}, column {exc.offset + 1}: {reason}")
    return XmlCheck(tuple(lines), None)


def parse_feed(data: bytes, *, lenient: bool = False) -> Parsed:
    check = check_xml(data)
    warnings: list[Problem] = []
    if check.error and not lenient:
        raise DataError(
            f"malformed XML at {check.error}; nothing was imported "
            "(--lenient imports the entries that can be recovered)"
        )
    try:
        # A stream, never a string: feedparser opens strings that look like paths or URLs.
        result = feedparser.parse(io.BytesIO(data), sanitize_html=True)
    except Exception as exc:  # a third-party parser on hostile input: one clear line
        raise DataError(f"cannot read the feed: {type(exc).__name__}: {exc}"[:300]) from None
    # Plain dicts: feedparser's own answers "published" with "updated" (and a warning).
    feed: Mapping[str, Any] = dict(result.get("feed") or {})
    entries: list[Mapping[str, Any]] = [dict(entry) for entry in result.get("entries") or []]
    version = str(result.get("version") or "")
    if not version and not entries:
        raise DataError("not an RSS, RDF or Atom feed (no channel, feed or entries found)")
    if check.error:
        warnings.append(
            Problem(
                "",
                f"malformed XML at {check.error}: imported the {len(entries)} entries "
                "that could be recovered (--lenient)",
            )
        )
    lines = check.entry_lines if len(check.entry_lines) == len(entries) else ()
    base = str(feed.get("link") or "")
    items = []
    for index, entry in enumerate(entries):
        where = f"entry {index + 1}" + (f" (line {lines[index]})" if lines else "")
        items.append(SourceItem(where, entry_values(entry, feed, base), _fallback_published(entry)))
    label = _VERSIONS.get(version) or (
        f"RSS {version[3]}.{version[4:]}"
        if version.startswith("rss") and len(version) > 4
        else (f"Atom {version[4]}.{version[5:]}" if version.startswith("atom") else "feed")
    )
    return Parsed(label, tuple(items), (), tuple(warnings))


#: Item categories that mark an entry as a notice about a summary, and the status each sets.
_NOTICE_TAGS = {"correction": "corrected", "retraction": "retracted"}


def entry_values(
    entry: Mapping[str, Any], feed: Mapping[str, Any], base: str = ""
) -> dict[str, object]:
    """One feed entry as a record keyed like the JSON format."""
    values: dict[str, object] = {}
    links = [str(link.get("href") or "") for link in entry.get("links") or []]
    link = entry.get("feedburner_origlink") or entry.get("link") or next(iter(links), "")
    guid = str(entry.get("id") or "")
    if not link and canonical_url(guid):
        link = guid  # an RSS guid that is a permalink
    if link:
        link = str(link)
        values["url"] = urljoin(base, link) if base and canonical_url(base) else link
    if guid:
        values["id"] = guid
    if entry.get("title") is not None:
        values["title"] = entry["title"]
    published = next(
        (
            str(entry[key])
            for key in ("published", "updated", "prism_publicationdate", "prism_coverdate")
            if entry.get(key)
        ),
        None,
    )
    if published:
        values["published_at"] = published
    tags = [str(tag.get("label") or tag.get("term") or "") for tag in entry.get("tags") or []]
    marks = {tag.strip().lower() for tag in tags} & set(_NOTICE_TAGS)
    tags = [tag for tag in tags if tag and tag.strip().lower() not in _NOTICE_TAGS]
    if tags:
        values["categories"] = tags
    explanation = entry.get("summary") or next(
        (c.get("value") for c in entry.get("content") or [] if c.get("value")), None
    )
    if marks:  # a correction or retraction: the description is its note
        values["status"] = _NOTICE_TAGS["retraction" if "retraction" in marks else "correction"]
        if explanation:
            values["correction_note"] = explanation
    elif explanation:
        values["simple_explanation"] = explanation
    journal = (
        entry.get("dc_source")
        or entry.get("prism_publicationname")
        or feed.get("prism_publicationname")
    )
    if journal:
        values["journal"] = journal
    identifiers = [str(entry.get(key) or "") for key in ("dc_identifier", "id")] + links
    doi = normalise_doi(str(entry.get("prism_doi") or "")) or next(
        (d for d in map(find_doi, identifiers) if d), None
    )
    if doi:
        values["doi"] = doi
    pmid = next((p for p in map(find_pmid, identifiers) if p), None)
    if pmid:
        values["pmid"] = pmid
    for key in ("prism_publicationdate", "prism_coverdate"):
        year = _YEAR.match(str(entry.get(key) or ""))
        if year:
            values["year"] = int(year.group(1))
            break
    return values


def _fallback_published(entry: Mapping[str, Any]) -> dt.datetime | None:
    for key in ("published_parsed", "updated_parsed"):
        parsed = entry.get(key)
        if parsed:
            try:
                return dt.datetime.fromtimestamp(calendar.timegm(parsed), dt.UTC)
            except (OverflowError, ValueError, OSError, TypeError):
                return None
    return None
