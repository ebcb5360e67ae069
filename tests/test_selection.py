"""Selection table tests: never miss a summary, never send one twice."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from digest.planning.selection import (
    Catalog,
    ItemRef,
    Reader,
    edition_key,
    select_items,
    window_start,
)

CUTOFF = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
WEEK = dt.timedelta(days=7)
PHARM, NEURO, REHAB = 1, 2, 3


def item(id_: int, days_before_cutoff: float, *categories: int) -> ItemRef:
    return ItemRef(id_, CUTOFF - dt.timedelta(days=days_before_cutoff), frozenset(categories))


def reader(*categories: int, joined_days_ago: float = 30, last_cutoff_days_ago: float | None = 7):
    return Reader(
        subscriber_id=1,
        category_ids=frozenset(categories),
        active_since=CUTOFF - dt.timedelta(days=joined_days_ago),
        last_cutoff=None
        if last_cutoff_days_ago is None
        else CUTOFF - dt.timedelta(days=last_cutoff_days_ago),
    )


CATALOG = [
    item(1, 1, PHARM),
    item(2, 2, PHARM, NEURO),  # in two categories
    item(3, 3, NEURO),
    item(4, 6.9, REHAB),
    item(5, 9, PHARM),  # last week's: already sent to regular readers
    item(6, 7, PHARM),  # published exactly at last week's cutoff: went last week
    item(7, 0, NEURO),  # published exactly at this cutoff: goes this week
    item(8, -0.01, PHARM),  # published after the cutoff: next week
]


@pytest.mark.parametrize(
    ("case", "the_reader", "expected"),
    [
        ("regular reader, one category", reader(PHARM), (1, 2)),
        ("summary in two of my categories appears once", reader(PHARM, NEURO), (7, 1, 2, 3)),
        ("nothing new in my category", reader(REHAB, last_cutoff_days_ago=6), ()),
        (
            "new reader looks back 7 days before joining",
            reader(PHARM, joined_days_ago=1, last_cutoff_days_ago=None),
            (1, 2, 6),
        ),
        (
            "new reader who joined today",
            reader(REHAB, joined_days_ago=0, last_cutoff_days_ago=None),
            (4,),
        ),
        ("missed editions are caught up", reader(PHARM, last_cutoff_days_ago=14), (1, 2, 6, 5)),
        (
            "resubscribed reader starts from the look-back, not from years ago",
            Reader(
                1,
                frozenset({PHARM}),
                CUTOFF - dt.timedelta(days=2),
                CUTOFF - dt.timedelta(days=400),
            ),
            (1, 2, 6),
        ),
    ],
)
def test_selection_table(case: str, the_reader: Reader, expected: tuple[int, ...]) -> None:
    catalog = Catalog(CATALOG, CUTOFF)
    assert select_items(the_reader, catalog, WEEK) == expected, case


def test_summary_at_cutoff_goes_this_week_and_after_cutoff_goes_next_week() -> None:
    this_week = select_items(reader(PHARM, NEURO), Catalog(CATALOG, CUTOFF), WEEK)
    assert 7 in this_week and 8 not in this_week
    next_cutoff = CUTOFF + WEEK
    next_week = select_items(
        Reader(1, frozenset({PHARM, NEURO}), CUTOFF - dt.timedelta(days=30), CUTOFF),
        Catalog(CATALOG, next_cutoff),
        WEEK,
    )
    assert next_week == (8,)
    assert not set(this_week) & set(next_week)


def test_consecutive_windows_neither_miss_nor_repeat() -> None:
    items = [ItemRef(i, CUTOFF - dt.timedelta(hours=i * 5), frozenset({PHARM})) for i in range(100)]
    cutoffs = [CUTOFF - dt.timedelta(days=7 * k, hours=k) for k in range(4, -1, -1)]
    got: list[int] = []
    last = None
    for cutoff in cutoffs:
        r = Reader(1, frozenset({PHARM}), CUTOFF - dt.timedelta(days=60), last)
        got.extend(select_items(r, Catalog(items, cutoff), WEEK))
        last = cutoff
    expected = {
        i.id for i in items if CUTOFF - dt.timedelta(days=60) - WEEK < i.published_at <= CUTOFF
    }
    assert sorted(got) == sorted(expected)
    assert len(got) == len(set(got))


def test_window_start_prefers_the_later_of_lookback_and_last_cutoff() -> None:
    joined = CUTOFF - dt.timedelta(days=3)
    assert window_start(Reader(1, frozenset(), joined, None), WEEK) == joined - WEEK
    later = CUTOFF - dt.timedelta(days=1)
    assert window_start(Reader(1, frozenset(), joined, later), WEEK) == later


@pytest.mark.parametrize(
    ("moment", "zone", "key"),
    [
        (dt.datetime(2026, 11, 23, 8, tzinfo=dt.UTC), "UTC", "2026-W48"),
        (dt.datetime(2026, 11, 22, 23, 30, tzinfo=dt.UTC), "UTC", "2026-W47"),
        # Sunday 23:30 UTC is already Monday in Berlin
        (dt.datetime(2026, 11, 22, 23, 30, tzinfo=dt.UTC), "Europe/Berlin", "2026-W48"),
        (dt.datetime(2027, 1, 1, 12, tzinfo=dt.UTC), "UTC", "2026-W53"),
    ],
)
def test_edition_key_is_the_iso_week_in_the_list_timezone(moment, zone, key) -> None:
    assert edition_key(moment, ZoneInfo(zone)) == key
