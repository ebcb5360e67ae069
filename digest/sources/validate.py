"""Check items from any source the same way: pure, no database, no clock (``now`` is passed).

Each item becomes a :class:`ValidRecord` (text cleaned of markup, URL canonical, dates
timezone-aware, values within the columns' limits) or a rejection naming its position and
every reason. Repeats of one summary inside a source are caught here too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from digest.sources import Parsed, Problem, SourceItem
from digest.sources.cleaning import (
    canonical_url,
    html_to_text,
    normalise_doi,
    normalise_pmid,
    one_line,
    truncate,
)
from digest.sources.corrections import NOTE_LIMIT, STATUSES
from digest.sources.dates import FIRST_YEAR, LAST_YEAR, DateError, parse_datetime
from digest.sources.store import SummaryRecord

#: One-line text fields and their column sizes.
SHORT_TEXT = {
    "title": 500,
    "journal": 300,
    "study_type": 200,
    "evidence_level": 200,
    "study_duration": 200,
    "population": 500,
    "participants": 500,
}
#: Longer texts are cut (with a warning): a digest card shows a few hundred characters.
LONG_TEXT = {
    "simple_explanation": 10_000,
    "practical_implications": 10_000,
    "correction_note": NOTE_LIMIT,
}
LIST_TEXT = ("key_findings", "limitations")
LIST_ITEM_LIMIT, LIST_LENGTH_LIMIT = 2_000, 50
URL_LIMIT, CATEGORY_LIMIT, CATEGORIES_PER_ITEM, ID_LIMIT = 2000, 200, 20, 500
SAMPLE_SIZE_LIMIT = 1_000_000_000
_TRUE, _FALSE = {"true", "yes", "y", "1"}, {"false", "no", "n", "0"}


@dataclass(frozen=True)
class ValidRecord:
    position: str
    record: SummaryRecord  # categories are still the source's labels
    #: Identity keys, strongest first: "url:...", "doi:...", "pmid:...", "id:...".
    keys: tuple[str, ...]
    #: False when the source gave no publish date and the import time was used.
    dated: bool


@dataclass(frozen=True)
class Checked:
    format: str
    records: tuple[ValidRecord, ...]
    rejects: tuple[Problem, ...]
    warnings: tuple[Problem, ...]
    duplicates: int  # exact repeats inside the source, ignored


class _Invalid(ValueError):
    pass


#: A field converter: (field name, value as given, warnings to add to) -> stored value.
_Converter = Callable[[str, object, list[str]], object]


def check(parsed: Parsed, *, zone: dt.tzinfo, now: dt.datetime) -> Checked:
    """Every item of ``parsed`` checked, and repeats inside the source set aside."""
    records: list[ValidRecord] = []
    rejects = list(parsed.rejects)
    warnings = list(parsed.warnings)
    seen: dict[str, ValidRecord] = {}
    duplicates = 0
    for item in parsed.items:
        valid, errors, notes = check_item(item, zone=zone, now=now)
        if valid is None:
            rejects.append(Problem(item.position, "; ".join(errors)))
            continue
        warnings.extend(Problem(item.position, note) for note in notes)
        first = next((seen[key] for key in valid.keys if key in seen), None)
        if first is not None:
            if first.record == valid.record:
                duplicates += 1
                warnings.append(Problem(item.position, f"same as {first.position}: ignored"))
            else:
                key = next(key for key in valid.keys if key in seen).partition(":")[0]
                rejects.append(
                    Problem(
                        item.position,
                        f"same summary as {first.position} (same {key.upper()}) "
                        "with different content",
                    )
                )
            continue
        seen.update(dict.fromkeys(valid.keys, valid))
        records.append(valid)
    return Checked(parsed.format, tuple(records), tuple(rejects), tuple(warnings), duplicates)


def check_item(
    item: SourceItem, *, zone: dt.tzinfo, now: dt.datetime
) -> tuple[ValidRecord | None, list[str], list[str]]:
    """(record or None, reasons for rejecting it, warnings)."""
    values = item.values
    errors: list[str] = []
    notes: list[str] = []
    fields: dict[str, object] = {}

    def take(name: str, convert: _Converter) -> object:
        try:
            return convert(name, values.get(name), notes)
        except _Invalid as exc:
            errors.append(str(exc))
            return None

    before = len(errors)
    title = take("title", _short_text)
    if not title and len(errors) == before:
        errors.append("missing title")
    url = _url(values, errors)
    published, dated = _published(item, zone, now, errors, notes)
    categories = take("categories", _categories)
    for name in SHORT_TEXT:
        if name != "title" and name in values:
            fields[name] = take(name, _short_text)
    for name in LONG_TEXT:
        if name in values:
            fields[name] = take(name, _long_text) or ""
    for name in LIST_TEXT:
        if name in values:
            fields[name] = take(name, _text_list) or []
    for name, convert in (
        ("year", _year),
        ("sample_size", _sample_size),
        ("open_access", _flag),
        ("doi", _doi),
        ("pmid", _pmid),
        ("status", _status),
    ):
        if name in values:
            fields[name] = take(name, convert)
    provided_id = take("id", _identifier)
    if errors or not isinstance(title, str) or url is None or published is None:
        return None, errors, notes
    record = SummaryRecord(
        title=title,
        url=url,
        published_at=published,
        categories=tuple(categories) if isinstance(categories, list) else (),
        fields=fields,
    )
    keys = [f"url:{url}"]
    keys += [f"{name}:{fields[name]}" for name in ("doi", "pmid") if fields.get(name)]
    if provided_id:
        keys.append(f"id:{provided_id}")
    return ValidRecord(item.position, record, tuple(keys), dated), errors, notes


def _text_value(name: str, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _Invalid(f"{name} must be text")
    return str(value)


def _short_text(name: str, value: object, notes: list[str]) -> str | None:
    raw = _text_value(name, value)
    if raw is None:
        return None
    text = one_line(raw)
    limit = SHORT_TEXT[name]
    if len(text) > limit:
        notes.append(f"{name} is {len(text):,} characters: cut to {limit}")
        text = truncate(text, limit)
    return text or None


def _long_text(name: str, value: object, notes: list[str]) -> str | None:
    raw = _text_value(name, value)
    if raw is None:
        return None
    limit = LONG_TEXT[name]
    text = html_to_text(raw[: limit * 20])
    if len(text) > limit or len(raw) > limit * 20:
        notes.append(f"{name} is {len(raw):,} characters: cut to {limit:,}")
        text = truncate(text, limit)
    return text


def _text_list(name: str, value: object, notes: list[str]) -> list[str]:
    if value is None:
        return []
    entries = value if isinstance(value, list) else [value]
    texts = [_text_value(name, entry) for entry in entries]
    cleaned = [one_line(text[: LIST_ITEM_LIMIT * 20]) for text in texts if text]
    result = [truncate(text, LIST_ITEM_LIMIT) for text in cleaned if text]
    if any(len(text) > LIST_ITEM_LIMIT for text in cleaned):
        notes.append(f"{name}: entries longer than {LIST_ITEM_LIMIT:,} characters were cut")
    if len(result) > LIST_LENGTH_LIMIT:
        notes.append(f"{name}: kept the first {LIST_LENGTH_LIMIT} of {len(result)}")
    return result[:LIST_LENGTH_LIMIT]


def _categories(name: str, value: object, notes: list[str]) -> list[str]:
    if isinstance(value, str):
        labels = [one_line(part) for part in value[:100_000].split(";")]
    else:
        labels = _text_list(name, value, [])
    unique: dict[str, str] = {}
    for label in labels:
        if label and len(label) <= CATEGORY_LIMIT:
            unique.setdefault(label.casefold(), label)
        elif label:
            notes.append(f"category name longer than {CATEGORY_LIMIT} characters: ignored")
    if len(unique) > CATEGORIES_PER_ITEM:
        notes.append(f"kept the first {CATEGORIES_PER_ITEM} of {len(unique)} categories")
    return list(unique.values())[:CATEGORIES_PER_ITEM]


def _url(values: Mapping[str, object], errors: list[str]) -> str | None:
    raw = values.get("url")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        provided = values.get("id")
        if isinstance(provided, str) and canonical_url(provided):
            raw = provided
        else:
            errors.append("missing URL")
            return None
    if not isinstance(raw, str):
        errors.append("url must be text")
        return None
    url = canonical_url(raw)
    if url is None:
        errors.append(f"URL {_show(raw)} is not an http(s) address")
    elif len(url) > URL_LIMIT:
        errors.append(f"URL longer than {URL_LIMIT} characters")
        return None
    return url


def _published(
    item: SourceItem,
    zone: dt.tzinfo,
    now: dt.datetime,
    errors: list[str],
    notes: list[str],
) -> tuple[dt.datetime | None, bool]:
    raw = item.values.get("published_at")
    fallback = item.fallback_published
    if fallback is not None and not FIRST_YEAR <= fallback.year <= LAST_YEAR:
        fallback = None
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        if fallback is None:
            notes.append(f"no publish date: using the import time ({now:%Y-%m-%d %H:%M} UTC)")
            return now, False
        return fallback, True
    if not isinstance(raw, str):
        errors.append(f"published_at must be an ISO 8601 date, got {_show(raw)}")
        return None, False
    try:
        moment = parse_datetime(raw, zone)
    except DateError:
        if fallback is not None:
            return fallback, True
        errors.append(
            f"unparseable date {_show(raw)} (expected ISO 8601, such as 2026-11-20T09:00:00Z)"
        )
        return None, False
    if moment > now + dt.timedelta(days=1):
        notes.append(
            f"published_at {moment:%Y-%m-%d %H:%M %z} is in the future: "
            "it goes out in the first edition after that date"
        )
    return moment, True


def _year(name: str, value: object, notes: list[str]) -> int | None:
    number = _whole_number(name, value)
    if number is not None and not 1800 <= number <= 2200:
        raise _Invalid(f"year {number} is not a plausible year")
    return number


def _sample_size(name: str, value: object, notes: list[str]) -> int | None:
    number = _whole_number(name, value)
    if number is not None and not 0 <= number <= SAMPLE_SIZE_LIMIT:
        raise _Invalid(f"sample_size {number} is out of range")
    return number


def _whole_number(name: str, value: object) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        digits = value.strip().replace(",", "").replace("_", "").replace(" ", "")
        if digits.isascii() and digits.isdigit() and len(digits) <= 12:
            return int(digits)
    raise _Invalid(f"{name} must be a whole number, got {_show(value)}")


def _flag(name: str, value: object, notes: list[str]) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str | int) else "?"
    if text == "":
        return None
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise _Invalid(f"{name} must be true or false, got {_show(value)}")


def _status(name: str, value: object, notes: list[str]) -> str | None:
    text = _text_value(name, value)
    if text is None or not text.strip():
        return None
    status = text.strip().lower()
    if status not in STATUSES:
        raise _Invalid(f"{name} must be one of {', '.join(STATUSES)}, got {_show(value)}")
    return status


def _doi(name: str, value: object, notes: list[str]) -> str | None:
    text = _text_value(name, value)
    if not text or not text.strip():
        return None
    doi = normalise_doi(text)
    if doi is None:
        raise _Invalid(f"doi {_show(text)} is not a DOI (such as 10.1038/s41393-020-0001-2)")
    return doi


def _pmid(name: str, value: object, notes: list[str]) -> str | None:
    text = _text_value(name, value)
    if not text or not text.strip():
        return None
    pmid = normalise_pmid(text)
    if pmid is None:
        raise _Invalid(f"pmid {_show(text)} is not a PubMed id (digits)")
    return pmid


def _identifier(name: str, value: object, notes: list[str]) -> str | None:
    text = _text_value(name, value)
    if not text:
        return None
    return one_line(text[: ID_LIMIT * 4])[:ID_LIMIT] or None


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"
