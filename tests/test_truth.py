"""Cards tell the truth: caveats are never cut, counts say what was counted, early-stage
evidence is labelled, and the cap never hides a topic. Checked on the shipped sample
summaries (what a reader of the demo gets) and on edge cases."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

from digest.config import Settings
from digest.render.cards import Card, CategoryRef, SummaryFacts, build_content, card_from_summary
from digest.render.renderer import Links, Renderer
from digest.render.truth import counted, early_stage, explanation, facts_line, keep_in_mind


def demo() -> list[dict[str, Any]]:
    text = resources.files("digest").joinpath("data/demo.json").read_text(encoding="utf-8")
    items: list[dict[str, Any]] = json.loads(text)["summaries"]
    return items


def by_title(part: str) -> dict[str, Any]:
    (item,) = [s for s in demo() if part in s["title"]]
    return item


def test_no_demo_explanation_loses_a_sentence() -> None:
    for item in demo():
        told = explanation(item["simple_explanation"])
        assert not told.cut and told.shown == " ".join(item["simple_explanation"].split())


def test_the_hydrogel_card_keeps_its_warning_that_rats_are_not_people() -> None:
    item = by_title("Hydrogel")
    assert (
        "many treatments that help rats do not work in people"
        in explanation(item["simple_explanation"]).shown
    )
    assert early_stage(item["study_type"], item["evidence_level"]) == "Animal study"
    facts = facts_line(
        study_type=item["study_type"],
        evidence_level=item["evidence_level"],
        sample_size=item["sample_size"],
        participants=item["participants"],
        population=item["population"],
        study_duration=item["study_duration"],
    )
    assert "40 adult female rats" in facts and "participants" not in facts
    assert keep_in_mind(item["limitations"], ()) == (
        "Only female rats were studied. The injury model may not match the variety of "
        "human injuries."
    )


@pytest.mark.parametrize(
    ("size", "participants", "population", "expected"),
    [
        (40, None, "Adult rats with thoracic contusion", "40 rats"),
        (1, None, "A mouse model of ALS", "1 mouse"),
        (12, None, "Laboratory mice", "12 mice"),
        (11, None, "Adults with SCI at T6 or above", "11 people"),
        (1, None, "A man with C5 injury", "1 person"),
        (108, "54 couples in which one partner has SCI", "Couples", "54 couples in which"),
        (612, "612 emergency doctors and nurses", "Staff", "612 emergency doctors and nurses"),
        (None, "SOD1G93A transgenic mice", None, "SOD1G93A transgenic mice"),
        (None, "Not specified", None, ""),
        (40, "40 participants", "adult rats", "40 rats"),  # never participants for rats
        (40, "40", "Spinal cord injury", "a sample of 40"),
        (20, None, "Murine spinal contusion model", "20 animals"),
        (200, None, "Spinal cord tissue samples", "a sample of 200"),
        (30, None, "Adults with SCI and their assistance dogs", "30 people"),
    ],
)
def test_counts_say_what_was_counted(
    size: int | None, participants: str | None, population: str | None, expected: str
) -> None:
    said = counted(size, participants, population)
    assert said.startswith(expected) and (said == "") == (expected == "")


def test_the_explanation_or_the_design_says_who_was_counted_when_no_field_does() -> None:
    told = "Surgeons moved working nerves in people with neck injuries."
    assert counted(36, None, None, "Case series", context=told) == "36 people"
    assert counted(40, None, None, "Pilot study", context="Rats got the gel.") == "40 rats"
    assert counted(200, None, None, "Randomised trial") == "200 people"  # a human design
    # an explanation naming both (rats now, people one day) decides nothing
    both = "It helped rats; many treatments that help rats do not work in people."
    assert counted(12, None, None, "Pilot study", context=both) == "a sample of 12"


@pytest.mark.parametrize(
    ("fields", "label"),
    [
        (("Animal study", "Not specified"), "Animal study"),
        (("Pilot study", "Randomised controlled trial"), "Pilot study"),
        (("Pilot study", "Case series"), "Pilot study"),
        (("Case series", "Case series"), "Case series"),
        (("Case report", None), "Case report"),
        (("Phase 1 trial", "Case series"), "Phase 1 trial"),
        (("Experimental", None, "Human neurons in cell culture"), "Laboratory study"),
        (("Randomised trial", "Randomised controlled trial"), None),
        (("Systematic review", "Systematic review", "Adults with SCI"), None),
        (("Randomised trial", None, "Adults with SCI and their assistance dogs"), None),
        ((None, None, "Porcine model of contusion"), "Animal study"),
        ((None, None, "Spinal cord tissue samples"), "Laboratory study"),
    ],
)
def test_early_stage_evidence_is_labelled(fields: tuple[str | None, ...], label: str) -> None:
    assert early_stage(*fields) == label


def test_a_long_explanation_is_cut_at_a_sentence_end_and_keeps_its_cautions() -> None:
    text = (
        "First sentence about the study. " * 30
        + "This is early work, and the results may not apply to people. "
        + "The device carries its own risks. "
        + "Results in rats rarely translate to people."
    )
    told = explanation(text, limit=200)
    assert told.cut and told.shown.endswith("study …")
    assert told.shown.count("First sentence") == 6
    assert told.dropped_cautions == (
        "This is early work, and the results may not apply to people.",
        "The device carries its own risks.",
        "Results in rats rarely translate to people.",
    )
    # a source without stored limitations: the dropped cautions become "Keep in mind"
    assert keep_in_mind([], told.dropped_cautions) == " ".join(told.dropped_cautions)
    # stored limitations come first, each whole, and the dropped cautions are still kept
    kept = keep_in_mind(
        ["Small sample", "The device carries its own risks."], told.dropped_cautions
    )
    assert kept == (
        "Small sample. The device carries its own risks. This is early work, and the results "
        "may not apply to people. Results in rats rarely translate to people."
    )


def test_a_single_very_long_sentence_is_never_cut() -> None:
    text = "word " * 400
    told = explanation(text, limit=100)
    assert not told.cut and told.shown == text.strip()


CATEGORIES = [CategoryRef(i, f"topic-{i}", f"Topic {i}") for i in range(1, 5)]


def card(id_: int, category: int) -> Card:
    return Card(
        id=id_,
        title=f"Study {id_}",
        url=f"https://example.org/s/{id_}",
        journal=None,
        year=None,
        category_ids=(category,),
        category_names=(f"Topic {category}",),
        explanation="",
        first_finding=None,
        facts="",
    )


def test_the_card_cap_never_hides_a_chosen_topic() -> None:
    # 12 new items in topic 1 come first, then one each in topics 2, 3 and 4
    cards = {i: card(i, 1) for i in range(1, 13)} | {13: card(13, 2), 14: card(14, 3)}
    cards[15] = card(15, 4)
    content = build_content(list(cards), [1, 2, 3, 4], cards, CATEGORIES, cap=5)
    shown = {section.category.name: len(section.cards) for section in content.sections}
    assert shown == {"Topic 1": 2, "Topic 2": 1, "Topic 3": 1, "Topic 4": 1}
    first = content.sections[0]
    assert (first.category.name, first.total, first.hidden) == ("Topic 1", 12, 10)
    assert content.more_count == 10 and content.total == 15


def test_more_topics_than_the_cap_still_shows_one_card_of_each() -> None:
    cards = {i: card(i, i) for i in range(1, 5)}
    content = build_content(list(cards), [1, 2, 3, 4], cards, CATEGORIES, cap=2)
    assert len(content.sections) == 4 and content.more_count == 0


def test_a_cut_explanation_renders_with_its_link_and_every_caveat_in_both_parts(
    settings: Settings,
) -> None:
    long = "The team measured walking speed every week. " * 30
    facts = SummaryFacts(
        id=7,
        title="Stimulation and walking",
        url="https://example.org/research/stimulation",
        journal="Brain",
        year=2026,
        categories=(CATEGORIES[0],),
        simple_explanation=long + "Results in rats rarely translate to people.",
        key_findings=("Walking speed rose by 0.1 m/s.",),
        study_type="Randomised trial",
        sample_size=40,
        population="Adult rats with contusion injury",
        limitations=("Only female rats were studied.",),
        doi="10.1093/brain/awae999",
    )
    card = card_from_summary(facts)
    assert card.explanation_cut and card.early_stage == "Animal study"
    content = build_content([7], [1], {7: card}, CATEGORIES, cap=15)
    links = Links(
        unsubscribe="https://e.org/u/t", preferences="https://e.org/p/t", more="https://e.org"
    )
    rendered = Renderer(settings).render_digest(content, links)
    text = " ".join(rendered.text.split())
    html = " ".join(rendered.html.split())
    for part in (text, html):
        assert "Continue reading" in part
        assert "Only female rats were studied. Results in rats rarely translate to people." in part
        assert "40 rats" in part and "participants" not in part
        assert "https://doi.org/10.1093/brain/awae999" in part
