"""Reading each source format, including hostile input: what is kept, what is refused, and
where the problems are said to be."""

from __future__ import annotations

import codecs
import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digest.errors import DataError
from digest.sources import parse_source
from digest.sources.validate import Checked, check

EXAMPLES = Path(__file__).parent.parent / "examples"
NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
LONDON = ZoneInfo("Europe/London")


def read(
    data: bytes | str, fmt: str = "auto", *, lenient: bool = False, zone: ZoneInfo = LONDON
) -> Checked:
    raw = data.encode() if isinstance(data, str) else data
    return check(parse_source(raw, fmt, lenient=lenient), zone=zone, now=NOW)


def problems(checked: Checked) -> list[str]:
    return [str(p) for p in checked.rejects]


def warnings(checked: Checked) -> list[str]:
    return [str(p) for p in checked.warnings]


def rss(*items: str, head: str = "") -> str:
    return (
        f'<?xml version="1.0" encoding="utf-8"?>{head}\n<rss version="2.0"><channel>\n'
        "<title>Summaries</title><link>https://example.org/</link>\n"
        + "\n".join(f"<item>{item}</item>" for item in items)
        + "\n</channel></rss>\n"
    )


@pytest.mark.parametrize(
    ("name", "label", "titles"),
    [
        ("summaries.json", "JSON", 3),
        ("summaries.jsonl", "JSON Lines", 3),
        ("summaries.csv", "CSV", 2),
        ("feed-rss2.xml", "RSS 2.0", 2),
        ("feed-rdf.xml", "RSS 1.0 (RDF)", 2),
        ("feed-atom.xml", "Atom 1.0", 2),
        ("feed.json", "JSON Feed", 2),
    ],
)
def test_every_example_reads_cleanly(name: str, label: str, titles: int) -> None:
    checked = read((EXAMPLES / name).read_bytes())
    assert checked.format == label
    assert len(checked.records) == titles
    assert checked.rejects == () and checked.warnings == ()
    for valid in checked.records:
        assert valid.record.url.startswith("https://") and "utm_" not in valid.record.url
        assert valid.record.published_at.tzinfo is not None
        assert valid.record.categories


def test_journal_rdf_feed_gives_journal_doi_pmid_and_year() -> None:
    first, second = read((EXAMPLES / "feed-rdf.xml").read_bytes()).records
    assert first.position == "entry 1 (line 19)"
    assert first.record.url == "https://journal.example.org/articles/s41393-026-0301-1"
    assert first.record.fields["journal"] == "Spinal Cord"
    assert first.record.fields["doi"] == "10.1038/s41393-026-0301-1"
    assert first.record.fields["year"] == 2026
    assert first.record.fields["simple_explanation"] == (
        "Sleep apnoea was found in six in ten people with neck injuries."
    )
    # A date without a time is midnight in the list's time zone.
    assert first.record.published_at == dt.datetime(2026, 11, 17, tzinfo=LONDON)
    assert second.record.fields["pmid"] == "41003022"
    assert second.record.fields["journal"] == "Spinal Cord"  # from the channel


def test_each_rejected_record_names_its_position_and_every_reason() -> None:
    items = [
        {"title": "Fine", "url": "https://example.org/a", "published_at": "2026-11-20"},
        {"url": "https://example.org/b", "published_at": "2026-11-20"},
        {"title": "Bad URL", "url": "ftp://example.org/c", "published_at": "20 Nov"},
        {"title": "Bad fields", "url": "https://example.org/d", "year": "soon", "doi": "x"},
        "not an object",
    ]
    checked = read(json.dumps({"items": items}, indent=2))
    assert problems(checked) == [
        "item 5 (line 23): expected a JSON object, got text",
        "item 2 (line 8): missing title",
        "item 3 (line 12): URL 'ftp://example.org/c' is not an http(s) address; unparseable "
        "date '20 Nov' (expected ISO 8601, such as 2026-11-20T09:00:00Z)",
        "item 4 (line 17): year must be a whole number, got 'soon'; doi 'x' is not a DOI "
        "(such as 10.1038/s41393-020-0001-2)",
    ]
    assert [v.record.title for v in checked.records] == ["Fine"]


def test_json_lines_reports_the_line_of_a_broken_record() -> None:
    text = (
        '{"title": "One", "url": "https://example.org/1", "published_at": "2026-11-20"}\n'
        "\n"
        '{"title": "Two", "url": \n'
        "[1, 2]\n"
    )
    checked = read(text)
    assert checked.format == "JSON Lines"
    assert problems(checked) == [
        "line 3: not valid JSON at column 25: Expecting value",
        "line 4: expected a JSON object, got an array",
    ]


def test_malformed_xml_is_refused_whole_with_line_and_column() -> None:
    broken = rss(
        "<title>Kept</title><link>https://example.org/kept</link>",
        "<title>Broken</titl><link>https://example.org/broken</link>",
    )
    with pytest.raises(DataError) as refused:
        read(broken)
    assert str(refused.value) == (
        "malformed XML at line 5, column 22: mismatched tag; nothing was imported "
        "(--lenient imports the entries that can be recovered)"
    )
    lenient = read(broken, lenient=True)
    assert "https://example.org/kept" in [v.record.url for v in lenient.records]
    assert warnings(lenient)[0].startswith(
        "malformed XML at line 5, column 22: mismatched tag: imported the 2 entries"
    )


def test_undefined_entities_and_entity_bombs_are_malformed() -> None:
    with pytest.raises(DataError, match=r"line 4, column 18: undefined entity"):
        read(rss("<title>Nice&nbsp;title</title><link>https://example.org/a</link>"))
    lol = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    bomb = rss("<title>&l9;</title>", head=f'<!DOCTYPE rss [<!ENTITY l0 "lol">{lol}]>')
    with pytest.raises(DataError, match="malformed XML"):
        read(bomb)


