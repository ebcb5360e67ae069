"""Rendering: golden files for one fixed week, escaping, accessibility and size limits.

Refresh the golden files after an intended template change with:

    DIGEST_REFRESH_GOLDEN=1 pytest tests/test_render.py

then review ``git diff tests/golden`` before committing.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import replace
from pathlib import Path

import pytest

from digest.config import Settings
from digest.errors import TemplateError
from digest.render.cards import Card, CategoryRef, DigestContent, build_content
from digest.render.renderer import Links, Palette, Rendered, Renderer, builtin_templates_dir

GOLDEN = Path(__file__).parent / "golden"
TOKEN = "golden-token-".ljust(43, "0")
LINKS = Links(
    unsubscribe=f"https://example.org/digest/u/{TOKEN}",
    preferences=f"https://example.org/digest/p/{TOKEN}",
    more="https://example.org",
    web_version="https://example.org/digest/v/golden-web-id",
)
CATEGORIES = [
    CategoryRef(1, "neurology", "Neurology"),
    CategoryRef(2, "pharmacology", "Pharmacology"),
    CategoryRef(3, "rehabilitation", "Rehabilitation"),
]


def card(id_: int, title: str, categories: tuple[int, ...], **kw: object) -> Card:
    names = tuple(c.name for c in CATEGORIES if c.id in categories)
    values: dict[str, object] = {
        "url": f"https://example.org/research/study-{id_}",
        "journal": "Journal of Neurotrauma",
        "year": 2026,
        "explanation": (
            "Researchers followed adults with a recent spinal cord injury. They compared two "
            "ways of caring for the bladder over six months. Fewer infections happened in the "
            "group that used the new routine. The study was small, so more research is needed."
        ),
        "first_finding": "Urinary infections fell from 5 to 2 per person-year.",
        "facts": "Randomised trial · 48 adults with a recent injury · 6 months",
        "keep_in_mind": "Only 48 people took part, all from one hospital.",
        "what_it_means": "Ask your continence nurse whether the routine suits you.",
        "doi": f"10.1089/neu.2026.{id_:04d}",
        "pmid": f"4100{id_:04d}",
        "open_access": True,
    }
    values.update(kw)
    return Card(id=id_, title=title, category_ids=categories, category_names=names, **values)  # type: ignore[arg-type]


def week_content(cap: int = 15) -> DigestContent:
    cards = {
        1: card(1, "A bladder routine that prevents infections", (2,)),
        2: card(
            2,
            "Minocycline after acute injury: a pilot trial",
            (1, 2),
            facts="",
            early_stage="Pilot study",
            pmid=None,
            open_access=None,
        ),
        3: card(
            3,
            "TNF-α blockers and nerve pain ≥ 6 months after injury",
            (1,),
            journal=None,
            first_finding=None,
            early_stage="Animal study",
            explanation="Rats with a spinal cord injury were given the drug … ",
            explanation_cut=True,
            what_it_means=None,
            doi=None,
            pmid=None,
        ),
    }
    return build_content([1, 2, 3], [1, 2], cards, CATEGORIES, cap, issued=dt.date(2026, 11, 23))


def render(settings: Settings, content: DigestContent | None = None) -> Rendered:
    return Renderer(settings).render_digest(content or week_content(), LINKS)


@pytest.mark.parametrize("part", ["html", "txt"])
def test_golden_week(settings: Settings, part: str) -> None:
    rendered = render(settings)
    actual = rendered.html if part == "html" else rendered.text
    path = GOLDEN / f"digest-2026-W48.{part}"
    if os.environ.get("DIGEST_REFRESH_GOLDEN"):
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8"), (
        f"{path.name} changed; if intended, refresh with DIGEST_REFRESH_GOLDEN=1 pytest {__file__}"
    )


def test_subject_names_the_count_and_topics(settings: Settings) -> None:
    assert render(settings).subject == "3 new summaries in Neurology and Pharmacology"


def test_html_is_accessible_and_complete(settings: Settings) -> None:
    html = render(settings).html
    assert html.lower().startswith("<!doctype html>")
    assert re.search(r'<html[^>]*\blang="en"', html)
    assert all(" alt=" in tag for tag in re.findall(r"<img\b[^>]*>", html))
    assert all('role="presentation"' in t for t in re.findall(r"<table\b[^>]*>", html))
    assert "<h1" in html and html.count("<h3") == 3
    assert html.count("<h2") == 3  # "In this issue" and one per topic
    # no dark-mode claim without dark styles
    assert "color-scheme" not in html
    assert "@media only screen and (min-width:480px)" in html
    assert "fonts.googleapis.com" not in html
    for needle in (
        LINKS.unsubscribe,
        LINKS.preferences,
        "not medical advice",
        settings.postal_address,
    ):
        assert needle in html
    links = re.findall(r'href="([^"]+)"', html)
    assert links and all(link.startswith(("https://", "#topic-")) for link in links)
    for anchor in {link for link in links if link.startswith("#")}:
        assert f'id="{anchor[1:]}"' in html  # "In this issue" leads to its section


def test_text_part_is_a_real_alternative(settings: Settings) -> None:
    rendered = render(settings)
    for c in week_content().cards:
        assert c.title in rendered.text and c.url in rendered.text
    readable = " ".join(rendered.text.split())  # as read, whatever the line wrapping
    for needle in (
        LINKS.unsubscribe,
        LINKS.preferences,
        "not medical advice",
        settings.postal_address,
    ):
        assert needle in readable
    assert max(len(line) for line in rendered.text.splitlines()) <= 998


def test_user_text_is_escaped_never_injected(settings: Settings) -> None:
    hostile = card(
        1,
        '<script>alert("x")</script> & "quotes" \'single\'',
        (2,),
        explanation="A <b>bold</b> claim & " + "a" * 400 + " long word.",
        first_finding="<img src=x onerror=alert(1)>",
    )
    content = build_content([1], [2], {1: hostile}, CATEGORIES, 15)
    rendered = render(settings, content)
    assert "<script>" not in rendered.html and "<img src=x" not in rendered.html
    assert "&lt;script&gt;alert(" in rendered.html
    assert "&lt;b&gt;bold&lt;/b&gt; claim &amp; " in rendered.html
    assert '<script>alert("x")</script>' in rendered.text  # plain text is shown as written
    assert "word-break:break-word" in rendered.html.replace(" ", "")


def test_html_stays_under_gmail_clipping_at_the_card_cap(settings: Settings) -> None:
    long = "This sentence is typical of a simple explanation for readers. " * 8
    cards = {
        i: card(
            i,
            f"A realistic and fairly long title for study number {i} of this week",
            (1, 2),
            explanation=long,
            first_finding=long[:260],
        )
        for i in range(1, 31)
    }
    content = build_content(list(cards), [1, 2], cards, CATEGORIES, settings.card_cap)
    html = render(settings, content).html
    assert len(re.findall(r"<h3[^>]*><a ", html)) == settings.card_cap
    assert len(html.encode("utf-8")) < 100_000
    assert "15 more new summaries" in html


def contrast(a: str, b: str) -> float:
    def luminance(colour: str) -> float:
        rgb = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_palette_contrast_is_at_least_4_5_to_1(settings: Settings) -> None:
    p = Palette(brand=settings.brand_color)
    for fg, bg in [
        (p.text, "#ffffff"),
        (p.muted, "#ffffff"),
        (p.brand, "#ffffff"),
        ("#ffffff", p.brand),
    ]:
        assert contrast(fg, bg) >= 4.5, (fg, bg)


def test_a_broken_template_names_its_file_and_line(settings: Settings, tmp_path: Path) -> None:
    import shutil

    own = tmp_path / "own"
    shutil.copytree(builtin_templates_dir(), own)
    path = own / "email" / "digest.txt.j2"
    lines = path.read_text().splitlines()
    lines[4] = "{{ digest.no_such_field }}"
    path.write_text("\n".join(lines))
    with pytest.raises(TemplateError, match=r"digest\.txt\.j2:5: .*no_such_field"):
        render(replace(settings, templates_dir=own))
    path.write_text("{% for x in %}")
    with pytest.raises(TemplateError, match=r"digest\.txt\.j2:1"):
        render(replace(settings, templates_dir=own))


def test_the_preflight_checks_what_the_render_step_made_with_no_database(
    settings: Settings, tmp_path: Path
) -> None:
    """Render and preflight are pure: a ListIdentity and contents in, verdicts out."""
    import datetime as dt
    import shutil

    from digest.edition.checks import check_renders
    from digest.edition.variants import render_each
    from digest.render.identity import ListIdentity

    content = week_content()
    key = ((1, 2), tuple(card.id for card in content.cards))
    date = dt.datetime(2026, 11, 23, 8, tzinfo=dt.UTC)
    renderer = Renderer(ListIdentity.of(settings))
    renders = render_each(renderer, {key: content}, date=date)
    checked = check_renders(renderer, [(1, key)], renders, validate=False)
    assert checked.problems == []
    assert checked.variants[0].subject == renders.built[key][0].subject
    assert checked.variants[0].label == "variant 1 (Neurology, Pharmacology)"
    assert any("no journal" in warning for warning in checked.warnings)

    own = tmp_path / "own"
    shutil.copytree(builtin_templates_dir(), own)
    (own / "email" / "digest.txt.j2").write_text("{{ digest.no_such_field }}\n")
    broken = Renderer(replace(ListIdentity.of(settings), templates_dir=own))
    renders = render_each(broken, {key: content}, date=date)
    checked = check_renders(broken, [(1, key)], renders, validate=False)
    assert renders.built == {}
    (problem,) = checked.problems
    assert problem.startswith("variant 1 (Neurology, Pharmacology): ")
    assert "digest.txt.j2:1" in problem and "no_such_field" in problem


@pytest.mark.parametrize("part", ["html", "txt"])
def test_golden_week_with_notices(settings: Settings, part: str) -> None:
    """The same week for a reader owed a correction and a retraction: both at the top."""
    from digest.render.cards import Notice

    notices = (
        Notice(
            "corrected",
            "Riluzole after acute injury",
            "https://example.org/research/study-7",
            "The trial had 112 participants, not 212.",
        ),
        Notice(
            "retracted",
            "Stem cells & walking",
            "https://example.org/research/study-8",
            "The journal withdrew the paper: the data could not be verified.",
        ),
    )
    rendered = render(settings, replace(week_content(), notices=notices))
    assert rendered.subject == "3 new summaries in Neurology and Pharmacology + corrections"
    actual = rendered.html if part == "html" else rendered.text
    path = GOLDEN / f"digest-2026-W48-notices.{part}"
    if os.environ.get("DIGEST_REFRESH_GOLDEN"):
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8"), (
        f"{path.name} changed; if intended, refresh with DIGEST_REFRESH_GOLDEN=1 pytest {__file__}"
    )
