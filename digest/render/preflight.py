"""Preflight checks of one rendered digest: pure functions returning problems as sentences.

Each check takes rendered output (and what the digest was meant to show) and returns a list
of problems, empty when all is well. ``digest check`` and every send run them on each
variant (see :mod:`digest.edition.checks`); a problem stops a send before any message goes out.
Warnings (:func:`summary_warnings`) are reported but never block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from digest.render.cards import DigestContent
from digest.render.renderer import Links, Rendered

#: Gmail clips HTML over about 102 KB; stay under this with a margin.
HTML_LIMIT = 100_000
_INVISIBLE = {"head", "style", "script", "title", "template"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
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


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._hidden = 0
        self._heading: list[str] | None = None
        self._chunks: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.page.ids.add(str(values["id"]))
        for attr in ("href", "src"):
            if values.get(attr) is not None and tag not in ("script", "style"):
                self.page.links.append((tag, attr, str(values[attr]).strip()))
        if tag == "img":
            self.page.images.append(values)
        if tag in _INVISIBLE and tag not in _VOID:
            self._hidden += 1
        if _HEADING.fullmatch(tag):
            self._heading = []

    def handle_endtag(self, tag: str) -> None:
        if tag in _INVISIBLE and self._hidden:
            self._hidden -= 1
        if _HEADING.fullmatch(tag) and self._heading is not None:
            self.page.headings.append(" ".join("".join(self._heading).split()))
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        self._chunks.append(data)
        if self._heading is not None:
            self._heading.append(data)

    def close(self) -> None:
        super().close()
        self.page.text = " ".join(" ".join(self._chunks).split())


def read_html(html: str) -> Page:
    reader = _Reader()
    reader.feed(html)
    reader.close()
    return reader.page


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
