"""``digest summaries import|list|show`` as an admin uses them: the lines printed, the rows
stored, and what readers then get by email. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import os
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from digest.cli.main import cli
from digest.config import STARTER_CONFIG, Settings
from digest.edition.run import run_edition
from digest.mail.transports import MemoryTransport
from digest.store.db import Category
from digest.store.models import Summary
from tests.conftest import NOW, add_reader
from tests.test_sources_fetch import serve

EXAMPLES = Path(__file__).parent.parent / "examples"
DAY = dt.timedelta(days=1)


@dataclass
class Site:
    folder: Path
    factory: sessionmaker[Session]

    def run(self, *args: str, stdin: bytes | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), input=stdin)

    def summaries(self) -> dict[str, Summary]:
        with self.factory() as session:
            return {s.title: s for s in session.scalars(select(Summary))}

    def categories(self) -> dict[str, str]:
        with self.factory() as session:
            return {c.slug: c.name for c in session.scalars(select(Category))}


def database_url(engine: Engine) -> str:
    """The URL of the test database, with the per-test schema on PostgreSQL."""
    url = engine.url
    if url.get_backend_name() == "postgresql":
        with engine.connect() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture
def site(
    tmp_path: Path,
    engine: Engine,
    factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> Site:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("DIGEST_")]:
        monkeypatch.delenv(name)
    (tmp_path / "digest.toml").write_text(STARTER_CONFIG, encoding="utf-8")
    monkeypatch.setenv("DIGEST_DATABASE_URL", database_url(engine))
    monkeypatch.setenv("DIGEST_TIMEZONE", "Europe/London")
    return Site(tmp_path, factory)


def lines(result: Result) -> list[str]:
    return result.output.strip().splitlines()


def example(name: str) -> str:
    return str(EXAMPLES / name)


def test_import_then_import_again_changes_nothing(site: Site) -> None:
    first = site.run("summaries", "import", example("summaries.json"))
    assert first.exit_code == 0, first.output
    assert lines(first) == [
        "New categories: Bladder & Bowel (bladder-bowel), Rehabilitation (rehabilitation), "
        "Pharmacology (pharmacology), Neurology (neurology)",
        f"Imported {example('summaries.json')} (JSON): 3 added, 0 updated, 0 unchanged, 0 skipped.",
    ]
    stored = site.summaries()
    bladder = stored["A bladder routine that prevents infections"]
    assert bladder.url == "https://example.org/research/bladder-routine"  # utm_* removed
    assert bladder.published_at == dt.datetime(2026, 11, 18, 9, tzinfo=dt.UTC)
    assert [c.slug for c in bladder.categories] == ["bladder-bowel", "rehabilitation"]
    assert (bladder.study_type, bladder.sample_size, bladder.open_access) == (
        "Randomised trial",
        48,
        True,
    )
    assert (bladder.doi, bladder.pmid, bladder.evidence_level) == (
        "10.1038/s41393-026-0101-1",
        "41000101",
        "Level 2",
    )
    assert bladder.limitations == ["Small study", "One hospital"]
    assert bladder.practical_implications.startswith("Ask your team")
    # A date without a time is midnight in the list's time zone (London, UTC in November).
    gait = stored["Home-based robotic gait training"]
    assert gait.published_at == dt.datetime(2026, 11, 20, 0, tzinfo=dt.UTC)

    again = site.run("summaries", "import", example("summaries.json"))
    assert again.exit_code == 0, again.output
    assert lines(again) == [
        f"Imported {example('summaries.json')} (JSON): 0 added, 0 updated, 3 unchanged, 0 skipped."
    ]
    assert {s.id: s.updated_at for s in site.summaries().values()} == {
        s.id: s.updated_at for s in stored.values()
    }


@pytest.mark.parametrize(
    ("name", "label", "count"),
    [
        ("summaries.jsonl", "JSON Lines", 3),
        ("summaries.csv", "CSV", 2),
        ("feed-rss2.xml", "RSS 2.0", 2),
        ("feed-rdf.xml", "RSS 1.0 (RDF)", 2),
        ("feed-atom.xml", "Atom 1.0", 2),
        ("feed.json", "JSON Feed", 2),
    ],
)
def test_every_example_imports_once(site: Site, name: str, label: str, count: int) -> None:
    result = site.run("summaries", "import", example(name))
    assert result.exit_code == 0, result.output
    assert f"({label}): {count} added, 0 updated, 0 unchanged, 0 skipped." in lines(result)[-1]
    again = site.run("summaries", "import", example(name))
    assert lines(again) == [
        f"Imported {example(name)} ({label}): 0 added, 0 updated, {count} unchanged, 0 skipped."
    ]


def test_an_edited_summary_is_updated_in_place_and_not_sent_again(
    site: Site, db_settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    assert site.run("summaries", "import", example("summaries.json")).exit_code == 0
    add_reader(factory, "reader@example.org", ["bladder-bowel"])
    memory = MemoryTransport()
    run_edition(db_settings, memory, now=NOW, engine=engine)
    assert "A bladder routine that prevents infections" in body(memory.outbox[0][1], "plain")
    before = site.summaries()["A bladder routine that prevents infections"]

    # The site renamed the summary (new slug, same DOI) and re-dated it in its feed.
    doc = json.loads((EXAMPLES / "summaries.json").read_text())
    doc["items"][0].update(
        title="A bladder routine that prevents most infections",
        url="https://example.org/research/bladder-routine-prevents-infections",
        published_at="2026-11-24T09:00:00Z",
    )
    edited = site.folder / "edited.json"
    edited.write_text(json.dumps(doc, indent=2))
    result = site.run("summaries", "import", str(edited))
    assert result.exit_code == 0, result.output
    assert lines(result) == [
        "item 1 (line 3): warning: the source says published 2026-11-24 09:00 UTC, stored as "
        "2026-11-18 09:00 UTC: kept the stored time (readers got it by that date)",
        f"Imported {edited} (JSON): 0 added, 1 updated, 2 unchanged, 0 skipped.",
    ]
    after = site.summaries()["A bladder routine that prevents most infections"]
    assert after.id == before.id
    assert after.url == "https://example.org/research/bladder-routine-prevents-infections"
    assert after.published_at == before.published_at

    next_week = MemoryTransport()
    report = run_edition(db_settings, next_week, now=NOW + 7 * DAY, engine=engine)
    assert report.sent == 0 and next_week.outbox == []


def test_invalid_records_stop_the_whole_import_unless_skipped(site: Site) -> None:
    source = site.folder / "mixed.jsonl"
    source.write_text(
        '{"title": "Good", "url": "https://example.org/good", "published_at": "2026-11-20",'
        ' "categories": ["Pain"]}\n'
        '{"url": "https://example.org/untitled", "categories": ["Pain"]}\n'
        '{"title": "Bad date", "url": "https://example.org/bad", "published_at": "soon",'
        ' "categories": ["Pain"]}\n'
    )
    refused = site.run("summaries", "import", str(source))
    assert refused.exit_code == 1
    assert lines(refused) == [
        "line 2: rejected: missing title",
        "line 3: rejected: unparseable date 'soon' (expected ISO 8601, such as "
        "2026-11-20T09:00:00Z)",
        "Error: 2 records rejected; nothing was imported (fix them, or use --skip-invalid to "
        "import the other 1)",
    ]
    assert site.summaries() == {} and site.categories() == {}

    skipped = site.run("summaries", "import", str(source), "--skip-invalid")
    assert skipped.exit_code == 0, skipped.output
    assert lines(skipped) == [
        "line 2: skipped: missing title",
        "line 3: skipped: unparseable date 'soon' (expected ISO 8601, such as "
        "2026-11-20T09:00:00Z)",
        "New categories: Pain (pain)",
        f"Imported {source} (JSON Lines): 1 added, 0 updated, 0 unchanged, 2 skipped.",
    ]
    assert list(site.summaries()) == ["Good"]


def test_a_dry_run_fails_whenever_the_import_would(site: Site) -> None:
    source = site.folder / "mixed.jsonl"
    source.write_text(
        '{"title": "Good", "url": "https://example.org/good", "published_at": "2026-11-20",'
        ' "categories": ["Pain"]}\n'
        '{"url": "https://example.org/untitled", "categories": ["Pain"]}\n'
    )
    dry = site.run("summaries", "import", str(source), "--dry-run")
    assert dry.exit_code == 1  # so `import --dry-run && import` stops before the import
    assert lines(dry) == [
        "line 2: rejected: missing title",
        "Error: 1 record rejected; nothing was imported (fix it, or use --skip-invalid to "
        "import the other 1)",
    ]
    skipping = site.run("summaries", "import", str(source), "--dry-run", "--skip-invalid")
    assert skipping.exit_code == 0, skipping.output
    assert lines(skipping)[-1] == (
        f"Dry run of {source} (JSON Lines): 1 added, 0 updated, 0 unchanged, 1 skipped; "
        "nothing was written."
    )
    garbage = site.folder / "photo.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    unreadable = site.run("summaries", "import", str(garbage), "--dry-run")
    assert unreadable.exit_code == 1
    assert lines(unreadable) == [
        f"Error: {garbage}: cannot tell the format "
        + (
            "(expected JSON, JSON Lines, CSV with a header row naming a title column, or an "
            "RSS/Atom feed): name it with --format"
        )
    ]
    assert site.summaries() == {} and site.categories() == {}


def test_dry_run_reports_and_writes_nothing(site: Site) -> None:
    result = site.run("summaries", "import", example("summaries.csv"), "--dry-run")
    assert result.exit_code == 0, result.output
    assert lines(result)[-1] == (
        f"Dry run of {example('summaries.csv')} (CSV): 2 added, 0 updated, 0 unchanged, "
        "0 skipped; nothing was written."
    )
    assert site.summaries() == {} and site.categories() == {}


def test_category_map_default_category_and_matching_by_name(site: Site) -> None:
    feed = (
        (EXAMPLES / "feed-rdf.xml")
        .read_text()
        .replace(
            "<dc:subject>Community living</dc:subject>",
            "<dc:subject>Article</dc:subject><dc:subject>COMMUNITY LIVING</dc:subject>",
        )
    )
    extra = site.folder / "journal.xml"
    extra.write_text(feed.replace("Respiratory health", "Editorial"))
    result = site.run(
        "summaries", "import", str(extra), "--category-map", example("category-map.toml")
    )
    assert result.exit_code == 0, result.output
    assert lines(result) == [
        "entry 1 (line 19): skipped: no known category (Editorial; see --category-map, "
        "--default-category)",
        "Categories not in the map or on the site, left out: Article (1)",
        "New categories: Participation (participation), Employment (employment)",
        f"Imported {extra} (RSS 1.0 (RDF)): 1 added, 0 updated, 0 unchanged, 1 skipped.",
    ]
    with_default = site.run(
        "summaries",
        "import",
        example("feed-rdf.xml"),
        "--category-map",
        example("category-map.csv"),
        "--default-category",
        "participation",
    )
    assert lines(with_default)[-1].endswith("1 added, 0 updated, 1 unchanged, 0 skipped.")
    assert site.categories() == {
        "participation": "Participation",
        "employment": "Employment",
        "breathing-and-sleep": "Breathing and sleep",
    }

    # Unmapped labels that the site does not have are left out and counted.
    atom = site.run(
        "summaries",
        "import",
        example("feed-atom.xml"),
        "--category-map",
        example("category-map.csv"),
        "--default-category",
        "General news",
    )
    assert atom.exit_code == 0, atom.output
    assert lines(atom)[-3:] == [
        "Categories not in the map or on the site, left out: Mental health (1), "
        "Neurology (1), Regenerative medicine (1)",
        "New categories: General news (general-news)",
        f"Imported {example('feed-atom.xml')} (Atom 1.0): 2 added, 0 updated, 0 unchanged, "
        "0 skipped.",
    ]


def test_items_without_any_category_need_a_default(site: Site) -> None:
    data = b'[{"title": "Loose", "url": "https://example.org/loose", "published_at": "2026-11-20"}]'
    result = site.run("summaries", "import", "-", stdin=data)
    assert lines(result) == [
        "item 1 (line 1): skipped: no category (give one, or use --default-category)",
        "Imported stdin (JSON): 0 added, 0 updated, 0 unchanged, 1 skipped.",
    ]
    result = site.run("summaries", "import", "-", "--default-category", "News", stdin=data)
    assert lines(result)[-1] == "Imported stdin (JSON): 1 added, 0 updated, 0 unchanged, 0 skipped."
    assert [c.name for c in site.summaries()["Loose"].categories] == ["News"]


def test_malformed_feed_is_refused_or_recovered_with_lenient(site: Site) -> None:
    broken = site.folder / "broken.xml"
    broken.write_text((EXAMPLES / "feed-rss2.xml").read_text().replace("</channel>", "</chanel>"))
    refused = site.run("summaries", "import", str(broken))
    assert refused.exit_code == 1
    assert lines(refused) == [
        f"Error: {broken}: malformed XML at line 28, column 5: mismatched tag; nothing was "
        "imported (--lenient imports the entries that can be recovered)"
    ]
    recovered = site.run("summaries", "import", str(broken), "--lenient")
    assert recovered.exit_code == 0, recovered.output
    assert lines(recovered)[0] == (
        "warning: malformed XML at line 28, column 5: mismatched tag: imported the 2 entries "
        "that could be recovered (--lenient)"
    )
    assert len(site.summaries()) == 2


def test_import_from_a_url_twice_and_a_url_that_fails(site: Site) -> None:
    with serve() as base:
        url = f"{base}/feed.xml"
        first = site.run("summaries", "import", url)
        again = site.run("summaries", "import", url)
        missing = site.run("summaries", "import", f"{base}/gone.xml")
        slow = site.run("summaries", "import", f"{base}/slow", "--timeout", "0.3")
    assert (
        lines(first)[-1] == f"Imported {url} (RSS 2.0): 2 added, 0 updated, 0 unchanged, 0 skipped."
    )
    assert lines(again) == [
        f"Imported {url} (RSS 2.0): 0 added, 0 updated, 2 unchanged, 0 skipped."
    ]
    assert lines(missing) == [f"Error: {base}/gone.xml: the server answered HTTP 404 Not Found"]
    assert slow.exit_code == 1
    assert lines(slow) == [f"Error: {base}/slow: no answer within 0.3 seconds"]


def test_unreadable_sources_are_one_line(site: Site) -> None:
    missing = site.run("summaries", "import", "nowhere.json")
    assert lines(missing) == ["Error: cannot read nowhere.json: No such file or directory"]
    ftp = site.run("summaries", "import", "ftp://example.org/x.json")
    assert lines(ftp) == [
        "Error: ftp://example.org/x.json: only files, - (standard input) and http(s) URLs are read"
    ]
    bad_map = site.folder / "map.toml"
    bad_map.write_text("[categories]\nPain = 3\n")
    result = site.run(
        "summaries", "import", example("summaries.json"), "--category-map", str(bad_map)
    )
    assert lines(result) == [
        f"Error: {bad_map}: 'Pain' must map to a category (text) or a list of categories"
    ]


def test_list_show_and_category_counts(site: Site) -> None:
    assert site.run("summaries", "import", example("summaries.json")).exit_code == 0
    assert site.run("summaries", "import", example("summaries.jsonl")).exit_code == 0
    listed = site.run("summaries", "list", "--category", "neurology", "--limit", "2")
    assert listed.exit_code == 0, listed.output
    rows = lines(listed)
    assert rows[0].split() == ["id", "published", "(Europe/London)", "title", "[categories]"]
    assert rows[1].endswith(
        "2026-11-19 13:30  Riluzole in the first weeks after injury  [Neurology, Pharmacology]"
    )
    assert rows[2].endswith(
        "2026-11-18 08:00  Epidural stimulation and walking  [Neurology, Rehabilitation]"
    )
    assert rows[3] == "... and 1 more (use --limit or --since)."
    since = site.run("summaries", "list", "--since", "2026-11-19T12:00")
    assert [r.split("  ")[-2] for r in lines(since)[1:]] == [
        "Home-based robotic gait training",
        "Riluzole in the first weeks after injury",
    ]
    unknown = site.run("summaries", "list", "--category", "astrology")
    assert lines(unknown) == ["Error: unknown category 'astrology' (see `digest categories list`)"]

    for key in (
        "https://doi.org/10.1038/S41393-026-0101-1",
        "https://example.org/research/bladder-routine?utm_source=x",
        "pmid:41000101",
    ):
        shown = site.run("summaries", "show", key)
        assert shown.exit_code == 0, shown.output
        assert "Title:          A bladder routine that prevents infections" in lines(shown)
        assert "Study type:     Randomised trial" in lines(shown)
        assert "  - Urinary infections fell from 5 to 2 per person-year." in lines(shown)
    gait = site.run(
        "summaries", "show", str(site.summaries()["Home-based robotic gait training"].id)
    )
    assert "Duration:       12 weeks" in lines(gait)
    assert not any(line.startswith(("DOI:", "Sample size:")) for line in lines(gait))
    assert lines(site.run("summaries", "show", "10.9999/none")) == [
        "Error: no summary with id, URL, DOI or PMID '10.9999/none'"
    ]

    counts = site.run("categories", "list")
    neurology = next(row for row in lines(counts) if "neurology" in row)
    assert neurology.split("│")[3].strip() == "3"


def body(message: bytes, kind: str) -> str:
    parsed = email.message_from_bytes(message, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    part = parsed.get_body((kind,))
    assert part is not None
    return " ".join(part.get_content().split())


def test_email_shows_research_facts_present_and_never_markup(
    site: Site, db_settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    hostile = site.folder / "hostile.xml"
    hostile.write_text(
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        "<item><title>&lt;script&gt;alert(1)&lt;/script&gt;IL-6 &amp;lt;5 pg/ml &amp;amp; "
        "&lt;b&gt;sleep&lt;/b&gt;</title><link>https://example.org/research/il6</link>"
        "<pubDate>Thu, 19 Nov 2026 10:00:00 GMT</pubDate><category>Rehabilitation</category>"
        "<description><![CDATA[<p>Better <img src=x onerror=alert(2)>sleep.</p>"
        "<script>steal()</script>]]></description></item></channel></rss>"
    )
    for source in (example("summaries.json"), example("summaries.jsonl"), str(hostile)):
        result = site.run("summaries", "import", source)
        assert result.exit_code == 0, result.output
    add_reader(factory, "reader@example.org", ["rehabilitation", "neurology"])
    memory = MemoryTransport()
    run_edition(db_settings, memory, now=NOW, engine=engine)
    [(_, message)] = memory.outbox
    text_part, html_part = body(message, "plain"), body(message, "html")

    for facts in (
        "Randomised trial · 48 people",  # bladder routine: type and what was counted
        "Cohort study · Adults with incomplete injury who could stand with support · 12 weeks",
        "Case series · 36 people",
        "Pilot study · 9 people",
    ):
        assert facts in text_part and facts in html_part
    # The summary with no research facts gets no facts line at all (no stray separators).
    il6 = text_part.split("IL-6 <5 pg/ml & sleep", 1)[1].split("Read the summary", 1)[0]
    assert "·" not in il6 and "Better sleep." in il6
    assert "IL-6 &lt;5 pg/ml &amp; sleep" in html_part
    for markup in ("<script", "alert(", "steal(", "onerror", "<b>sleep"):
        assert markup not in html_part and markup not in text_part
