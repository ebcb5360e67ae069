"""Property: whatever bytes an admin hands an importer (a subscribers CSV; summaries as
JSON, JSON Lines, CSV or a feed), the import ends cleanly or with one :class:`DigestError`
saying what is wrong; nothing else escapes. Real imports into SQLite and PostgreSQL."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from digest.errors import DigestError
from digest.sources import FORMATS
from digest.sources.load import ImportOptions, import_summaries
from digest.store import schema
from digest.store.db import make_engine, session_factory
from subscribers.importing import ImportResult, import_csv
from tests.conftest import NOW, add_categories, pg_schema
from tests.test_sources_formats import LONDON
from tests.test_sources_property import INTERESTING_TEXT, JSON_VALUES, RECORDS

BOUNDED = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252", "latin-1"])
CELLS = (
    st.text(max_size=30)
    | INTERESTING_TEXT
    | st.sampled_from(
        [
            "ada@example.org",
            "ADA@EXAMPLE.ORG",
            "zoë@example.org",
            "pharmacology",
            "Neurology;pharmacology",
            "active",
            "complained",
            "unsubscribed",
            "Europe/Paris",
            "monthly",
            "0001-01-01T00:00:00+05:00",
            "9999-12-31T23:59:59-12:00",
            "'=SUM(A1)",
            '"',
        ]
    )
)
COLUMNS = st.lists(
    st.sampled_from(
        [
            *("email", "name", "categories", "status", "created_at", "confirmed_at"),
            *("timezone", "frequency", "consent_source", "consent_version", "other"),
        ]
    ),
    min_size=1,
    max_size=6,
)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def factory(request: pytest.FixtureRequest) -> Iterator[sessionmaker[Session]]:
    """One migrated database for all the examples of this module (the conftest's is made
    afresh for each test, which hypothesis would share between examples anyway)."""
    if request.param == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            engine = make_engine(f"sqlite:///{Path(folder) / 'property.sqlite3'}")
            schema.upgrade(engine)
            made = session_factory(engine)
            add_categories(made, "Pharmacology", "Neurology")
            yield made
            engine.dispose()
        return
    with pg_schema("p") as engine:
        made = session_factory(engine)
        add_categories(made, "Pharmacology", "Neurology")
        yield made


def import_subscribers(factory: sessionmaker[Session], data: bytes, flags: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "people.csv"
        path.write_bytes(data)
        try:
            result = import_csv(
                factory,
                path,
                now=NOW,
                confirmed=bool(flags & 1),
                skip_invalid=bool(flags & 2),
                dry_run=bool(flags & 4),
            )
        except DigestError as exc:
            assert_readable(exc)
            return
    assert isinstance(result, ImportResult)
    assert result.written == (not flags & 4 and (not result.invalid or bool(flags & 2)))
    assert len(result.problems) == min(result.invalid, 1000)


def import_summary_bytes(factory: sessionmaker[Session], data: bytes, fmt: str, flags: int) -> None:
    options = ImportOptions(
        default_category="Pharmacology" if flags & 8 else None,
        skip_invalid=bool(flags & 2),
        dry_run=bool(flags & 4),
        lenient=bool(flags & 1),
    )
    try:
        import_summaries(factory, data, fmt=fmt, zone=LONDON, now=NOW, options=options)
    except DigestError as exc:
        assert_readable(exc)


def assert_readable(exc: DigestError) -> None:
    message = str(exc)
    assert message.strip() and "Traceback" not in message, repr(exc)


@BOUNDED
@given(data=st.binary(max_size=400), flags=st.integers(0, 7))
def test_any_bytes_as_a_subscribers_csv(factory: sessionmaker[Session], data: bytes, flags: int):
    import_subscribers(factory, data, flags)


@st.composite
def csv_text(draw: st.DrawFn) -> str:
    """A header naming known columns (mostly with email), then rows mostly that wide."""
    columns = draw(COLUMNS | COLUMNS.map(lambda names: ["email", *names]))
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    width = len(columns)
    row = st.lists(CELLS, min_size=width, max_size=width) | st.lists(CELLS, max_size=7)
    rows = draw(st.lists(row, max_size=5))
    return "\n".join(delimiter.join(cells) for cells in [columns, *rows])


@BOUNDED
@given(text=csv_text(), encoding=ENCODINGS, tail=st.binary(max_size=40), flags=st.integers(0, 7))
def test_any_rows_in_any_encoding_as_a_subscribers_csv(
    factory: sessionmaker[Session], text: str, encoding: str, tail: bytes, flags: int
) -> None:
    import_subscribers(factory, text.encode(encoding, "replace") + tail, flags)


@BOUNDED
@given(data=st.binary(max_size=400), fmt=st.sampled_from(FORMATS), flags=st.integers(0, 15))
def test_any_bytes_as_summaries(
    factory: sessionmaker[Session], data: bytes, fmt: str, flags: int
) -> None:
    import_summary_bytes(factory, data, fmt, flags)


@BOUNDED
@given(
    records=st.lists(RECORDS | JSON_VALUES, max_size=4),
    shape=st.sampled_from(["json", "jsonl", "csv", "feed"]),
    encoding=ENCODINGS,
    flags=st.integers(0, 15),
)
def test_any_records_in_any_format_and_encoding_as_summaries(
    factory: sessionmaker[Session], records: list[object], shape: str, encoding: str, flags: int
) -> None:
    def cell(value: object) -> str:
        return value if isinstance(value, str) else json.dumps(value)

    if shape == "json":
        doc = json.dumps(records)
    elif shape == "jsonl":
        doc = "\n".join(json.dumps(record) for record in records)
    else:
        dicts = [r for r in records if isinstance(r, dict)]
        keys = sorted({key for record in dicts for key in record})[:8] or ["title", "url"]
        if shape == "csv":
            doc = "\n".join(
                [",".join(keys)]
                + [",".join(cell(r.get(k, "")).replace(",", ";") for k in keys) for r in dicts]
            )
        else:
            items = "".join(
                "<item>"
                + "".join(
                    f"<{k}>{escape(cell(r[k]))}</{k}>" for k in keys if k.isalnum() and k in r
                )
                + "</item>"
                for r in dicts
            )
            doc = f'<rss version="2.0"><channel><title>t</title>{items}</channel></rss>'
    data = doc.encode(encoding, "replace")  # utf-8-sig and utf-16 write a byte-order mark
    import_summary_bytes(factory, data, "auto" if flags & 1 else shape, flags)
