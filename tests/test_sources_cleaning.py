"""Clean-up of source values: HTML to text, canonical URLs, identifiers and dates."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from digest.sources.cleaning import (
    canonical_url,
    find_doi,
    find_pmid,
    html_to_text,
    normalise_doi,
    normalise_pmid,
    one_line,
    truncate,
)
from digest.sources.dates import DateError, parse_datetime

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ("<p>Hello <b>world</b></p><p>Again</p>", "Hello world\n\nAgain"),
        ("Riluzole <script>alert('x')</script>works", "Riluzole works"),
        ("<style>p {color: red}</style>Plain", "Plain"),
        ("R&amp;D &lt;5 mg&gt; &eacute;t&eacute; &#8804; &#x2265;", "R&D <5 mg> été ≤ ≥"),
        ("&lt;script&gt;alert(1)&lt;/script&gt;Title", "Title"),  # escaped twice
        ("IL-6 < 5 pg/ml and A<B", "IL-6 < 5 pg/ml and A<B"),
        ("line<br>break<br/>again", "line\nbreak\nagain"),
        ("a\x00b\x1fc\ud800d", "abcd"),
        ("<![if !IE]>kept<![endif]>", "kept"),
        ("<img src=x onerror=alert(1)>Picture", "Picture"),
        ("  spaced\u00a0 out\t text ", "spaced out text"),
    ],
)
def test_html_becomes_plain_text(markup: str, text: str) -> None:
    assert html_to_text(markup) == text


def test_one_line_and_truncate() -> None:
    assert one_line("<p>One</p>\n<p>Two</p>") == "One Two"
    assert truncate("word " * 100, 30) == "word word word word word word…"
    assert truncate("short", 30) == "short"


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        (
            "HTTPS://Example.ORG:443/research/a?utm_source=rss&id=3&utm_medium=feed#part",
            "https://example.org/research/a?id=3#part",
        ),
        ("http://example.org", "http://example.org/"),
        ("https://example.org/a?fbclid=x&gclid=y", "https://example.org/a"),
        ("https://example.org:8443/a b", "https://example.org:8443/a%20b"),
        ("https://exämple.org/é", "https://xn--exmple-cua.org/%C3%A9"),
        ("https://example.org/a?b=1&UTM_Campaign=z&c", "https://example.org/a?b=1&c"),
    ],
)
def test_canonical_urls(url: str, canonical: str) -> None:
    assert canonical_url(url) == canonical


@pytest.mark.parametrize(
    "url", ["ftp://example.org/a", "javascript:alert(1)", "/research/a", "https://", "http://[::1"]
)
def test_not_http_urls_have_no_canonical_form(url: str) -> None:
    assert canonical_url(url) is None


def test_identifiers() -> None:
    assert normalise_doi("https://doi.org/10.1038/S41393-020-0001-2") == "10.1038/s41393-020-0001-2"
    assert normalise_doi("doi:10.1089/neu.2026.0102.") == "10.1089/neu.2026.0102"
    assert normalise_doi("not a doi") is None
    assert find_doi("https://dx.doi.org/10.1016/j.stem.2026.03.004") == "10.1016/j.stem.2026.03.004"
    assert normalise_pmid("PMID: 041000101") == "41000101"
    assert normalise_pmid("41x") is None
    assert find_pmid("https://pubmed.ncbi.nlm.nih.gov/41002102/") == "41002102"
    assert find_pmid("info:pmid/41003022") == "41003022"


@pytest.mark.parametrize(
    ("text", "zone", "expected"),
    [
        ("2026-11-20T09:00:00Z", LONDON, dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)),
        ("2026-11-20T09:00:00+01:00", LONDON, dt.datetime(2026, 11, 20, 8, tzinfo=dt.UTC)),
        # No time zone: the list's time zone (New York is UTC-5 in November).
        ("2026-11-20T09:00", NEW_YORK, dt.datetime(2026, 11, 20, 14, tzinfo=dt.UTC)),
        ("2026-11-20", NEW_YORK, dt.datetime(2026, 11, 20, 5, tzinfo=dt.UTC)),
        ("2026-07-01 12:00", LONDON, dt.datetime(2026, 7, 1, 11, tzinfo=dt.UTC)),  # BST
        ("Fri, 20 Nov 2026 09:00:00 GMT", NEW_YORK, dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)),
        ("Fri, 20 Nov 2026 09:00:00 -0000", NEW_YORK, dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)),
        ("Fri, 20 Nov 2026 09:00:00", NEW_YORK, dt.datetime(2026, 11, 20, 14, tzinfo=dt.UTC)),
    ],
)
def test_dates(text: str, zone: ZoneInfo, expected: dt.datetime) -> None:
    moment = parse_datetime(text, zone)
    assert moment.tzinfo is not None
    assert moment == expected


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01", "0001-01-01T00:00:00+05:00"])
def test_unreadable_dates(text: str) -> None:
    with pytest.raises(DateError):
        parse_datetime(text, LONDON)
