"""Subscriber CSV and JSON, without a database: parse import rows, write export records.

Import files have a header row; the delimiter is ``,``, ``;`` or a tab, whichever the
header uses. They are text here: :func:`digest.textio.open_text` opens a file in the
encoding a spreadsheet saved it in (UTF-8, UTF-16 or Windows-1252). Columns (any order,
any letter case): ``email`` (required), ``name``, ``categories`` (``;``-separated slugs
or names), ``status``, ``created_at``, ``confirmed_at``, ``unsubscribed_at``, ``timezone``,
``frequency``, ``consent_at``, ``consent_source``, ``consent_version`` (exactly what an
export writes, so an export reads back as it was). Rows are streamed: memory does not grow
with the file.

Exported values that a spreadsheet would run as a formula (starting with ``=``, ``+``,
``-``, ``@``, tab or CR) get a leading ``'``; the importer removes it again.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol, TextIO

from digest.errors import DataError, SubscriberError
from subscribers.consent import ConsentView, check_source, check_version
from subscribers.lookup import (
    NAME_MAX,
    clean_name,
    normalize_email,
    validate_frequency,
    validate_timezone,
)
from subscribers.models import Status

IMPORT_COLUMNS = (
    "email",
    "name",
    "categories",
    "status",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
    "timezone",
    "frequency",
    "consent_at",
    "consent_source",
    "consent_version",
)
EXPORT_COLUMNS = (
    "email",
    "name",
    "status",
    "categories",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
    "timezone",
    "frequency",
    "consent_at",
    "consent_source",
    "consent_version",
)
#: csv's default limit is 128 KiB; a longer field is read (then refused by the row checks)
#: up to this size, beyond which the file is refused.
FIELD_LIMIT = 32 * 1024 * 1024
_MAX_LENGTH = {"email": 320, "name": NAME_MAX, "categories": 20_000}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: (category id, slug) by lower-case slug and by lower-case name.
CategoryIndex = Mapping[str, tuple[int, str]]


@dataclass(frozen=True, slots=True)
class ImportRow:
    """A valid row: address normalised, categories resolved."""

    line: int
    email: str
    name: str | None
    category_ids: tuple[int, ...]
    category_slugs: tuple[str, ...]
    status: str | None = None
    created_at: dt.datetime | None = None
    confirmed_at: dt.datetime | None = None
    unsubscribed_at: dt.datetime | None = None
    timezone: str | None = None
    frequency: str | None = None
    consent_at: dt.datetime | None = None
    consent_source: str | None = None
    consent_version: str | None = None

    @property
    def key(self) -> str:
        return self.email.lower()


@dataclass(frozen=True, slots=True)
class RowProblem:
    """Why the row starting at ``line`` was refused (or, for notices, left alone)."""

    line: int
    reason: str
    unknown_categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExportRecord:
    email: str
    name: str | None
    status: str
    categories: tuple[str, ...]
    created_at: dt.datetime
    confirmed_at: dt.datetime | None
    unsubscribed_at: dt.datetime | None
    timezone: str | None
    frequency: str
    consents: tuple[ConsentView, ...]


# ------------------------------------------------------------------------- reading


def read_rows(
    stream: TextIO, categories: CategoryIndex
) -> tuple[list[str], Iterator[ImportRow | RowProblem]]:
    """The ignored column names and the file's rows, valid or not, in order.

    Raises :class:`DataError` when the header is missing or has no ``email`` column.
    """
    skipped = 0
    first = stream.readline()
    while first and not first.strip():
        skipped += 1
        first = stream.readline()
    if not first:
        raise DataError("the file is empty: expected a header row such as email,name,categories")
    delimiter = max((",", ";", "\t"), key=first.count) if any(d in first for d in ",;\t") else ","
    reader = csv.reader(itertools.chain([first], stream), delimiter=delimiter, strict=False)
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_LIMIT))
    header = [name.strip().lstrip("\ufeff").strip().lower() for name in next(reader)]
    if "email" not in header:
        raise DataError(f"line {skipped + 1}: the header has no 'email' column: {header[:10]}")
    ignored = [n for n in header if n not in IMPORT_COLUMNS and n not in EXPORT_COLUMNS]
    return ignored, _rows(reader, header, skipped, categories)


class _Reader(Protocol):
    line_num: int

    def __next__(self) -> list[str]: ...


def _rows(
    reader: _Reader, header: list[str], offset: int, categories: CategoryIndex
) -> Iterator[ImportRow | RowProblem]:
    def line_num() -> int:
        return offset + reader.line_num

    start = line_num() + 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(f"line {start}: {exc}; nothing after it was read") from None
        except UnicodeDecodeError:
            raise DataError(
                f"near line {start}: the file is not UTF-8 text (save it as CSV UTF-8)"
            ) from None
        line, start = start, line_num() + 1
        if not any(field.strip() for field in fields):
            continue
        if len(fields) > len(header):
            yield RowProblem(
                line,
                f"{len(fields)} fields but the header has {len(header)} "
                "(quote values that contain the delimiter)",
            )
            continue
        values = {
            name: unneutralise(value.strip()) for name, value in zip(header, fields, strict=False)
        }
        yield parse_row(line, values, categories)


def parse_row(
    line: int, values: Mapping[str, str], categories: CategoryIndex
) -> ImportRow | RowProblem:
    """Check one row's values (already stripped)."""
    for column, most in _MAX_LENGTH.items():
        if len(values.get(column, "")) > most:
            return RowProblem(line, f"{column} is longer than {most} characters")
    try:
        email = normalize_email(values.get("email", ""))
        name = clean_name(values.get("name") or None)
        status = _status(values.get("status", ""))
        labels = [p.strip() for p in values.get("categories", "").split(";") if p.strip()]
        found = {categories[label.lower()] for label in labels if label.lower() in categories}
        unknown = tuple(dict.fromkeys(label for label in labels if label.lower() not in categories))
        row = ImportRow(
            line=line,
            email=email,
            name=name,
            category_ids=tuple(sorted(cid for cid, _ in found)),
            category_slugs=tuple(sorted(slug for _, slug in found)),
            status=status,
            created_at=_when(values, "created_at"),
            confirmed_at=_when(values, "confirmed_at"),
            unsubscribed_at=_when(values, "unsubscribed_at"),
            timezone=validate_timezone(values.get("timezone")),
            frequency=validate_frequency(values["frequency"]) if values.get("frequency") else None,
            consent_at=_when(values, "consent_at"),
            consent_source=check_source(values["consent_source"].lower())
            if values.get("consent_source")
            else None,
            consent_version=check_version(values["consent_version"])
            if values.get("consent_version")
            else None,
        )
    except SubscriberError as exc:
        return RowProblem(line, str(exc))
    if unknown:
        shown = ", ".join(repr(label[:60]) for label in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        return RowProblem(line, f"unknown categories {shown}{more}", unknown)
    mailable = status in (None, Status.ACTIVE, Status.PENDING)
    if not row.category_ids and mailable:
        return RowProblem(line, "no categories (the categories column is empty)")
    return row


def _status(value: str) -> str | None:
    text = value.strip().lower()
    if not text:
        return None
    if text not in tuple(Status):
        raise SubscriberError(f"status {text[:30]!r} is not one of {', '.join(Status)}")
    return text


def _when(values: Mapping[str, str], column: str) -> dt.datetime | None:
    text = values.get(column, "")
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text[:40])
        return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
    except (ValueError, OverflowError):  # OverflowError: out of range once in UTC
        raise SubscriberError(
            f"{column} {text[:40]!r} is not a date such as 2026-11-20 or 2026-11-20T09:30:00Z"
        ) from None


