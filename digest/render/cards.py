"""What a digest says: cards and sections built from summaries' facts (pure).

The edition stage loads :class:`SummaryFacts` from the store (:mod:`digest.edition.catalog`);
everything here turns those values into :class:`Card` s and :class:`DigestContent`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

EXPLANATION_LIMIT = 320
FINDING_LIMIT = 260
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'“(])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_NOT_SPECIFIED = {"", "not specified", "unknown", "n/a", "none"}


@dataclass(frozen=True, slots=True)
class CategoryRef:
    id: int
    slug: str
    name: str


@dataclass(frozen=True, slots=True)
class SummaryFacts:
    """What a card is made from: one summary as stored, as a plain value."""

    id: int
    title: str
    url: str
    journal: str | None
    year: int | None
    categories: tuple[CategoryRef, ...]  # in name order
    simple_explanation: str
    key_findings: tuple[str, ...]
    study_type: str | None = None
    evidence_level: str | None = None
    sample_size: int | None = None
    participants: str | None = None
    study_duration: str | None = None


@dataclass(frozen=True, slots=True)
class Card:
    """One summary as it appears in an email."""

    id: int
    title: str
    url: str
    journal: str | None
    year: int | None
    category_ids: tuple[int, ...]
    category_names: tuple[str, ...]
    explanation: str
    first_finding: str | None
    facts: str  # "Randomised trial · 50 participants · 12 weeks", or ""


@dataclass(frozen=True, slots=True)
class Section:
    category: CategoryRef
    cards: tuple[Card, ...]


@dataclass(frozen=True, slots=True)
class DigestContent:
    """Everything one variant of the digest shows, before any template."""

    sections: tuple[Section, ...]
    total: int  # new summaries for this reader, shown or not
    more_count: int  # how many did not fit under the card cap
    reader_categories: tuple[CategoryRef, ...]  # what the reader subscribed to

    @property
    def cards(self) -> tuple[Card, ...]:
        return tuple(card for section in self.sections for card in section.cards)

    @property
    def topics(self) -> tuple[str, ...]:
        """Names of the categories that have cards, in section order."""
        return tuple(section.category.name for section in self.sections)


def clean_text(text: str | None) -> str:
    """One paragraph of plain text: control characters removed, white space folded."""
    if not text:
        return ""
    return " ".join(_CONTROL.sub(" ", text).split())


def shorten(text: str, limit: int) -> str:
    """``text`` cut at the last sentence end within ``limit`` characters, or at a word with
    an ellipsis if even the first sentence is longer."""
    text = clean_text(text)
    if len(text) <= limit:
        return text
    kept = ""
    for sentence in _SENTENCE_END.split(text):
        candidate = f"{kept} {sentence}".strip()
        if len(candidate) > limit:
            break
        kept = candidate
    if kept:
        return kept
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + "…"


def facts_line(
    *,
    study_type: str | None,
    evidence_level: str | None,
    sample_size: int | None,
    participants: str | None,
    study_duration: str | None,
) -> str:
    """The research facts present, joined with middle dots; absent ones are left out."""
    parts: list[str] = []
    kind = clean_text(study_type) or clean_text(evidence_level)
    if kind.lower() not in _NOT_SPECIFIED:
        parts.append(kind)
    if sample_size:
        parts.append(f"{sample_size:,} participant{'s' if sample_size != 1 else ''}")
    elif participants and clean_text(participants).lower() not in _NOT_SPECIFIED:
        parts.append(shorten(participants, 80))
    duration = clean_text(study_duration)
    if duration and duration.lower() not in _NOT_SPECIFIED:
        parts.append(duration)
    return " · ".join(parts)


def card_from_summary(summary: SummaryFacts) -> Card:
    findings = [clean_text(f) for f in summary.key_findings if clean_text(f)]
    return Card(
        id=summary.id,
        title=clean_text(summary.title),
        url=summary.url,
        journal=clean_text(summary.journal) or None,
        year=summary.year,
        category_ids=tuple(c.id for c in summary.categories),
        category_names=tuple(c.name for c in summary.categories),
        explanation=shorten(summary.simple_explanation, EXPLANATION_LIMIT),
        first_finding=shorten(findings[0], FINDING_LIMIT) if findings else None,
        facts=facts_line(
            study_type=summary.study_type,
            evidence_level=summary.evidence_level,
            sample_size=summary.sample_size,
            participants=summary.participants,
            study_duration=summary.study_duration,
        ),
    )


def build_content(
    item_ids: Sequence[int],
    reader_category_ids: Iterable[int],
    cards: Mapping[int, Card],
    categories: Sequence[CategoryRef],
    cap: int,
) -> DigestContent:
    """Group the first ``cap`` items into one section per reader category (in the order of
    ``categories``); an item in several of the reader's categories appears once, in the first."""
    reader_ids = set(reader_category_ids)
    reader_categories = tuple(c for c in categories if c.id in reader_ids)
    order = {c.id: position for position, c in enumerate(reader_categories)}
    shown = [cards[i] for i in item_ids[:cap]]
    grouped: dict[int, list[Card]] = {}
    for card in shown:
        home = min((order[c] for c in card.category_ids if c in order), default=None)
        if home is None:
            raise ValueError(f"summary {card.id} is in none of the reader's categories")
        grouped.setdefault(home, []).append(card)
    sections = tuple(
        Section(reader_categories[position], tuple(grouped[position]))
        for position in sorted(grouped)
    )
    return DigestContent(
        sections=sections,
        total=len(item_ids),
        more_count=max(0, len(item_ids) - cap),
        reader_categories=reader_categories,
    )


def join_names(names: Sequence[str], *, most: int = 3) -> str:
    """ "A", "A and B", "A, B and C", "A, B and 3 other topics"."""
    names = list(names)
    if len(names) > most:
        rest = len(names) - (most - 1)
        return f"{', '.join(names[: most - 1])} and {rest} other topics"
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"
