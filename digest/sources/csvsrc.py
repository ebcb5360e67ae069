"""CSV with a header row naming the columns (the JSON keys); lists are separated by ``;``.

The file may be UTF-8 (with or without the BOM spreadsheets write), UTF-16 with a BOM, or
Windows-1252/Latin-1 (read with a warning). The delimiter is a comma, or the semicolon or tab
of the header row when it uses those instead.
"""

from __future__ import annotations

import csv
import io
import sys

from digest.errors import DataError
from digest.sources import Parsed, Problem, SourceItem, decode_text
from digest.sources.jsonsrc import KEYS, normalise_key

#: Columns holding lists, written as ``a; b; c`` in one cell.
LIST_COLUMNS = frozenset({"categories", "key_findings", "limitations"})
#: Larger cells than the csv module's default (128 KiB) are read, then cut by validation.
_FIELD_LIMIT = 64 * 1024 * 1024


def split_list(cell: str) -> list[str]:
    return [part.strip() for part in cell.split(";") if part.strip()]


def parse_csv(data: bytes) -> Parsed:
    text, encoding = decode_text(data)
    warnings = [encoding] if encoding else []
    header_line = text.lstrip("\r\n").partition("\n")[0]
    delimiter = max(",;\t", key=header_line.count)
    if csv.field_size_limit() < _FIELD_LIMIT:
        csv.field_size_limit(min(_FIELD_LIMIT, sys.maxsize))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next((row for row in reader if any(cell.strip() for cell in row)), None)
    except csv.Error as exc:
        raise DataError(f"CSV header at line {reader.line_num}: {exc}") from None
    if header is None:
        raise DataError("the CSV file has no header row")
    columns = [normalise_key(name) for name in header]
    if "title" not in columns or "url" not in columns:
        found = ", ".join(name.strip() for name in header[:8] if name.strip())
        raise DataError(
            "the CSV header row must name at least the title and url columns "
            f"(found: {found[:200] or 'nothing'})"
        )
    ignored = sorted({name for name in columns if name not in KEYS})
    if ignored:
        shown = ", ".join(name[:40] for name in ignored[:10])
        warnings.append(Problem("", f"ignored unknown columns: {shown}"))
    items: list[SourceItem] = []
    rejects: list[Problem] = []
    line = reader.line_num
    while True:
        start = line + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            rejects.append(Problem(f"line {start}", f"unreadable CSV: {exc}"))
            break
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        where = f"line {start}"
        if len(row) > len(columns):
            rejects.append(
                Problem(where, f"{len(row)} cells but the header names {len(columns)} columns")
            )
            continue
        values: dict[str, object] = {}
        for name, cell in zip(columns, row, strict=False):
            if name in KEYS and name not in values:
                values[name] = split_list(cell) if name in LIST_COLUMNS else cell.strip() or None
        items.append(SourceItem(where, values))
    return Parsed("CSV", tuple(items), tuple(rejects), tuple(warnings))