def unneutralise(value: str) -> str:
    """Undo :func:`neutralise`."""
    if len(value) > 1 and value[0] == "'" and value[1] in "=+-@\t\r":
        return value[1:]
    return value


# ------------------------------------------------------------------------- writing


def neutralise(value: str) -> str:
    """A value a spreadsheet shows as text, never runs as a formula."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _iso(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds") if value else ""


def csv_fields(record: ExportRecord) -> list[str]:
    latest = record.consents[-1] if record.consents else None
    fields = [
        record.email,
        record.name or "",
        record.status,
        ";".join(record.categories),
        _iso(record.created_at),
        _iso(record.confirmed_at),
        _iso(record.unsubscribed_at),
        record.timezone or "",
        record.frequency,
        _iso(latest.created_at) if latest else "",
        latest.source if latest else "",
        latest.text_version if latest else "",
    ]
    return [neutralise(field) for field in fields]


def write_csv(records: Iterable[ExportRecord], out: TextIO) -> int:
    """Write ``records`` as CSV (header first); returns how many."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for record in records:
        writer.writerow(csv_fields(record))
        count += 1
    return count


def json_record(record: ExportRecord) -> dict[str, object]:
    return {
        "email": record.email,
        "name": record.name,
        "status": record.status,
        "categories": list(record.categories),
        "created_at": _iso(record.created_at),
        "confirmed_at": _iso(record.confirmed_at) or None,
        "unsubscribed_at": _iso(record.unsubscribed_at) or None,
        "timezone": record.timezone,
        "frequency": record.frequency,
        "consents": [
            {
                "at": _iso(c.created_at),
                "source": c.source,
                "categories": list(c.categories),
                "text_version": c.text_version,
                "confirmed_at": _iso(c.confirmed_at) or None,
                "confirmed_by": c.confirmed_by,
            }
            for c in record.consents
        ],
    }


def write_json(records: Iterable[ExportRecord], out: TextIO) -> int:
    """Write ``records`` as one JSON array, streamed (one object per line); returns how many."""
    count = 0
    out.write("[")
    for record in records:
        out.write(",\n" if count else "\n")
        out.write(json.dumps(json_record(record), ensure_ascii=False))
        count += 1
    out.write("\n]\n")
    return count
