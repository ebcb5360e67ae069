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
    r"primates?|zebrafish|sheep|animals?|murine|porcine|canine|feline|rodent|preclinical)\b",
    re.IGNORECASE,
)
#: Words that say people were studied (or counted): only then is a bare size "people".
#: ("participants" says nothing, and "adult" alone is also said of rats.)
_HUMANS = re.compile(
    r"\b(adults|people|persons?|patients?|man|men|woman|women|child|children|boys?|girls?|adolescents?|"
    r"volunteers?|individuals?|veterans?|caregivers?|carers?|couples?|families|staff|nurses?|"
    r"doctors?|physicians?|clinicians?|therapists?|users?|survivors?|humans?|respondents?)\b",
    re.IGNORECASE,
)
#: Adjectives and vague words that name animals without naming which.
_ANIMAL_ADJECTIVES = {"murine", "porcine", "canine", "feline", "rodent", "preclinical"}
_LABORATORY = re.compile(
    r"\b(in vitro|cell cultures?|cultured cells|laboratory study|lab study|organoids?|"
    r"tissue samples?|post-mortem|cadavers?)\b",
    re.IGNORECASE,
)
#: Study designs used with people: where nothing else says who was counted, people were.
_HUMAN_DESIGNS = re.compile(
    r"\b(randomi[sz]ed|trials?|case series|case reports?|cohort|cross-sectional|surveys?|"
    r"case-control|qualitative|interviews?)\b",
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
    r"limited|risks?|side effects?|caution|preliminary|however|although|but|rarely|"
    r"translate|unproven|not proven|rats?|mice|animals?|humans?|people)\b",
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


def subject(*fields: str | None, context: str = "") -> str | None:
    """Who or what was studied: "animal", "laboratory" or "human", or None when nothing says.

    The study type and evidence level (the first two fields) decide first. Then the
    population and participants: laboratory words first, then people (an animal word counts
    only where no person is named: "adults with SCI and their assistance dogs" is a human
    study), then animals. Where those say nothing, ``context`` (the title and explanation)
    decides if it names only people or only animals; last, a design used with people (a
    trial, case series, cohort, survey) means people."""
    kinds, described = [specified(f) for f in fields[:2]], [specified(f) for f in fields[2:]]
    if any(_ANIMALS.search(text) for text in kinds):
        return "animal"
    if any(_LABORATORY.search(text) for text in kinds):
        return "laboratory"
    about = " ".join(described)
    if _LABORATORY.search(about):  # human or animal cells in a dish are laboratory work
        return "laboratory"
    if _HUMANS.search(about):
        return "human"
    if _ANIMALS.search(about):
        return "animal"
    people, animals = bool(_HUMANS.search(context)), bool(_ANIMALS.search(context))
    if people != animals:
        return "human" if people else "animal"
    if not animals and any(_HUMAN_DESIGNS.search(text) for text in kinds):
        return "human"
    return None


def early_stage(*fields: str | None, context: str = "") -> str | None:
    """A plain label for early-stage evidence ("Animal study", "Laboratory study", "Pilot
    study", "Case report", "Case series", "Phase 1 trial"), from the study type, evidence
    level, population and participants (in that order); None for anything else."""
    studied = subject(*fields, context=context)
    if studied == "animal":
        return "Animal study"
    if studied == "laboratory":
        return "Laboratory study"
    for text in (specified(f) for f in fields):  # a "Pilot study" rated "Case series": pilot
        for pattern, label in _EARLY_KINDS:
            if pattern.search(text):
                return label
    return None


def _animal_noun(text: str, size: int) -> str:
    found = _ANIMALS.search(text)
    word = found.group(1).lower() if found else "animals"
    if word in _ANIMAL_ADJECTIVES:
        word = "animals"
    noun = _PLURALS.get(word, word if word.endswith("s") else f"{word}s")
    if size == 1:
        noun = {"mice": "mouse", "sheep": "sheep"}.get(noun, noun.removesuffix("s"))
    return noun


def counted(
    sample_size: int | None,
    participants: str | None,
    population: str | None,
    study_type: str | None = None,
    evidence_level: str | None = None,
    *,
    context: str = "",
) -> str:
    """What was counted, in words. The source's own participants line where it starts with
    its count and names what it counted ("40 adult female rats ...", "54 couples ..."),
    unless it names no animal in an animal study ("40 participants" for rats); else the size
    with the right noun ("40 rats", "11 people"; "a sample of 200" where the source does not
    say who or what); else the participants line; else ""."""
    described = specified(participants)
    studied = subject(study_type, evidence_level, population, participants, context=context)
    names_something = bool(re.match(r"[\d,.\s]+[^\W\d_]", described))
    if names_something and not (studied == "animal" and not _ANIMALS.search(described)):
        return described
    if sample_size:
        if studied == "animal":
            noun = _animal_noun(
                f"{specified(study_type)} {specified(population)} {described} {context}",
                sample_size,
            )
            return f"{sample_size:,} {noun}"
        if studied == "human":
            return f"{sample_size:,} {'person' if sample_size == 1 else 'people'}"
        return f"a sample of {sample_size:,}"
    if described.replace(",", "").isdigit():  # a bare number says nothing of who or what
        return f"a sample of {described}"
    return described


def facts_line(
    *,
    study_type: str | None,
    evidence_level: str | None,
    sample_size: int | None,
    participants: str | None,
    population: str | None,
    study_duration: str | None,
    context: str = "",
) -> str:
    """Study type · what was counted · duration; absent ones are left out. ``context`` (the
    title and explanation) helps tell who was counted where the source's fields do not."""
    parts = [
        specified(study_type) or specified(evidence_level),
        counted(sample_size, participants, population, study_type, evidence_level, context=context),
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
    """The caveats a card always shows: every stored limitation, each whole, and after them
    any caution sentence a cut explanation left out (once each)."""
    items: list[str] = []
    for item in [*(limitations or ()), *dropped_cautions]:
        cleaned = clean_text(item)
        if cleaned and cleaned.lower().rstrip(".!?") not in {
            i.lower().rstrip(".!?") for i in items
        }:
            items.append(cleaned)
    return " ".join(item if item[-1:] in ".!?" else f"{item}." for item in items)
