"""Read what digests show from the store, once, as frozen values for the pure stages.

Summaries become :class:`~digest.render.cards.SummaryFacts` and then cards; categories
become :class:`~digest.render.cards.CategoryRef` s; each variant's
:class:`~digest.render.cards.DigestContent` is built here for the render step and the
preflight alike, so nothing is read twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.planning.notices import notice_summaries
from digest.planning.plan import ordered_categories
from digest.planning.selection import VariantKey
from digest.planning.when import first_day
from digest.render.cards import (
    Card,
    CategoryRef,
    DigestContent,
    Notice,
    SummaryFacts,
    build_content,
    card_from_summary,
)
from digest.sources.corrections import RETRACTED
from digest.store.models import Summary

#: Summaries read per query.
CHUNK = 500


def facts_of(summary: Summary) -> SummaryFacts:
    """A stored summary as the value cards are made from."""
    return SummaryFacts(
        id=summary.id,
        title=summary.title,
        url=summary.url,
        journal=summary.journal,
        year=summary.year,
        categories=tuple(CategoryRef(c.id, c.slug, c.name) for c in summary.categories),
        simple_explanation=summary.simple_explanation,
        key_findings=tuple(summary.key_findings or ()),
        study_type=summary.study_type,
        evidence_level=summary.evidence_level,
        sample_size=summary.sample_size,
        participants=summary.participants,
        population=summary.population,
        study_duration=summary.study_duration,
        limitations=tuple(summary.limitations or ()),
        practical_implications=summary.practical_implications,
        doi=summary.doi,
        pmid=summary.pmid,
        open_access=summary.open_access,
    )


def load_cards(session: Session, ids: Iterable[int]) -> dict[int, Card]:
    """The cards of the summaries ``ids``, by id."""
    wanted = sorted(set(ids))
    cards: dict[int, Card] = {}
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        query = select(Summary).where(Summary.id.in_(chunk), Summary.status != RETRACTED)
        for summary in session.scalars(query):
            cards[summary.id] = card_from_summary(facts_of(summary))
    return cards


def category_refs(session: Session) -> list[CategoryRef]:
    """Every category, in the order sections appear in an email."""
    return [CategoryRef(c.id, c.slug, c.name) for c in ordered_categories(session)]


def load_contents(
    session: Session, keys: Sequence[VariantKey], cap: int, *, edition: str | None = None
) -> dict[VariantKey, DigestContent]:
    """What each variant shows (at most ``cap`` cards), from one read of the store. With
    the ``edition`` key, each content is dated (``issued``: the first day of its week)."""
    categories = category_refs(session)
    cards = load_cards(session, {i for _, items, _ in keys for i in items})
    notices = load_notices(session, {n for _, _, ids in keys for n in ids})
    issued = first_day(edition) if edition else None
    return {
        key: build_content(
            [i for i in key[1] if i in cards],  # retracted since it was planned: left out
            key[0],
            cards,
            categories,
            cap,
            notices=[notices[n] for n in key[2] if n in notices],
            issued=issued,
        )
        for key in keys
    }


def retractions(session: Session, ids: Iterable[int]) -> list[Notice]:
    """A retraction notice for each of the summaries ``ids`` that was retracted."""
    wanted = sorted(set(ids))
    query = select(Summary).where(Summary.id.in_(wanted), Summary.status == RETRACTED)
    return [
        Notice(RETRACTED, s.title, s.url, s.correction_note or "")
        for s in session.scalars(query.order_by(Summary.id))
    ]


def load_notices(session: Session, ids: Iterable[int]) -> dict[int, Notice]:
    """The notices ``ids`` as the digest shows them, by id."""
    return {
        notice.id: Notice(notice.kind, summary.title, summary.url, notice.note)
        for notice, summary in notice_summaries(session, ids)
    }


def sample_key(session: Session, cap: int, cutoff: dt.datetime) -> VariantKey | None:
    """A stand-in digest when nobody gets one: the latest summaries in every category."""
    categories = tuple(sorted(c.id for c in ordered_categories(session)))
    ids = session.scalars(
        select(Summary.id)
        .where(
            Summary.published_at <= cutoff,
            Summary.categories.any(),
            Summary.status != RETRACTED,
        )
        .order_by(Summary.published_at.desc(), Summary.id.desc())
        .limit(cap + 1)
    ).all()
    return (categories, tuple(ids), ()) if ids and categories else None
