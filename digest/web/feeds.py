"""Atom feeds (RFC 4287) of new summaries per category, and the grouping of the public
archive by edition. Pure functions: no database, no clock."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from xml.etree import ElementTree as ET

ATOM = "http://www.w3.org/2005/Atom"
#: Characters XML 1.0 does not allow, even escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True, slots=True)
class FeedItem:
    id: int
    title: str
    url: str
    published_at: dt.datetime
    updated_at: dt.datetime  # the summary's last change (see changed_at), never its import
    explanation: str
    status: str = "published"  # or "corrected", "retracted"
    note: str | None = None  # what was corrected, or why it was withdrawn

    @property
    def label(self) -> str | None:
        """ "Retracted" or "Corrected" (None for a summary as published)."""
        return {"retracted": "Retracted", "corrected": "Corrected"}.get(self.status)

    journal: str | None = None
    topics: tuple[str, ...] = ()  # category names


@dataclass(frozen=True, slots=True)
class ArchivedEdition:
    key: str
    cutoff: dt.datetime
    items: tuple[FeedItem, ...]


def xml_text(text: str) -> str:
    """``text`` without characters XML cannot carry (ElementTree escapes the rest)."""
    return _NOT_XML.sub("", text)


def changed_at(
    published_at: dt.datetime, created_at: dt.datetime, updated_at: dt.datetime
) -> dt.datetime:
    """When a summary last changed for a reader: its publication, or the later change of
    what it says. Importing it (``created_at``) is no change: a summary imported a week
    after it was published was still last changed when it was published."""
    if updated_at <= created_at:
        return published_at
    return max(published_at, updated_at)


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def atom_feed(
    *,
    feed_url: str,
    site_url: str,
    title: str,
    author: str,
    items: Sequence[FeedItem],
    updated: dt.datetime,
) -> bytes:
    """A valid Atom document, newest items first as given; ``updated`` is used when there
    are no items."""
    ET.register_namespace("", ATOM)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
        if text is not None:
            element.text = xml_text(text)
        return element

    feed = ET.Element(f"{{{ATOM}}}feed")
    sub(feed, "id", feed_url)
    sub(feed, "title", title)
    sub(feed, "updated", _stamp(max((i.updated_at for i in items), default=updated)))
    sub(feed, "link", rel="self", type="application/atom+xml", href=feed_url)
    sub(feed, "link", rel="alternate", type="text/html", href=site_url)
    sub(sub(feed, "author"), "name", author)
    for item in items:
        entry = sub(feed, "entry")
        sub(entry, "id", item.url)
        sub(entry, "title", f"{item.label}: {item.title}" if item.label else item.title)
        sub(entry, "link", rel="alternate", type="text/html", href=item.url)
        sub(entry, "published", _stamp(item.published_at))
        sub(entry, "updated", _stamp(item.updated_at))
        summary = item.explanation or item.title
        if item.label:  # the same category and note as a source marks it with
            sub(
                entry, "category", term="retraction" if item.status == "retracted" else "correction"
            )
            summary = f"{item.label}: {item.note or 'see the summary'}\n\n{summary}"
        sub(entry, "summary", summary, type="text")
    body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return body


def group_by_edition(
    editions: Sequence[tuple[str, dt.datetime]],
    items: Sequence[FeedItem],
    first_window: dt.timedelta = dt.timedelta(days=7),
) -> list[ArchivedEdition]:
    """Each edition (oldest first in, newest first out) with the items published in its
    window: after the previous edition's cutoff, up to its own."""
    ordered = sorted(editions, key=lambda e: e[1])
    archived: list[ArchivedEdition] = []
    for position, (key, cutoff) in enumerate(ordered):
        start = ordered[position - 1][1] if position else cutoff - first_window
        inside = tuple(
            sorted(
                (i for i in items if start < i.published_at <= cutoff),
                key=lambda i: (i.published_at, i.id),
                reverse=True,
            )
        )
        archived.append(ArchivedEdition(key, cutoff, inside))
    return archived[::-1]
