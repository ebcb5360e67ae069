"""Subscriber CSV: hostile files parsed row by row, imports all or nothing, exports that
read back, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from digest.errors import DataError
from subscribers import service, suppression
from subscribers.csvio import ImportRow, RowProblem, neutralise, read_rows, write_csv, write_json
from subscribers.importing import category_index, import_csv
from subscribers.models import Consent, Subscriber, Subscription
from subscribers.queries import iter_export
from tests.conftest import NOW, add_categories, add_reader

INDEX = {
    "pharmacology": (1, "pharmacology"),
    "neurology": (2, "neurology"),
    "regenerative medicine": (3, "regenerative-medicine"),
    "regenerative-medicine": (3, "regenerative-medicine"),
}


def parse(text: str) -> list[ImportRow | RowProblem]:
    return list(read_rows(io.StringIO(text, newline=""), INDEX)[1])


def write(tmp_path: Path, text: str, name: str = "people.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


# ------------------------------------------------------------------ parsing (no database)


def test_quotes_embedded_newlines_and_empty_lines_keep_true_line_numbers() -> None:
    rows = parse(
        "email,name,categories\r\n"
        "\r\n"
        '"ada@example.org","Lovelace, ""Ada""\nCountess",Pharmacology\r\n'
        "\r\n"
        ",,\r\n"
        "not-an-address,Bob,neurology\r\n"
        'zoe@example.org,Zoë Müller,"Neurology; Regenerative Medicine ;"\r\n'
    )
    assert [type(r).__name__ for r in rows] == ["ImportRow", "RowProblem", "ImportRow"]
    ada, bad, zoe = rows
    assert isinstance(ada, ImportRow) and ada.line == 3
    assert ada.name == 'Lovelace, "Ada" Countess'  # one line: no CR/LF can reach a header
    assert isinstance(bad, RowProblem) and bad.line == 7
    assert "is not a valid email address" in bad.reason
    assert isinstance(zoe, ImportRow) and zoe.line == 8
    assert zoe.category_slugs == ("neurology", "regenerative-medicine")
    assert zoe.name == "Zoë Müller"


def test_semicolon_delimiter_and_byte_order_mark(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "\ufeffEMAIL;Name;Categories\n"
        'ADA@Example.ORG;Ada;"pharmacology;neurology"\n'
        "bob@example.org;Bob;pharmacology;neurology\n",
    )
    with path.open(encoding="utf-8-sig", newline="") as stream:
        _, rows = read_rows(stream, INDEX)
        ada, bob = list(rows)
    assert (
        isinstance(ada, ImportRow)
        and ada.email == "ADA@example.org"
        and ada.key == "ada@example.org"
    )
    assert ada.category_ids == (1, 2)
    assert isinstance(bob, RowProblem) and bob.line == 3
    assert bob.reason.startswith("4 fields but the header has 3")


def test_a_ten_megabyte_field_is_one_bad_row_not_a_crash() -> None:
    huge = "x" * (10 * 1024 * 1024)
    rows = parse(
        "email,name,categories\n"
        f'ada@example.org,"{huge}",pharmacology\n'
        f"{huge}@example.org,Bob,pharmacology\n"
        "zoe@example.org,Zoë,neurology\n"
    )
    assert [(r.line, r.reason) for r in rows if isinstance(r, RowProblem)] == [
        (2, "name is longer than 200 characters"),
        (3, "email is longer than 320 characters"),
    ]
    assert isinstance(rows[2], ImportRow) and rows[2].email == "zoe@example.org"


def test_unknown_and_missing_categories_are_reported_with_their_names() -> None:
    rows = parse(
        "email,categories\n"
        "ada@example.org,Pharmacology;Cardiology;=SUM(A1)\n"
        "bob@example.org,\n"
        "cid@example.org,\n"
    )
    assert isinstance(rows[0], RowProblem)
    assert rows[0].reason == "unknown categories 'Cardiology', '=SUM(A1)'"
    assert rows[0].unknown_categories == ("Cardiology", "=SUM(A1)")
    assert isinstance(rows[1], RowProblem) and "no categories" in rows[1].reason


def test_header_without_email_column_or_empty_file_stops_with_one_error() -> None:
    with pytest.raises(DataError, match="header has no 'email' column"):
        parse("mail,name\nada@example.org,Ada\n")
    with pytest.raises(DataError, match="the file is empty"):
        parse("\n\n")


def test_bad_dates_statuses_time_zones_and_frequencies_are_row_problems() -> None:
    rows = parse(
        "email,categories,created_at,status,timezone,frequency\n"
        "a@example.org,pharmacology,yesterday,,,\n"
        "b@example.org,pharmacology,,maybe,,\n"
        "c@example.org,pharmacology,,,Mars/Olympus,\n"
        "d@example.org,pharmacology,,,,daily\n"
        "f@example.org,pharmacology,0001-01-01T00:00:00+05:00,,,\n"  # before year 1 in UTC
        "e@example.org,pharmacology,2026-11-20,UNSUBSCRIBED,Europe/Paris,Monthly\n"
    )
    reasons = [r.reason for r in rows if isinstance(r, RowProblem)]
    assert reasons == [
        "created_at 'yesterday' is not a date such as 2026-11-20 or 2026-11-20T09:30:00Z",
        "status 'maybe' is not one of pending, active, unsubscribed, bounced, complained",
        "'Mars/Olympus' is not an IANA time zone such as Europe/Paris",
        "frequency must be weekly or monthly, not 'daily'",
        "created_at '0001-01-01T00:00:00+05:00' is not a date such as 2026-11-20 or "
        "2026-11-20T09:30:00Z",
    ]
    last = rows[-1]
    assert isinstance(last, ImportRow)
    assert last.created_at == dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    assert (last.status, last.timezone, last.frequency) == (
        "unsubscribed",
        "Europe/Paris",
        "monthly",
    )


def test_values_that_look_like_formulas_are_neutralised_and_read_back() -> None:
    for value in ("=HYPERLINK(1)", "+1", "-2", "@SUM(A1)", "\tx", "plain", "'quoted"):
        out = neutralise(value)
        assert not out.startswith(("=", "+", "-", "@", "\t"))
        row = parse(f"email,name,categories\nada@example.org,{out!s},pharmacology\n")[0]
        assert isinstance(row, ImportRow)
        assert row.name == " ".join(value.split()), value


# ------------------------------------------------------------------ importing (database)


@pytest.fixture
def topics(factory: sessionmaker[Session]) -> None:
    add_categories(factory, "Pharmacology", "Neurology", "Regenerative Medicine")


def subscribers_by_key(factory: sessionmaker[Session]) -> dict[str, Subscriber]:
    with factory() as session:
        return {s.email_key: s for s in session.scalars(select(Subscriber))}


@pytest.mark.usefixtures("topics")
def test_bad_rows_are_listed_and_nothing_is_written(factory, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "email,name,categories\nada@example.org,Ada,pharmacology\nbob@,Bob,neurology\n"
        "cid@example.org,Cid,cardiology\n",
    )
    result = import_csv(factory, path, now=NOW)
    assert not result.written and result.invalid == 2
    assert [(p.line, p.reason.split(":")[0]) for p in result.problems] == [
        (3, "'bob@' is not a valid email address"),
        (4, "unknown categories 'cardiology'"),
    ]
    assert result.unknown_categories == {"cardiology": 1}
    assert subscribers_by_key(factory) == {}

    skipped = import_csv(factory, path, now=NOW, skip_invalid=True)
    assert skipped.written and sum(skipped.created.values()) == 1
    assert list(subscribers_by_key(factory)) == ["ada@example.org"]


@pytest.mark.usefixtures("topics")
def test_duplicates_in_any_letter_case_are_merged_never_duplicated(factory, tmp_path: Path) -> None:
    add_reader(factory, "Known@Example.org", ["neurology"], name=None)
    path = write(
        tmp_path,
        "email,name,categories\n"
        "ada@example.org,,pharmacology\n"
        "ADA@EXAMPLE.ORG,Ada Lovelace,neurology\n"
        "known@example.ORG,Kim,pharmacology\n",
    )
    result = import_csv(factory, path, now=NOW, batch=2)  # the duplicate lands in another batch
    assert (sum(result.created.values()), result.duplicates, result.merged) == (1, 1, 1)
    people = subscribers_by_key(factory)
    assert sorted(people) == ["ada@example.org", "known@example.org"]
    assert people["ada@example.org"].name == "Ada Lovelace"
    assert [c.slug for c in people["ada@example.org"].categories] == ["neurology", "pharmacology"]
    assert people["known@example.org"].status == "active"
    assert [c.slug for c in people["known@example.org"].categories] == ["neurology", "pharmacology"]


@pytest.mark.usefixtures("topics")
def test_unsubscribed_suppressed_or_erased_addresses_are_not_re_added(
    factory, tmp_path: Path
) -> None:
    add_reader(factory, "left@example.org", ["neurology"])
    add_reader(factory, "gone@example.org", ["neurology"])
    with factory.begin() as session:
        left = service.find_by_email(session, "left@example.org")
        gone = service.find_by_email(session, "gone@example.org")
        assert left is not None and gone is not None
        service.unsubscribe(session, left, now=NOW)
        service.erase(session, gone, now=NOW)
        salt = suppression.email_salt(session)
        suppression.suppress(
            session, suppression.email_hash(salt, "bounce@example.org"), "bounced", now=NOW
        )
    path = write(
        tmp_path,
        "email,categories\nLEFT@example.org,pharmacology\ngone@example.org,neurology\n"
        "bounce@example.org,neurology\nnew@example.org,neurology\n",
    )
    result = import_csv(factory, path, now=NOW, confirmed=True)
    assert result.kept_out == 3 and dict(result.created) == {"active": 1}
    assert [(n.line, n.reason.split(":")[0]) for n in result.notices] == [
        (2, f"left@example.org is unsubscribed since {NOW:%Y-%m-%d}"),
        (3, "gone@example.org is on the suppression list (erased)"),
        (4, "bounce@example.org is on the suppression list (bounced)"),
    ]
    people = subscribers_by_key(factory)
    assert people["left@example.org"].status == "unsubscribed"
    assert [c.slug for c in people["left@example.org"].categories] == ["neurology"]
    assert sorted(people) == ["left@example.org", "new@example.org"]


@pytest.mark.usefixtures("topics")
def test_a_row_with_a_hundred_categories(factory, tmp_path: Path) -> None:
    add_categories(factory, *(f"Topic {n:03d}" for n in range(100)))
    labels = ";".join(f"topic-{n:03d}" if n % 2 else f"TOPIC {n:03d}" for n in range(100))
    path = write(tmp_path, f'email,categories\nada@example.org,"{labels}"\n')
    result = import_csv(factory, path, now=NOW, confirmed=True)
    assert result.written and result.invalid == 0
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Subscription)) == 100


@pytest.mark.usefixtures("topics")
def test_dry_run_reports_but_writes_nothing(factory, tmp_path: Path) -> None:
    path = write(tmp_path, "email,categories\nada@example.org,pharmacology\n")
    result = import_csv(factory, path, now=NOW, dry_run=True)
    assert dict(result.created) == {"pending": 1} and not result.written
    assert subscribers_by_key(factory) == {}


@pytest.mark.usefixtures("topics")
def test_export_reads_back_as_it_was(factory, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "email,name,categories,status,created_at,confirmed_at,timezone,frequency\n"
        "=cmd@example.org,Zoë Müller,neurology;pharmacology,,2026-01-02T03:04:05Z,"
        "2026-01-03T00:00:00Z,Europe/Paris,monthly\n"
        "bob@example.org,-Bob,Regenerative Medicine,pending,,,,\n"
        "left@example.org,@Left,neurology,unsubscribed,2025-05-05,,,\n"
        "spam@example.org,+Spam,neurology,complained,,,,\n",
    )
    assert import_csv(factory, path, now=NOW, confirmed=True).written
    with factory() as session:
        first = io.StringIO(newline="")
        assert write_csv(iter_export(session, batch=2), first) == 4
    text = first.getvalue()
    assert "'=cmd@example.org,Zoë Müller" in text and ",'-Bob," in text and ",'@Left," in text
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["categories"] == "neurology;pharmacology"
    assert row["created_at"] == "2026-01-02T03:04:05+00:00"
    assert row["consent_source"] == "import" and row["consent_version"] == "2026-11"

    with factory.begin() as session:  # start again from an empty list
        for subscriber in session.scalars(select(Subscriber)):
            session.delete(subscriber)
        session.execute(Consent.__table__.delete())
    (tmp_path / "export.csv").write_text(text, encoding="utf-8", newline="")
    again = import_csv(factory, tmp_path / "export.csv", now=NOW + dt.timedelta(days=1))
    assert again.written and again.kept_out == 1  # the complaint stays on the list
    assert dict(again.created) == {"pending": 2, "unsubscribed": 1}


@pytest.mark.usefixtures("topics")
def test_round_trip_into_a_fresh_list_is_exact(factory, tmp_path: Path, engine) -> None:
    add_reader(factory, "ada@example.org", ["pharmacology", "neurology"], name='Ada, "the" first')
    add_reader(factory, "zoe@example.org", ["neurology"], name="Zoë Müller", confirmed=False)
    with factory() as session:
        before = io.StringIO(newline="")
        write_csv(iter_export(session), before)
        listed = io.StringIO()
        write_json(iter_export(session), listed)
    people = json.loads(listed.getvalue())
    assert [p["email"] for p in people] == ["ada@example.org", "zoe@example.org"]
    assert people[0]["consents"][0]["source"] == "admin"
    assert "token" not in listed.getvalue()

    with factory.begin() as session:
        for subscriber in session.scalars(select(Subscriber)):
            service.erase(session, subscriber, now=NOW)
        session.execute(suppression.Suppression.__table__.delete())
    (tmp_path / "export.csv").write_text(before.getvalue(), encoding="utf-8", newline="")
    assert import_csv(factory, tmp_path / "export.csv", now=NOW, confirmed=True).written
    with factory() as session:
        after = io.StringIO(newline="")
        write_csv(iter_export(session), after)
        assert category_index(session)["pharmacology"][1] == "pharmacology"
    assert after.getvalue() == before.getvalue()
