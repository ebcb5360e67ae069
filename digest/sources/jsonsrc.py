"""JSON (an array of records, or an object with an ``items`` array), JSON Lines, JSON Feed."""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from digest.errors import DataError
from digest.sources import Parsed, Problem, SourceItem, decode_text

#: The keys a record may have (see "Importing summaries" in the README).
KEYS = frozenset(
    {
        "id", "title", "url", "published_at", "categories", "journal", "year", "doi", "pmid",
        "simple_explanation", "key_findings", "study_type", "population", "sample_size",
        "participants", "study_duration", "evidence_level", "open_access",
        "practical_implications", "limitations", "status", "correction_note",
    }
)  # fmt: skip
ALIASES = {"study_design": "study_type"}
_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def normalise_key(key: str) -> str:
    name = re.sub(r"[\s-]+", "_", key.strip().lower())
    return ALIASES.get(name, name)


def record_values(obj: Mapping[str, Any], unknown: set[str]) -> dict[str, object]:
    """The known keys of a JSON record (aliases resolved); the others are added to ``unknown``."""
    values: dict[str, object] = {}
    for key, value in obj.items():
        name = normalise_key(str(key))
        if name in KEYS:
            values[name] = value
        else:
            unknown.add(str(key)[:40])
    return values


def _load(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise DataError(f"not valid JSON: {str(exc)[:200] or 'nested too deeply'}") from None


def parse_json(data: bytes) -> Parsed:
    text, encoding = decode_text(data)
    doc = _load(text)
    warnings = [encoding] if encoding else []
    if isinstance(doc, dict) and str(doc.get("version", "")).startswith("https://jsonfeed.org/"):
        return _json_feed(doc, text, warnings)
    if isinstance(doc, list):
        records: Sequence[Any] = doc
    elif isinstance(doc, dict) and isinstance(doc.get("items"), list):
        records = doc["items"]
    elif isinstance(doc, dict) and ("title" in doc or "url" in doc):
        records = [doc]
    else:
        raise DataError('expected a JSON array of summaries, or an object with an "items" array')
    lines = _item_lines(text, len(records))
    unknown: set[str] = set()
    items: list[SourceItem] = []
    rejects: list[Problem] = []
    for index, obj in enumerate(records):
        where = f"item {index + 1}" + (f" (line {lines[index]})" if lines else "")
        if isinstance(obj, dict):
            items.append(SourceItem(where, record_values(obj, unknown)))
        else:
            rejects.append(Problem(where, f"expected a JSON object, got {_kind(obj)}"))
    if unknown:
        warnings.append(Problem("", f"ignored unknown keys: {', '.join(sorted(unknown)[:10])}"))
    return Parsed("JSON", tuple(items), tuple(rejects), tuple(warnings))


def parse_json_lines(data: bytes) -> Parsed:
    text, encoding = decode_text(data)
    warnings = [encoding] if encoding else []
    unknown: set[str] = set()
    items: list[SourceItem] = []
    rejects: list[Problem] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            rejects.append(Problem(where, f"not valid JSON at column {exc.colno}: {exc.msg}"))
            continue
        except (ValueError, RecursionError):
            rejects.append(Problem(where, "not valid JSON"))
            continue
        if isinstance(obj, dict):
            items.append(SourceItem(where, record_values(obj, unknown)))
        else:
            rejects.append(Problem(where, f"expected a JSON object, got {_kind(obj)}"))
    if unknown:
        warnings.append(Problem("", f"ignored unknown keys: {', '.join(sorted(unknown)[:10])}"))
    return Parsed("JSON Lines", tuple(items), tuple(rejects), tuple(warnings))


def _json_feed(doc: Mapping[str, Any], text: str, warnings: list[Problem]) -> Parsed:
    """JSON Feed 1.x: ``id``, ``url``, ``title``, ``summary`` or ``content_text`` or
    ``content_html``, ``date_published`` (else ``date_modified``), ``tags``; research fields
    may be given in a ``_digest`` extension object with the JSON keys."""
    entries = doc.get("items")
    if not isinstance(entries, list):
        raise DataError('a JSON Feed needs an "items" array')
    lines = _item_lines(text, len(entries))
    unknown: set[str] = set()
    items: list[SourceItem] = []
    rejects: list[Problem] = []
    for index, entry in enumerate(entries):
        where = f"entry {index + 1}" + (f" (line {lines[index]})" if lines else "")
        if not isinstance(entry, dict):
            rejects.append(Problem(where, f"expected a JSON object, got {_kind(entry)}"))
            continue
        extension = entry.get("_digest")
        values = record_values(extension, unknown) if isinstance(extension, dict) else {}
        explanation = entry.get("summary") or entry.get("content_text")
        if not explanation and entry.get("content_html"):
            explanation = entry["content_html"]
        for key, value in (
            ("id", entry.get("id")),
            ("url", entry.get("url") or entry.get("id")),
            ("title", entry.get("title")),
            ("published_at", entry.get("date_published") or entry.get("date_modified")),
            ("categories", entry.get("tags")),
            ("simple_explanation", explanation),
        ):
            if value is not None:
                values.setdefault(key, value)
        items.append(SourceItem(where, values))
    if unknown:
        warnings.append(Problem("", f"ignored unknown _digest keys: {', '.join(sorted(unknown))}"))
    return Parsed("JSON Feed", tuple(items), tuple(rejects), tuple(warnings))


def _kind(value: object) -> str:
    return {list: "an array", str: "text", bool: "true/false", type(None): "null"}.get(
        type(value), "a number"
    )


def _item_lines(text: str, count: int) -> list[int]:
    """The line on which each element of the records array starts ([] if unsure)."""
    try:
        offsets = _array_offsets(text, _records_array(text))
    except (ValueError, IndexError, RecursionError):
        return []
    if len(offsets) != count:
        return []
    newlines = [i for i, ch in enumerate(text) if ch == "\n"]
    return [bisect.bisect_left(newlines, offset) + 1 for offset in offsets]


def _records_array(text: str) -> int:
    """Offset of the ``[`` of the records: the document itself or its ``items`` member."""
    start = _WS.match(text, 1 if text.startswith("\ufeff") else 0)
    i = start.end() if start else 0
    if text[i] == "[":
        return i
    if text[i] != "{":
        raise ValueError("not an object")
    found = -1
    i = _skip(text, i + 1)
    while text[i] != "}":
        key, i = _DECODER.raw_decode(text, i)
        i = _skip(text, i)
        if text[i] != ":":
            raise ValueError("no colon")
        i = _skip(text, i + 1)
        if key == "items":
            found = i  # the last one wins, as in json.loads
        _, i = _DECODER.raw_decode(text, i)
        i = _skip(text, i)
        if text[i] == ",":
            i = _skip(text, i + 1)
    if found < 0 or text[found] != "[":
        raise ValueError("no items array")
    return found


def _array_offsets(text: str, start: int) -> list[int]:
    offsets: list[int] = []
    i = _skip(text, start + 1)
    while text[i] != "]":
        offsets.append(i)
        _, i = _DECODER.raw_decode(text, i)
        i = _skip(text, i)
        if text[i] == ",":
            i = _skip(text, i + 1)
    return offsets


def _skip(text: str, i: int) -> int:
    match = _WS.match(text, i)
    return match.end() if match else i
