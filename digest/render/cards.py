"""What a digest says: cards and sections built from summaries' facts (pure).

The edition stage loads :class:`SummaryFacts` from the store (:mod:`digest.planning.catalog`);
everything here turns those values into :class:`Card` s and :class:`DigestContent`. A card
tells the truth about its study (see :mod:`digest.render.truth`): the explanation whole,
every caveat, what was counted, how early the evidence is, and where it comes from.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from digest.render.truth import clean_text, early_stage, explanation, facts_line, keep_in_mind


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
    population: str | None = None
    study_duration: str | None = None
    limitations: tuple[str, ...] = ()
    practical_implications: str | None = None
    doi: str | None = None
    pmid: str | None = None
    open_access: bool | None = None


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
    explanation: str  # whole, or cut at a sentence end ending in "…" (see explanation_cut)
    first_finding: str | None
    facts: str  # "Randomised trial · 212 adults with acute SCI · 12 weeks", or ""
    early_stage: str | None = None  # "Animal study", "Pilot study", ... or None
    explanation_cut: bool = False  # the rest of the explanation is on the summary's page
    keep_in_mind: str = ""  # the study's limitations, never left out
    what_it_means: str | None = None  # the summary's practical implications
    doi: str | None = None
    pmid: str | None = None
    open_access: bool | None = None

    @property
    def doi_url(self) -> str | None:
        return f"https://doi.org/{quote(self.doi, safe='/:;()._-')}" if self.doi else None

    @property
    def pubmed_url(self) -> str | None:
        return f"https://pubmed.ncbi.nlm.nih.gov/{quote(self.pmid)}/" if self.pmid else None


@dataclass(frozen=True, slots=True)
class Notice:
    """A correction or retraction of a summary the reader was sent before."""

    kind: str  # "corrected" or "retracted"
    title: str  # the summary's
    url: str
    note: str

    @property
    def label(self) -> str:
        return "Retraction" if self.kind == "retracted" else "Correction"

    @property
    def headline(self) -> str:
        """What happened, in one line."""
        if self.kind == "retracted":
            return "Retraction: this study was withdrawn"
        return "Correction: this summary was corrected"


@dataclass(frozen=True, slots=True)
class Section:
    category: CategoryRef
    cards: tuple[Card, ...]
    total: int = 0  # new summaries of this topic, shown or not (0: as many as shown)

    @property
    def hidden(self) -> int:
        """New summaries of this topic that did not fit under the card cap."""
        return max(0, self.total - len(self.cards))


@dataclass(frozen=True, slots=True)
class DigestContent:
    """Everything one variant of the digest shows, before any template."""

    sections: tuple[Section, ...]
    total: int  # new summaries for this reader, shown or not
    more_count: int  # how many did not fit under the card cap
    reader_categories: tuple[CategoryRef, ...]  # what the reader subscribed to
    issued: dt.date | None = None  # the first day of the edition's period
    #: Corrections and retractions of summaries the reader was sent before, shown first.
    notices: tuple[Notice, ...] = ()

    @property
    def cards(self) -> tuple[Card, ...]:
        return tuple(card for section in self.sections for card in section.cards)

    @property
    def topics(self) -> tuple[str, ...]:
        """Names of the categories that have cards, in section order."""
        return tuple(section.category.name for section in self.sections)


def card_from_summary(summary: SummaryFacts) -> Card:
    findings = [clean_text(f) for f in summary.key_findings if clean_text(f)]
    told = explanation(summary.simple_explanation)
    context = f"{summary.title} {summary.simple_explanation}"  # who was studied, if no field says
    return Card(
        id=summary.id,
        title=clean_text(summary.title),
        url=summary.url,
        journal=clean_text(summary.journal) or None,
        year=summary.year,
        category_ids=tuple(c.id for c in summary.categories),
        category_names=tuple(c.name for c in summary.categories),
        explanation=told.shown,
        first_finding=findings[0] if findings else None,
        facts=facts_line(
            study_type=summary.study_type,
            evidence_level=summary.evidence_level,
            sample_size=summary.sample_size,
            participants=summary.participants,
            population=summary.population,
            study_duration=summary.study_duration,
            context=context,
        ),
        early_stage=early_stage(
            summary.study_type,
            summary.evidence_level,
            summary.population,
            summary.participants,
            context=context,
        ),
        explanation_cut=told.cut,
        keep_in_mind=keep_in_mind(summary.limitations, told.dropped_cautions),
        what_it_means=clean_text(summary.practical_implications) or None,
        doi=summary.doi,
        pmid=summary.pmid,
        open_access=summary.open_access,
    )


def build_content(
    item_ids: Sequence[int],
    reader_category_ids: Iterable[int],
    cards: Mapping[int, Card],
    categories: Sequence[CategoryRef],
    cap: int,
    *,
    issued: dt.date | None = None,
    notices: Sequence[Notice] = (),
) -> DigestContent:
    """One section per reader category with new items (in the order of ``categories``); an
    item in several of the reader's categories appears once, in the first.

    At most ``cap`` cards, but the cap never hides a topic: every topic with new items shows
    its first one, the rest of the cap goes to the items in order, and each section counts
    what it did not show."""
    reader_ids = set(reader_category_ids)
    reader_categories = tuple(c for c in categories if c.id in reader_ids)
    order = {c.id: position for position, c in enumerate(reader_categories)}
    by_topic: dict[int, list[int]] = {}
    for item in item_ids:
        card = cards[item]
        home = min((order[c] for c in card.category_ids if c in order), default=None)
        if home is None:
            raise ValueError(f"summary {card.id} is in none of the reader's categories")
        by_topic.setdefault(home, []).append(item)
    chosen = {items[0] for items in by_topic.values()}
    for item in item_ids:
        if len(chosen) >= cap:
            break
        chosen.add(item)
    sections = tuple(
        Section(
            reader_categories[position],
            tuple(cards[i] for i in by_topic[position] if i in chosen),
            total=len(by_topic[position]),
        )
        for position in sorted(by_topic)
    )
    return DigestContent(
        sections=sections,
        total=len(item_ids),
        more_count=len(item_ids) - len(chosen),
        reader_categories=reader_categories,
        issued=issued,
        notices=tuple(notices),
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
