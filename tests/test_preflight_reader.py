"""The preflight reads each variant's HTML with lxml (one C parse instead of Python's
``html.parser``): it must see exactly what ``html.parser`` sees in a real digest (the
golden files, every variant shape of which is in them) and in the awkward corners."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from digest.render.preflight import Page, read_html

GOLDEN = Path(__file__).parent / "golden"
_INVISIBLE = {"head", "style", "script", "title", "template"}
_HEADING = re.compile(r"h[1-6]")


class Reference(HTMLParser):
    """What the preflight used before: the page as Python's own HTML parser reads it."""

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
        if tag in _INVISIBLE:
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


def reference(html: str) -> Page:
    reader = Reference()
    reader.feed(html)
    reader.close()
    return reader.page


SNIPPETS = {
    "entities and comments": "<p>caf&eacute; &amp; <!-- hidden -->tea&nbsp;time</p>",
    "mso conditionals": (
        "<div><!--[if mso | IE]><table><tr><td><![endif]--><p>shown</p>"
        "<!--[if mso | IE]></td></tr></table><![endif]--></div>"
    ),
    "hidden parts": (
        "<html><head><title>T</title><style>p{color:red}</style></head><body>"
        "<script>var x = '<a href=http://x>';</script><p>after</p></body></html>"
    ),
    "headings and ids": '<h1 id="top">A <b>bold</b> title</h1><h2>Second</h2><a href="#top">up</a>',
    "links and images": (
        '<a href=" https://example.org/a ">a</a><img src="https://example.org/i.png" alt="">'
        '<img src="http://example.org/j.png"><link href="https://example.org/s.css">'
    ),
    "text beside blocks": "<td>one</td><td>two<br>three</td>",
}


@pytest.mark.parametrize("name", sorted(p.name for p in GOLDEN.glob("*.html")))
def test_a_real_digest_reads_as_html_parser_reads_it(name: str) -> None:
    html = (GOLDEN / name).read_text(encoding="utf-8")
    page = read_html(html)
    assert page == reference(html)
    assert page.links and page.headings and "medical advice" in page.text


@pytest.mark.parametrize("name", SNIPPETS)
def test_awkward_html_reads_as_html_parser_reads_it(name: str) -> None:
    html = f"<!doctype html><html><body>{SNIPPETS[name]}</body></html>"
    assert read_html(html) == reference(html)


def test_a_document_opening_with_an_xml_declaration_is_read() -> None:
    html = '<?xml version="1.0" encoding="utf-8"?><html><body><p>Zürich</p></body></html>'
    assert read_html(html) == reference(html)
    assert read_html(html).text == "Zürich"
