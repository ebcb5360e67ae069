"""Which summaries each reader gets: pure functions, no I/O and no clock.

A reader's window opens at the cutoff of the last edition they were sent (or, for a reader
never sent anything since they became active, ``lookback`` before that moment) and closes at
the edition's cutoff. Windows of consecutive editions touch but never overlap, so a summary
is never sent twice and never skipped: ``since < published_at <= cutoff``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

#: (sorted category ids, summary ids newest first, notice ids): readers with equal keys
#: share one email.
VariantKey = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


@dataclass(frozen=True, slots=True)
class ItemRef:
    """What selection needs to know of a summary."""

    id: int
    published_at: dt.datetime
    category_ids: frozenset[int]


class Reader(NamedTuple):
    """What selection needs to know of a subscriber (a named tuple: a plan makes one per
    subscriber)."""

    subscriber_id: int
    category_ids: frozenset[int]
    active_since: dt.datetime
    #: Cutoff of the last edition this reader was sent, if any.
    last_cutoff: dt.datetime | None = None
    frequency: str = "weekly"  # or "monthly"
    paused_until: dt.datetime | None = None
    timezone: str | None = None  # the reader's own, for local delivery


def edition_key(moment: dt.datetime, zone: dt.tzinfo) -> str:
    """The ISO week of ``moment`` in the list's time zone, such as ``2026-W48``."""
    if moment.tzinfo is None:
        raise ValueError("edition_key needs a timezone-aware moment")
    year, week, _ = moment.astimezone(zone).isocalendar()
    return f"{year}-W{week:02d}"


def wants_edition(reader: Reader, cutoff: dt.datetime, now: dt.datetime, zone: dt.tzinfo) -> bool:
    """Whether the reader takes an edition with this cutoff at all: not while paused, and
    monthly readers only once per calendar month (in the list's time zone)."""
    if reader.paused_until is not None and reader.paused_until > now:
        return False
    if reader.frequency == "monthly" and reader.last_cutoff is not None:
        last, this = reader.last_cutoff.astimezone(zone), cutoff.astimezone(zone)
        return (last.year, last.month) != (this.year, this.month)
    return True


def window_start(reader: Reader, lookback: dt.timedelta) -> dt.datetime:
    """The exclusive start of the reader's window."""
    start = reader.active_since - lookback
    if reader.last_cutoff is not None and reader.last_cutoff > start:
        return reader.last_cutoff
    return start


class Catalog:
    """The summaries published up to an edition's cutoff, indexed for fast selection.

    Results are cached per (categories, window start), so readers sharing a window cost
    one selection; the cache is bounded, so a million distinct windows cannot fill memory.
    """

    CACHE_SIZE = 4096

    def __init__(self, items: Iterable[ItemRef], cutoff: dt.datetime) -> None:
        self.cutoff = cutoff
        self._by_category: dict[int, list[ItemRef]] = {}
        for item in sorted(items, key=_newest_first):
            if item.published_at > cutoff:
                continue
            for category_id in item.category_ids:
                self._by_category.setdefault(category_id, []).append(item)
        self._cache: dict[tuple[frozenset[int], dt.datetime], tuple[int, ...]] = {}

    def select(self, category_ids: frozenset[int], since: dt.datetime) -> tuple[int, ...]:
        """Ids of summaries in any of ``category_ids`` with ``since < published_at``,
        newest first, each once."""
        key = (category_ids, since)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        chosen: dict[int, ItemRef] = {}
        for category_id in category_ids:
            for item in self._by_category.get(category_id, ()):
                if item.published_at <= since:
                    break  # lists are newest first
                chosen[item.id] = item
        result = tuple(item.id for item in sorted(chosen.values(), key=_newest_first))
        if len(self._cache) >= self.CACHE_SIZE:
            self._cache.pop(next(iter(self._cache)))  # drop the oldest entry
        self._cache[key] = result
        return result


def select_items(reader: Reader, catalog: Catalog, lookback: dt.timedelta) -> tuple[int, ...]:
    """The summaries ``reader`` gets in the edition described by ``catalog``."""
    return catalog.select(reader.category_ids, window_start(reader, lookback))


def variant_key(
    reader: Reader, item_ids: tuple[int, ...], notice_ids: tuple[int, ...] = ()
) -> VariantKey:
    return tuple(sorted(reader.category_ids)), item_ids, notice_ids


def _newest_first(item: ItemRef) -> tuple[float, int]:
    return -item.published_at.timestamp(), -item.id
