"""The page of each edition (``/editions/<key>``) and of each of its topics
(``/editions/<key>/<slug>``), Blueprint ``editions``: every new summary of the edition,
also those past a digest's card cap, as cards with the facts the email gives.

These are the pages a digest's "N more in a topic" links lead to. An edition's summaries
are those published in its period (after the previous edition's cutoff, up to its own,
as in the archive) and every summary one of its digests carried (a monthly reader's, or
one back from a break, reaches further back), newest first. Unknown editions and topics
get the 404 page.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

from flask import Blueprint, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.planning.catalog import category_refs, facts_of
from digest.planning.when import first_day
from digest.render.cards import Card, CategoryRef, Section, build_content, card_from_summary
from digest.store.models import Edition, EditionStatus, Summary, Variant
from digest.web.caching import cached_page
from digest.web.feeds import changed_at
from digest.web.public import category
from digest.web.readers import Page, not_found
from digest.web.state import current_web

_KEY = re.compile(r"[0-9]{4}-W[0-9]{2}")
#: The window of the first edition, which has no previous cutoff.
FIRST_WINDOW = dt.timedelta(days=7)
#: Summaries read per query.
CHUNK = 500
blueprint = Blueprint("editions", __name__)


@dataclass(frozen=True, slots=True)
class Entry:
    """One summary of an edition page: its card, and when it was published and changed."""

    card: Card
    published_at: dt.datetime
    changed_at: dt.datetime


@dataclass(frozen=True, slots=True)
class EditionView:
    """What an edition's pages show."""

    key: str
    issued: dt.date
    entries: dict[int, Entry]  # newest first
    categories: tuple[CategoryRef, ...]  # every topic, in the digest's order

    def sections(self) -> tuple[Section, ...]:
        """One section per topic with summaries; a summary in several topics appears once,
        in the first (as in a digest), with no cap."""
        ids = list(self.entries)
        cards = {i: e.card for i, e in self.entries.items()}
        every = [c.id for c in self.categories]
        return build_content(ids, every, cards, self.categories, len(ids) or 1).sections

    def of_topic(self, topic: CategoryRef) -> list[Entry]:
        """Every summary of the edition in ``topic``, newest first."""
        return [e for e in self.entries.values() if topic.id in e.card.category_ids]

    @property
    def last_modified(self) -> dt.datetime | None:
        return max((e.changed_at for e in self.entries.values()), default=None)


def find_edition(session: Session, key: str, now: dt.datetime) -> Edition | None:
    """The edition ``key`` when the archive shows it (not cancelled, cut off by ``now``)."""
    if not _KEY.fullmatch(key):
        return None
    edition = session.scalar(select(Edition).where(Edition.key == key))
    if edition is None or edition.status == EditionStatus.CANCELLED.value:
        return None
    return edition if edition.cutoff <= now else None


def summary_ids(session: Session, edition: Edition) -> set[int]:
    """The edition's summaries: published in its period, or carried by one of its digests."""
    before = session.scalar(
        select(func.max(Edition.cutoff)).where(
            Edition.cutoff < edition.cutoff, Edition.status != EditionStatus.CANCELLED.value
        )
    )
    start = before or edition.cutoff - FIRST_WINDOW
    ids = set(
        session.scalars(
            select(Summary.id).where(
                Summary.published_at > start,
                Summary.published_at <= edition.cutoff,
                Summary.categories.any(),
            )
        )
    )
    for carried in session.scalars(select(Variant.summary_ids).where(Variant.edition == edition)):
        ids.update(carried)
    return ids


def load_entries(session: Session, ids: Iterable[int]) -> dict[int, Entry]:
    """The entries of the summaries ``ids`` that still exist and have a topic, newest
    first."""
    wanted = sorted(set(ids))
    found: list[Entry] = []
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        for summary in session.scalars(select(Summary).where(Summary.id.in_(chunk))):
            if summary.categories:
                moment = changed_at(summary.published_at, summary.created_at, summary.updated_at)
                card = card_from_summary(facts_of(summary))
                found.append(Entry(card, summary.published_at, moment))
    found.sort(key=lambda e: (e.published_at, e.card.id), reverse=True)
    return {e.card.id: e for e in found}


def edition_view(session: Session, key: str, now: dt.datetime) -> EditionView | None:
    edition = find_edition(session, key, now)
    if edition is None:
        return None
    entries = load_entries(session, summary_ids(session, edition))
    return EditionView(key, first_day(key), entries, tuple(category_refs(session)))


@blueprint.get("/editions/<key>")
def edition_page(key: str) -> Response | Page:
    web = current_web()
    with web.factory() as session:
        view = edition_view(session, key, web.now())
    if view is None:
        return not_found()
    return cached_page(
        "site/edition.html",
        last_modified=view.last_modified,
        view=view,
        sections=view.sections(),
    )


@blueprint.get("/editions/<key>/<slug>")
def edition_topic(key: str, slug: str) -> Response | Page:
    web = current_web()
    with web.factory() as session:
        found = category(session, slug)
        view = edition_view(session, key, web.now()) if found is not None else None
        topic = CategoryRef(found.id, found.slug, found.name) if found is not None else None
    if view is None or topic is None:
        return not_found()
    return cached_page(
        "site/edition_topic.html",
        last_modified=view.last_modified,
        view=view,
        topic=topic,
        entries=view.of_topic(topic),
    )