def test_external_entities_are_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    head = f'<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file://{secret}">]>'
    checked = read(
        rss("<title>A &xxe; B</title><link>https://example.org/a</link>", head=head),
        lenient=True,
    )
    assert "TOP-SECRET" not in repr(checked)


def test_html_and_script_in_titles_and_descriptions_become_plain_text() -> None:
    checked = read(
        rss(
            "<title>&lt;script&gt;alert(1)&lt;/script&gt;Riluzole &lt;b&gt;works&lt;/b&gt;</title>"
            "<link>https://example.org/a</link>"
            "<description><![CDATA[<p onclick='x()'>Fewer <i>infections</i>."
            "<script>document.cookie</script></p><p>R&amp;D &lt; 5 mg &copy;</p>]]></description>",
            "<title><![CDATA[Tom & Jerry <3 CDATA]]></title><link>https://example.org/b</link>"
            "<description>&lt;img src=x onerror=alert(1)&gt;Caf&#233; &amp;amp; more</description>",
        )
    )
    first, second = (v.record for v in checked.records)
    assert first.title == "Riluzole works"
    assert first.fields["simple_explanation"] == "Fewer infections.\n\nR&D < 5 mg ©"
    assert second.title == "Tom & Jerry <3 CDATA"
    assert second.fields["simple_explanation"] == "Café & more"


def test_a_huge_description_is_cut_with_a_warning() -> None:
    item = {
        "title": "Long",
        "url": "https://example.org/long",
        "published_at": "2026-11-20T09:00:00Z",
        "simple_explanation": "All the words. " * 70_000,
    }
    checked = read(json.dumps([item]))
    explanation = checked.records[0].record.fields["simple_explanation"]
    assert isinstance(explanation, str)
    assert len(explanation) <= 10_000 and explanation.endswith("…")
    assert warnings(checked) == [
        "item 1 (line 1): simple_explanation is 1,050,000 characters: cut to 10,000"
    ]


def test_duplicates_in_one_file() -> None:
    same = "<title>Same</title><link>https://example.org/same?utm_source=x</link>"
    changed = "<title>Same, edited</title><link>https://example.org/same</link>"
    checked = read(rss(same, same, changed))
    assert [v.record.title for v in checked.records] == ["Same"]
    assert checked.duplicates == 1
    assert "entry 2 (line 5): same as entry 1 (line 4): ignored" in warnings(checked)
    assert problems(checked) == [
        "entry 3 (line 6): same summary as entry 1 (line 4) (same URL) with different content"
    ]


def test_csv_in_latin1_with_semicolons() -> None:
    text = (
        "title;url;published_at;categories\n"
        "Étude sur la rééducation;https://example.org/fr;2026-11-20 09:00;Rééducation\n"
    )
    checked = read(text.encode("latin-1"))
    assert checked.format == "CSV"
    assert checked.records[0].record.title == "Étude sur la rééducation"
    assert checked.records[0].record.categories == ("Rééducation",)
    assert warnings(checked) == [
        "not UTF-8 (first bad byte 35): read as Windows-1252/Latin-1",
    ]


def test_csv_with_a_bom_lists_and_naive_dates_in_the_list_time_zone() -> None:
    text = (
        "Title,URL,Published At,Categories,Key findings,Sample size,Open access,Notes\n"
        'Trial,https://example.org/t,2026-07-01 09:00,"Pain; Pharmacology",'
        '"Less pain.; Better sleep.","1,204",yes,ignored\n'
    )
    checked = read(codecs.BOM_UTF8 + text.encode(), zone=ZoneInfo("America/New_York"))
    record = checked.records[0].record
    assert record.published_at == dt.datetime(2026, 7, 1, 13, 0, tzinfo=dt.UTC)  # EDT
    assert record.categories == ("Pain", "Pharmacology")
    assert record.fields["key_findings"] == ["Less pain.", "Better sleep."]
    assert record.fields["sample_size"] == 1204
    assert record.fields["open_access"] is True
    assert warnings(checked) == ["ignored unknown columns: notes"]


def test_csv_row_with_too_many_cells_and_missing_columns() -> None:
    checked = read("title,url\nA,https://example.org/a,extra\n")
    assert problems(checked) == ["line 2: 3 cells but the header names 2 columns"]
    with pytest.raises(DataError, match="must name at least the title and url columns"):
        read("title,link\nA,https://example.org/a\n", "csv")


def test_an_item_without_a_date_gets_the_import_time_with_a_warning() -> None:
    checked = read(rss("<title>Undated</title><link>https://example.org/u</link>"))
    assert checked.records[0].record.published_at == NOW
    assert checked.records[0].dated is False
    assert warnings(checked) == [
        "entry 1 (line 4): no publish date: using the import time (2026-11-23 08:00 UTC)"
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the source is empty"),
        (b"<!DOCTYPE html><html><body>Not found</body></html>", "HTML page"),
        (b"hello there", "cannot tell the format"),
        (b'{"version": "https://jsonfeed.org/version/1.1"}', 'needs an "items" array'),
        (b"[1, 2", "not valid JSON at line 1, column 6"),
        (b"[" * 100_000, "not valid JSON"),
        (b"<root><child/></root>", "not an RSS, RDF or Atom feed"),
    ],
)
def test_sources_that_cannot_be_read_at_all(data: bytes, message: str) -> None:
    with pytest.raises(DataError, match=message):
        read(data)
