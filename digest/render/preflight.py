"""Preflight checks of one rendered digest: pure functions returning problems as sentences.

Each check takes rendered output (and what the digest was meant to show) and returns a list
of problems, empty when all is well. ``digest check`` and every send run them on each
variant (see :mod:`digest.edition.checks`); a problem stops a send before any message goes out.
Warnings (:func:`summary_warnings`) are reported but never block.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import lxml.etree
import lxml.html

from digest.render.cards import DigestContent
from digest.render.renderer import Links, Rendered

#: Gmail clips HTML over about 102 KB; stay under this with a margin.
HTML_LIMIT = 100_000
_UTF8 = lxml.html.HTMLParser(encoding="utf-8")
_INVISIBLE = {"head", "style", "script", "title", "template"}
_HEADING = re.compile(r"h[1-6]")
_NOT_ADVICE = re.compile(r"\bnot\b(?:\W+\w+){0,4}?\W+medical advice\b", re.IGNORECASE)
_TEXT_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s<>\"']+", re.IGNORECASE)


@dataclass
class Page:
    """What the checks need to know of an HTML document."""

    links: list[tuple[str, str, str]] = field(default_factory=list)  # (tag, attribute, url)
    images: list[dict[str, str | None]] = field(default_factory=list)
    headings: list[str] = field(default_factory=list)
    text: str = ""  # visible text, white space folded
    ids: set[str] = field(default_factory=set)  # targets of in-page links (#id)

    @property
    def hrefs(self) -> set[str]:
        return {url for tag, attr, url in self.links if tag == "a" and attr == "href"}


def read_html(html: str) -> Page:
    """What the checks need of ``html``, from one parse by libxml2 (lxml, which premailer
    already uses): ten times cheaper than Python's ``html.parser``, whose pass over each
    variant was a sixth of the CPU before the first message. Text is gathered as that
    parser gave it (each run of text between two tags a chunk, chunks joined by a space);
    nothing inside ``head``, ``style``, ``script``, ``title`` or ``template`` is visible."""
    page = Page()
    if not html.strip():
        return page
    chunks: list[str] = []
    heading: list[str] | None = None
    hidden = 0
    try:
        root = lxml.html.document_fromstring(html)
    except ValueError:  # a str with an XML encoding declaration: lxml wants its bytes
        root = lxml.html.document_fromstring(html.encode("utf-8"), parser=_UTF8)
    for event, element in lxml.etree.iterwalk(root, events=("start", "end", "comment", "pi")):
        tag = element.tag
        if not isinstance(tag, str):  # a comment or processing instruction: only its tail
            if element.tail and not hidden:
                chunks.append(element.tail)
                if heading is not None:
                    heading.append(element.tail)
            continue
        if event == "start":
            _read_start(page, tag, element.attrib)
            if tag in _INVISIBLE:
                hidden += 1
            if _HEADING.fullmatch(tag):
                heading = []
            text = element.text
        else:
            if tag in _INVISIBLE:
                hidden -= 1
            if _HEADING.fullmatch(tag) and heading is not None:
                page.headings.append(" ".join("".join(heading).split()))
                heading = None
            text = element.tail
        if text and not hidden:
            chunks.append(text)
            if heading is not None:
                heading.append(text)
    page.text = " ".join(" ".join(chunks).split())
    return page


def _read_start(page: Page, tag: str, attrs: Mapping[str, str]) -> None:
    """Ids, links and images of an opening tag."""
    if attrs.get("id"):
        page.ids.add(attrs["id"])
    if tag not in ("script", "style"):
        for attr in ("href", "src"):
            if attr in attrs:
                page.links.append((tag, attr, attrs[attr].strip()))
    if tag == "img":
        page.images.append(dict(attrs))


def _folded(text: str) -> str:
    return " ".join(text.split())


def _short(value: str, most: int = 80) -> str:
    return value if len(value) <= most else value[: most - 1] + "…"


def size_problems(html: str, limit: int = HTML_LIMIT) -> list[str]:
    size = len(html.encode("utf-8"))
    if size < limit:
        return []
    return [
        f"HTML is {size:,} bytes: Gmail clips messages over about 102 KB, keep it under "
        f"{limit:,} (lower card_cap or shorten the template)"
    ]


def link_problems(page: Page, text: str) -> list[str]:
    """Every link and image address absolute https (``mailto:`` links, and links to a part of
    the same email that exists, allowed)."""
    problems: list[str] = []
    seen: set[str] = set()
    for tag, attr, url in page.links:
        if url.lower().startswith("https://") or (tag == "a" and url.startswith("mailto:")):
            continue
        if tag == "a" and url.startswith("#") and url[1:] in page.ids:
            continue
        if url in seen:
            continue
        seen.add(url)
        kind = "is not https" if "://" in url else "is not an absolute https address"
        problems.append(f"HTML <{tag} {attr}={_short(url)!r}> {kind}")
    for url in sorted(set(_TEXT_URL.findall(text))):
        if not url.lower().startswith("https://"):
            problems.append(f"text part link {_short(url)!r} is not https")
    return problems


def image_problems(page: Page) -> list[str]:
    """Every image has an ``alt`` attribute (empty only for decorative images)."""
    return [
        f"HTML <img src={_short(str(image.get('src') or ''))!r}> has no alt text"
        for image in page.images
        if image.get("alt") is None
    ]


def footer_problems(rendered: Rendered, page: Page, links: Links, postal_address: str) -> list[str]:
    """The unsubscribe link, the postal address and the not-medical-advice line, in both parts."""
    problems: list[str] = []
    text = _folded(rendered.text)
    if links.unsubscribe not in page.hrefs:
        problems.append("HTML part has no unsubscribe link")
    if links.unsubscribe not in rendered.text:
        problems.append("text part has no unsubscribe link")
    address = _folded(postal_address)
    if address not in page.text:
        problems.append(f"HTML part does not show the postal address {address!r}")
    if address not in text:
        problems.append(f"text part does not show the postal address {address!r}")
    if not _NOT_ADVICE.search(page.text):
        problems.append("HTML part lacks the line saying the summaries are not medical advice")
    if not _NOT_ADVICE.search(text):
        problems.append("text part lacks the line saying the summaries are not medical advice")
    return problems


def text_part_problems(content: DigestContent, text: str) -> list[str]:
    """The text part holds every title and every summary URL that the digest shows."""
    folded = _folded(text)
    problems: list[str] = []
    for card in content.cards:
        if _folded(card.title) not in folded:
            problems.append(f"text part lacks the title {_short(card.title)!r}")
        if card.url not in text:
            problems.append(f"text part lacks the link {card.url}")
    return problems


def section_problems(content: DigestContent, page: Page, text: str) -> list[str]:
    """No category section without summaries, in the content or in either part."""
    problems = [
        f"section {section.category.name!r} has no summaries"
        for section in content.sections
        if not section.cards
    ]
    shown = {section.category.name for section in content.sections if section.cards}
    empty = [c.name for c in content.reader_categories if c.name not in shown]
    headings = set(page.headings)
    text_lines = {_folded(line).lower() for line in text.splitlines()}
    for name in empty:
        if name in headings:
            problems.append(f"HTML part shows an empty section {name!r}")
        if name.lower() in text_lines:
            problems.append(f"text part shows an empty section {name!r}")
    return problems


def summary_warnings(content: DigestContent) -> list[str]:
    """Summaries missing fields readers rely on (reported, never blocking)."""
    warnings: list[str] = []
    for card in content.cards:
        missing = []
        if not card.explanation:
            missing.append("no simple explanation")
        if card.first_finding is None:
            missing.append("no key findings")
        if not card.journal:
            missing.append("no journal")
        if not card.year:
            missing.append("no year")
        if missing:
            warnings.append(
                f"summary {_short(card.title, 60)!r} ({card.url}): {', '.join(missing)}"
            )
    return warnings


def variant_problems(
    rendered: Rendered, content: DigestContent, links: Links, postal_address: str
) -> list[str]:
    """Every blocking check on one rendered variant."""
    page = read_html(rendered.html)
    return [
        *size_problems(rendered.html),
        *link_problems(page, rendered.text),
        *image_problems(page),
        *footer_problems(rendered, page, links, postal_address),
        *text_part_problems(content, rendered.text),
        *section_problems(content, page, rendered.text),
    ]
