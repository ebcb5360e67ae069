"""What a card must say to tell the truth about a study: how early the evidence is, what was
counted, and every caveat. Pure functions of a summary's text fields (no I/O, no clock).

Health information for patients: when in doubt, these show more of the caution, never less.
An explanation is shown whole unless it is very long; then it is cut only at a sentence end,
and any caution sentence that the cut would drop is kept in the "Keep in mind" line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

#: Explanations longer than this are cut at a sentence end, with a link to the rest.
EXPLANATION_LIMIT = 1200

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'“(])")
_NOT_SPECIFIED = {"", "not specified", "unknown", "n/a", "none"}

_ANIMALS = re.compile(
    r"\b(rats?|mice|mouse|rodents?|pigs?|minipigs?|dogs?|cats?|rabbits?|monkeys?|macaques?|"
    r"primates?|zebrafish|sheep|animals?)\b",
    re.IGNORECASE,
)
_LABORATORY = re.compile(
    r"\b(in vitro|cell cultures?|cultured cells|laboratory study|lab study|organoids?)\b",
    re.IGNORECASE,
)
_EARLY_KINDS = (
    (re.compile(r"\bcase reports?\b", re.IGNORECASE), "Case report"),
    (re.compile(r"\bcase series\b", re.IGNORECASE), "Case series"),
    (re.compile(r"\b(pilot|feasibility)\b", re.IGNORECASE), "Pilot study"),
    (re.compile(r"\bphase (1|i)\b(?!\s*/)", re.IGNORECASE), "Phase 1 trial"),
)
#: Words that mark a sentence as a caution (a limit of the study or of what it means).
_CAUTION = re.compile(
    r"\b(early|small|only|not yet|not clear|unclear|uncertain|may not|might not|cannot|"
    r"can't|does not|do not|did not|no clear|more research|further research|needed|"
    r"limited|risks?|side effects?|caution|preliminary|however|although|but)\b",
    re.IGNORECASE,
)
_PLURALS = {"mouse": "mice", "mice": "mice", "sheep": "sheep", "zebrafish": "zebrafish"}


def clean_text(text: str | None) -> str:
    """One paragraph of plain text: control characters removed, white space folded."""
    if not text:
        return ""
    return " ".join(_CONTROL.sub(" ", text).split())


def specified(text: str | None) -> str:
    """``text`` cleaned, or "" where a source wrote "Not specified" or the like."""
    cleaned = clean_text(text)
    return "" if cleaned.lower() in _NOT_SPECIFIED else cleaned


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(clean_text(text)) if s]


def early_stage(*fields: str | None) -> str | None:
    """A plain label for early-stage evidence ("Animal study", "Laboratory study", "Pilot
    study", "Case report", "Case series", "Phase 1 trial"), from the study type, evidence
    level, population and participants; None for anything else."""
    texts = [specified(f) for f in fields]
    if any(_ANIMALS.search(text) for text in texts):
        return "Animal study"
    if any(_LABORATORY.search(text) for text in texts):
        return "Laboratory study"
    for text in texts:  # the study type first: a "Pilot study" rated "Case series" is a pilot
        for pattern, label in _EARLY_KINDS:
            if pattern.search(text):
                return label
    return None


def counted(sample_size: int | None, participants: str | None, population: str | None) -> str:
    """What was counted, in words: the source's own participants line where it starts with
    its count ("40 adult female rats ...", "54 couples ..."), else the size with the right
    noun ("40 rats", "11 people"), else the participants line, else ""."""
    described = specified(participants)
    if described and described[0].isdigit():
        return described
    if sample_size:
        animal = _ANIMALS.search(f"{specified(population)} {described}")
        if animal:
            word = animal.group(1).lower()
            noun = _PLURALS.get(word, word if word.endswith("s") else f"{word}s")
            if sample_size == 1:
                noun = {"mice": "mouse", "sheep": "sheep"}.get(noun, noun.removesuffix("s"))
        else:
            noun = "person" if sample_size == 1 else "people"
        return f"{sample_size:,} {noun}"
    return described


def facts_line(
    *,
    study_type: str | None,
    evidence_level: str | None,
    sample_size: int | None,
    participants: str | None,
    population: str | None,
    study_duration: str | None,
) -> str:
    """Study type · what was counted · duration; absent ones are left out."""
    parts = [
        specified(study_type) or specified(evidence_level),
        counted(sample_size, participants, population),
        specified(study_duration),
    ]
    return " · ".join(part for part in parts if part)


@dataclass(frozen=True, slots=True)
class Explanation:
    shown: str  # whole, or cut at a sentence end and ending in "…"
    cut: bool  # True when the rest is on the site ("Continue reading")
    dropped_cautions: tuple[str, ...]  # caution sentences of the part not shown


def explanation(text: str | None, limit: int = EXPLANATION_LIMIT) -> Explanation:
    """The plain-language explanation, whole when it fits ``limit``; otherwise the sentences
    that fit (at least the first), an ellipsis, and the caution sentences left out."""
    whole = clean_text(text)
    if len(whole) <= limit:
        return Explanation(whole, False, ())
    parts = sentences(whole)
    kept: list[str] = []
    for sentence in parts:
        if kept and len(" ".join([*kept, sentence])) > limit:
            break
        kept.append(sentence)
    rest = parts[len(kept) :]
    if not rest:
        return Explanation(whole, False, ())
    shown = " ".join(kept).rstrip(".") + " …"
    return Explanation(shown, True, tuple(s for s in rest if _CAUTION.search(s)))


def keep_in_mind(limitations: Sequence[str] | None, dropped_cautions: Sequence[str]) -> str:
    """The caveats a card always shows: the stored limitations, each whole, or where a source
    has none, the caution sentences a cut explanation left out."""
    stated = [clean_text(item) for item in limitations or () if clean_text(item)]
    items = stated or [clean_text(s) for s in dropped_cautions]
    return " ".join(item if item[-1:] in ".!?" else f"{item}." for item in items)
