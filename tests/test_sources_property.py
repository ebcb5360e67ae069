"""Property: no input makes an importer fail with anything but :class:`DataError`, and every
record it accepts fits the database (lengths, no NUL or lone surrogates, aware dates)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any
from xml.sax.saxutils import escape

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.errors import DataError
from digest.sources import FORMATS, parse_source
from digest.sources.jsonsrc import KEYS
from digest.sources.validate import SHORT_TEXT, Checked, check
from tests.test_sources_formats import LONDON, NOW

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TEXT = st.text(max_size=40)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3)
)
INTERESTING_TEXT = st.sampled_from(
    [
        "https://example.org/a?utm_source=x",
        "http://[::1",
        "2026-11-20T09:00:00Z",
        "0001-01-01T00:00:00+05:00",
        "9999-12-31T23:59:59-12:00",
        "10.1038/s41393",
        "<script>x</script>",
        "&lt;b&gt;",
        "<![foo[",
        "\x00",
        "\ud800",
        "a;b;;c",
        "99999999999999999999",
        "",
    ]
)
FIELD_VALUES = JSON_VALUES | INTERESTING_TEXT | st.lists(INTERESTING_TEXT, max_size=3)
URLS = st.sampled_from(
    ["https://example.org/a", "http://EXAMPLE.org:80/b?utm_medium=x#f", "https://exämple.org/c d"]
)
#: Mostly plausible records (a title and a URL) with anything in the other fields.
RECORDS = st.fixed_dictionaries(
    {"title": TEXT | INTERESTING_TEXT, "url": URLS | INTERESTING_TEXT},
    optional={key: FIELD_VALUES for key in sorted(KEYS - {"title", "url"})},
)


def read(data: bytes, fmt: str, lenient: bool) -> Checked | None:
    try:
        return check(parse_source(data, fmt, lenient=lenient), zone=LONDON, now=NOW)
    except DataError:
        return None


def assert_storable(checked: Checked | None) -> None:
    if checked is None:
        return
    for valid in checked.records:
        record = valid.record
        assert 0 < len(record.title) <= SHORT_TEXT["title"]
        assert record.url.startswith(("http://", "https://")) and len(record.url) <= 2000
        assert record.published_at.tzinfo is not None
        assert 1900 <= record.published_at.astimezone(dt.UTC).year <= 2200
        assert all(0 < len(c) <= 200 for c in record.categories)
        for name, value in record.fields.items():
            for text in value if isinstance(value, list) else [value]:
                if isinstance(text, str):
                    assert "\x00" not in text
                    text.encode("utf-8")  # no lone surrogates
                    assert len(text) <= SHORT_TEXT.get(name, 10_000)
            if isinstance(value, int) and not isinstance(value, bool):
                assert -(2**31) < value < 2**31


@FAST
@given(st.binary(max_size=400), st.sampled_from(FORMATS), st.booleans())
def test_any_bytes(data: bytes, fmt: str, lenient: bool) -> None:
    assert_storable(read(data, fmt, lenient))


@FAST
@given(st.lists(RECORDS | JSON_VALUES, max_size=4), st.booleans())
def test_any_json_records(records: list[Any], wrap: bool) -> None:
    doc: Any = {"items": records} if wrap else records
    assert_storable(read(json.dumps(doc).encode("utf-8", "surrogatepass"), "auto", False))
    lines = "\n".join(json.dumps(r) for r in records)
    assert_storable(read(lines.encode("utf-8", "surrogatepass"), "jsonl", False))


@FAST
@given(
    st.lists(
        st.tuples(TEXT, URLS).map(list) | st.lists(TEXT | INTERESTING_TEXT, max_size=6),
        max_size=4,
    )
)
def test_any_csv_rows(rows: list[list[str]]) -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["title", "url", "published_at", "categories", "sample_size", "doi"])
    writer.writerows(rows)
    assert_storable(read(out.getvalue().encode("utf-8", "surrogatepass"), "csv", False))


ELEMENTS = st.sampled_from(
    ["title", "link", "description", "pubDate", "guid", "category", "dc:identifier"]
)


ENTRY_PARTS = st.tuples(ELEMENTS, TEXT | INTERESTING_TEXT, st.booleans())
PLAUSIBLE_ENTRY = st.tuples(
    st.tuples(st.just("title"), TEXT, st.just(True)),
    st.tuples(st.just("link"), URLS, st.just(True)),
    st.lists(ENTRY_PARTS, max_size=4),
).map(lambda parts: [parts[0], parts[1], *parts[2]])


@FAST
@given(st.lists(PLAUSIBLE_ENTRY | st.lists(ENTRY_PARTS, max_size=5), max_size=4), st.booleans())
def test_any_rss_entries(entries: list[list[tuple[str, str, bool]]], lenient: bool) -> None:
    items = "".join(
        "<item>"
        + "".join(
            f"<{name}>{escape(value) if escaped else value}</{name}>"
            for name, value, escaped in entry
        )
        + "</item>"
        for entry in entries
    )
    feed = (
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
        f"<title>t</title>{items}</channel></rss>"
    )
    assert_storable(read(feed.encode("utf-8", "surrogatepass"), "feed", lenient))
