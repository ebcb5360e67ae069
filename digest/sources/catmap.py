"""Category maps: how a source's categories become the site's (``--category-map``).

TOML::

    [categories]
    "Drug therapy" = "pharmacology"                 # rename (slug or name of the site's)
    "Neuropharmacology" = ["neurology", "pharmacology"]  # one source category into two
    "Editorial" = ""                                # drop

CSV: two columns, ``source,target`` (a header row with those words is optional); several
targets in one cell are separated by ``;``, an empty target drops the category.
Source names are matched case-insensitively, also by their slug.
"""

from __future__ import annotations

import csv
import io
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass

from digest.errors import DataError
from digest.sources import decode_text
from digest.sources.cleaning import one_line
from digest.sources.store import slugify


def _key(label: str) -> str:
    return " ".join(label.split()).casefold()


@dataclass(frozen=True)
class CategoryMap:
    """Source category (case-folded) -> site categories (slugs or names; empty = drop)."""

    entries: Mapping[str, tuple[str, ...]]

    def lookup(self, label: str) -> tuple[str, ...] | None:
        """The targets for ``label``, or ``None`` if the map does not mention it."""
        found = self.entries.get(_key(label))
        if found is None:
            found = self.entries.get(slugify(label))
        return found


def _build(pairs: list[tuple[str, list[str]]], name: str) -> CategoryMap:
    entries: dict[str, tuple[str, ...]] = {}
    for source, targets in pairs:
        cleaned = tuple(t for t in (one_line(target) for target in targets) if t)
        entries[_key(source)] = cleaned
        entries.setdefault(slugify(source), cleaned)
    if not entries:
        raise DataError(f"{name}: the category map is empty")
    return CategoryMap(entries)


def parse_category_map(data: bytes, name: str) -> CategoryMap:
    """Read a map from TOML (``*.toml``) or CSV (anything else)."""
    text, _ = decode_text(data)
    if name.lower().endswith(".toml"):
        return _from_toml(text, name)
    return _from_csv(text, name)


def _from_toml(text: str, name: str) -> CategoryMap:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"{name}: not valid TOML: {exc}") from None
    table = doc.get("categories", doc)
    if not isinstance(table, dict):
        raise DataError(f"{name}: [categories] must be a table of source = target")
    pairs: list[tuple[str, list[str]]] = []
    for source, target in table.items():
        if isinstance(target, str):
            pairs.append((source, [target]))
        elif isinstance(target, list) and all(isinstance(t, str) for t in target):
            pairs.append((source, list(target)))
        else:
            raise DataError(
                f"{name}: {source!r} must map to a category (text) or a list of categories"
            )
    return _build(pairs, name)


def _from_csv(text: str, name: str) -> CategoryMap:
    pairs: list[tuple[str, list[str]]] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            cells = [cell.strip() for cell in row]
            if not any(cells) or cells[0].startswith("#"):
                continue
            if [c.lower() for c in cells[:2]] == ["source", "target"] and not pairs:
                continue
            if len(cells) > 2 and any(cells[2:]):
                raise DataError(
                    f"{name} line {reader.line_num}: expected two cells, source and target"
                )
            target = cells[1] if len(cells) > 1 else ""
            pairs.append((cells[0], target.split(";")))
    except csv.Error as exc:
        raise DataError(f"{name} line {reader.line_num}: {exc}") from None
    return _build(pairs, name)
