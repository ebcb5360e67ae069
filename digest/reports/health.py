"""The list's health over time, from what the database records: subscribers per topic
week by week, and per edition what happened to its mail and how fast it went out.

Every figure comes from the ledger (``deliveries``), bounce processing
(``bounce_events``), the editions' kept totals and the readers' own choices (their
consent records and the times they joined and left): no opens, no clicks.

Where history is not stored it is derived, and the pages say so:

* **Topics over time.** No weekly count is stored. A reader counts for a topic at the end
  of a week when they had confirmed (``confirmed_at``, else ``active_since``) by then, had
  not left (``unsubscribed_at``, also set by a bounce or complaint), and their topics
  then include it: for a reader who chose topics more than once (every choice adds a
  consent record), those of their latest choice up to then; for one who chose once, their
  current topics (counted by the database, so a large list stays quick). People erased
  since are not counted at all, and someone who left and came back counts from their
  first confirmation.
* **Unsubscribes of an edition** are the readers who unsubscribed after it and before any
  later digest reached them (``digest deliverability --edition`` counts every edition sent
  before they left); an edition whose rows retention deleted shows the totals it kept.
* **Send speed** is measured on the rows planned with the edition (late readers and topic
  changes planned later are left out), from the first message accepted to the last.
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import io
import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, case, func, select
from sqlalchemy.orm import Session

from digest.bounces.classify import COMPLAINT, HARD, SOFT
from digest.bounces.report import COMPLAINT_LIMIT, COMPLAINT_TARGET
from digest.store.db import Category
from digest.store.models import BounceEvent, Delivery, DeliveryStatus, Edition
from subscribers.models import Consent, Status, Subscriber, Subscription

__all__ = [
    "COMPLAINT_LIMIT",
    "COMPLAINT_TARGET",
    "EditionOutcome",
    "EditionSpeed",
    "Table",
    "TopicWeeks",
    "edition_outcomes",
    "edition_speeds",
    "outcomes_table",
    "speeds_table",
    "topic_weeks",
    "topics_table",
]

#: Weeks and editions shown by default.
WEEKS = 26
EDITIONS = 26
SENT = DeliveryStatus.SENT.value
FAILED = DeliveryStatus.FAILED.value


@dataclass(frozen=True, slots=True)
class Table:
    """One chart's data, as shown beside it and downloaded as CSV (the same cells)."""

    caption: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(self.header)
        writer.writerows(self.rows)
        return out.getvalue()


# ---------------------------------------------------------------- topics over time


@dataclass(frozen=True, slots=True)
class TopicWeeks:
    """Readers per topic at the end of each week (derived, see the module's docstring)."""

    weeks: tuple[dt.date, ...]  # the Monday each week starts
    topics: tuple[str, ...]  # names
    counts: dict[str, tuple[int, ...]]  # topic name -> one count per week


def topic_weeks(session: Session, *, now: dt.datetime, weeks: int = WEEKS) -> TopicWeeks:
    """Readers per topic at the end of the last ``weeks`` weeks up to ``now`` (the week
    in progress ends at ``now``), weeks starting on Monday, in UTC; weeks before the
    first reader counted are left out (two weeks are always shown)."""
    today = now.astimezone(dt.UTC)
    monday = (today - dt.timedelta(days=today.weekday())).date()
    starts = [monday - dt.timedelta(weeks=n) for n in range(weeks - 1, -1, -1)]
    ends = [_midnight(start + dt.timedelta(weeks=1)) for start in starts[:-1]] + [today]
    categories = session.execute(select(Category.id, Category.slug, Category.name)).all()
    by_id = {cid: name for cid, _, name in categories}
    counts: dict[str, list[int]] = {name: [0] * (len(ends) + 1) for name in sorted(by_id.values())}
    # readers who chose their topics once (most): their current topics all along, counted
    # by the database per (topic, first week, week they left), a short answer
    joined = func.coalesce(Subscriber.confirmed_at, Subscriber.active_since)
    rows = (
        select(
            Subscription.category_id.label("topic"),
            _week_index(joined, ends).label("first"),
            _week_index(Subscriber.unsubscribed_at, ends).label("stop"),
        )
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(
            Subscriber.status != Status.PENDING.value,
            joined.is_not(None),
            Subscriber.id.not_in(_changed_topics()),
        )
        .subquery()
    )
    for topic, first, stop, number in session.execute(
        select(rows.c.topic, rows.c.first, rows.c.stop, func.count()).group_by(
            rows.c.topic, rows.c.first, rows.c.stop
        )
    ):
        if first < stop:
            counts[by_id[topic]][first] += number
            counts[by_id[topic]][stop] -= number
    for first, stop, topics in _changing_readers(session, ends, by_id):
        for index in range(first, stop):
            for topic in topics(index):
                counts[topic][index] += 1
                counts[topic][index + 1] -= 1
    totals = {name: tuple(itertools.accumulate(values[:-1])) for name, values in counts.items()}
    # weeks before anyone counted say nothing: the list starts with its first reader
    empty = [not any(values[i] for values in totals.values()) for i in range(len(starts))]
    skip = min(empty.index(False) if False in empty else len(starts), len(starts) - 2)
    skip = max(skip, 0)
    return TopicWeeks(
        weeks=tuple(starts[skip:]),
        topics=tuple(totals),
        counts={name: values[skip:] for name, values in totals.items()},
    )


def _week_index(column: Any, ends: list[dt.datetime]) -> Any:
    """The index of the first week ending at or after ``column`` (``len(ends)``: none,
    or NULL), as :func:`bisect.bisect_left` on ``ends`` would say."""
    return case(*((column <= end, index) for index, end in enumerate(ends)), else_=len(ends))


def _changed_topics() -> Select[Any]:
    """Readers who chose topics more than once (two consent records or more)."""
    return select(Consent.subscriber_id).group_by(Consent.subscriber_id).having(func.count() > 1)


def _changing_readers(
    session: Session, ends: list[dt.datetime], by_id: dict[int, str]
) -> Iterator[tuple[int, int, Callable[[int], set[str]]]]:
    """For each reader who chose topics more than once: the weeks they count in, and
    their topics at the end of a week (their latest choice by then)."""
    changed = _changed_topics()
    slugs = {slug: name for slug, name in session.execute(select(Category.slug, Category.name))}
    current: dict[int, set[str]] = defaultdict(set)
    for subscriber_id, category_id in session.execute(
        select(Subscription.subscriber_id, Subscription.category_id).where(
            Subscription.subscriber_id.in_(changed)
        )
    ):
        current[subscriber_id].add(by_id[category_id])
    choices: dict[int, list[tuple[dt.datetime, set[str]]]] = defaultdict(list)
    for subscriber_id, at, chosen in session.execute(
        select(Consent.subscriber_id, Consent.created_at, Consent.categories)
        .where(Consent.subscriber_id.in_(changed))
        .order_by(Consent.subscriber_id, Consent.created_at, Consent.id)
    ):
        choices[subscriber_id].append((at, {slugs[s] for s in chosen if s in slugs}))
    readers = session.execute(
        select(Subscriber.id, Subscriber.confirmed_at, Subscriber.active_since,
               Subscriber.unsubscribed_at)
        .where(Subscriber.status != Status.PENDING.value, Subscriber.id.in_(changed))
    )  # fmt: skip
    for subscriber_id, confirmed_at, active_since, left_at in readers:
        joined = confirmed_at or active_since
        if joined is None:
            continue
        history = choices[subscriber_id]
        times = [at for at, _ in history]
        before = current[subscriber_id]

        def topics(index: int, history: list[Any] = history, times: list[Any] = times,
                   before: set[str] = before) -> set[str]:  # fmt: skip
            latest = bisect.bisect_right(times, ends[index])
            chosen: set[str] = history[latest - 1][1] if latest else before
            return chosen

        first = bisect.bisect_left(ends, joined)
        stop = len(ends) if left_at is None else bisect.bisect_left(ends, left_at)
        yield first, stop, topics


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def topics_table(data: TopicWeeks) -> Table:
    return Table(
        caption="Readers per topic at the end of each week (derived from when each reader "
        "confirmed, chose topics and left)",
        header=("Week of", *data.topics),
        rows=tuple(
            (week.isoformat(), *(str(data.counts[t][i]) for t in data.topics))
            for i, week in enumerate(data.weeks)
        ),
    )


# ---------------------------------------------------------------- editions' outcomes


@dataclass(frozen=True, slots=True)
class EditionOutcome:
    key: str
    sent: int
    failed: int
    hard: int
    soft: int
    complained: int
    unsubscribed: int
    archived: bool  # counted from the totals kept when retention deleted its rows

    def rate(self, count: int) -> float:
        """``count`` per message sent (0 when nothing was sent)."""
        return count / self.sent if self.sent else 0.0

    @property
    def failed_rate(self) -> float:
        """Failed messages per message the edition tried (sent or failed)."""
        tried = self.sent + self.failed
        return self.failed / tried if tried else 0.0


def edition_outcomes(session: Session, *, limit: int = EDITIONS) -> list[EditionOutcome]:
    """The latest ``limit`` editions that sent or failed something, oldest first."""
    editions = session.execute(
        select(Edition.id, Edition.key, Edition.archived_at, Edition.totals)
        .order_by(Edition.created_at.desc(), Edition.id.desc())
        .limit(limit * 2)
    ).all()
    ids = [row.id for row in editions if row.archived_at is None]
    statuses: Counter[tuple[int, str]] = Counter()
    for edition_id, status, count in session.execute(
        select(Delivery.edition_id, Delivery.status, func.count())
        .where(Delivery.edition_id.in_(ids), Delivery.status.in_((SENT, FAILED)))
        .group_by(Delivery.edition_id, Delivery.status)
    ):
        statuses[edition_id, status] = int(count)
    events: Counter[tuple[int, str]] = Counter()
    for event_edition, kind, count in session.execute(
        select(BounceEvent.edition_id, BounceEvent.kind,
               func.count(func.distinct(BounceEvent.delivery_id)))
        .where(BounceEvent.edition_id.in_(ids), BounceEvent.delivery_id.is_not(None))
        .group_by(BounceEvent.edition_id, BounceEvent.kind)
    ):  # fmt: skip
        if event_edition is not None:
            events[event_edition, kind] = int(count)
    left = _unsubscribes(session, ids)
    found: list[EditionOutcome] = []
    for row in editions:
        if row.archived_at is not None:
            outcome = _kept(row.key, row.totals or {})
        else:
            outcome = EditionOutcome(
                row.key, statuses[row.id, SENT], statuses[row.id, FAILED], events[row.id, HARD],
                events[row.id, SOFT], events[row.id, COMPLAINT], left[row.id], archived=False,
            )  # fmt: skip
        if outcome.sent or outcome.failed:
            found.append(outcome)
    return found[:limit][::-1]


def _kept(key: str, totals: dict[str, Any]) -> EditionOutcome:
    statuses = totals.get("statuses", {})
    return EditionOutcome(
        key, int(statuses.get(SENT, 0)), int(statuses.get(FAILED, 0)), int(totals.get(HARD, 0)),
        int(totals.get(SOFT, 0)), int(totals.get(COMPLAINT, 0)),
        int(totals.get("unsubscribed", 0)), archived=True,
    )  # fmt: skip


def _unsubscribes(session: Session, ids: list[int]) -> Counter[int]:
    """Per edition, the readers whose last digest before they unsubscribed was of it."""
    rows = session.execute(
        select(Delivery.subscriber_id, Delivery.edition_id, Delivery.sent_at)
        .join(Subscriber, and_(
            Subscriber.id == Delivery.subscriber_id,
            Subscriber.status == Status.UNSUBSCRIBED.value,
            Subscriber.unsubscribed_at >= Delivery.sent_at,
        ))
        # the latest editions are the newest: a reader whose last digest before leaving
        # is older was sent none of them before leaving
        .where(Delivery.status == SENT, Delivery.edition_id.in_(ids))
    )  # fmt: skip
    last: dict[int, tuple[dt.datetime, int]] = {}
    for subscriber_id, edition_id, sent_at in rows:
        if subscriber_id is None or sent_at is None:
            continue
        if subscriber_id not in last or sent_at > last[subscriber_id][0]:
            last[subscriber_id] = (sent_at, edition_id)
    return Counter(edition for _, edition in last.values())


def _percent(value: float) -> str:
    return f"{value * 100:.3f}"


def outcomes_table(outcomes: list[EditionOutcome]) -> Table:
    return Table(
        caption="What happened to each edition's mail (rates in % of messages sent; failed "
        "in % of messages tried)",
        header=(
            "Edition", "Sent", "Failed", "Failed %", "Hard bounces", "Hard bounce %",
            "Soft bounces", "Soft bounce %", "Complaints", "Complaint %", "Unsubscribed",
            "Unsubscribe %",
        ),
        rows=tuple(
            (
                o.key + (" (kept totals)" if o.archived else ""),
                str(o.sent), str(o.failed), _percent(o.failed_rate),
                str(o.hard), _percent(o.rate(o.hard)), str(o.soft), _percent(o.rate(o.soft)),
                str(o.complained), _percent(o.rate(o.complained)),
                str(o.unsubscribed), _percent(o.rate(o.unsubscribed)),
            )
            for o in outcomes
        ),
    )  # fmt: skip


# ---------------------------------------------------------------- send speed


@dataclass(frozen=True, slots=True)
class EditionSpeed:
    key: str
    messages: int  # sent, of the rows planned with the edition
    seconds: float | None  # first to last accepted; None: fewer than two messages

    @property
    def per_second(self) -> float | None:
        if not self.seconds:
            return None
        return self.messages / self.seconds


def edition_speeds(session: Session, *, limit: int = EDITIONS) -> list[EditionSpeed]:
    """How long the latest ``limit`` editions with sent rows took to go out, oldest first
    (editions whose rows retention deleted are not known any more)."""
    first = (
        select(Delivery.edition_id, func.min(Delivery.created_at).label("planned"))
        .group_by(Delivery.edition_id)
        .subquery()
    )
    rows = session.execute(
        select(Edition.key, func.count(), func.min(Delivery.sent_at), func.max(Delivery.sent_at))
        .join(Delivery, Delivery.edition_id == Edition.id)
        .join(first, and_(first.c.edition_id == Edition.id,
                          Delivery.created_at == first.c.planned))
        .where(Delivery.status == SENT, Delivery.sent_at.is_not(None))
        .group_by(Edition.id, Edition.key, Edition.created_at)
        .order_by(Edition.created_at.desc(), Edition.id.desc())
        .limit(limit)
    ).all()  # fmt: skip
    speeds = []
    for key, count, start, end in rows:
        seconds = (_utc(end) - _utc(start)).total_seconds() if count > 1 else None
        speeds.append(EditionSpeed(key, int(count), seconds))
    return speeds[::-1]


def _utc(value: Any) -> dt.datetime:
    """min()/max() of a UTC column, which SQLite returns as text (naive UTC)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def speeds_table(speeds: list[EditionSpeed]) -> Table:
    def duration(seconds: float | None) -> str:
        return "" if seconds is None else f"{seconds:.1f}"

    def rate(value: float | None) -> str:
        return "" if value is None else f"{value:.1f}"

    return Table(
        caption="How fast each edition went out (the messages planned with it, from the "
        "first accepted to the last)",
        header=("Edition", "Messages sent", "Duration (s)", "Messages per second"),
        rows=tuple(
            (s.key, str(s.messages), duration(s.seconds), rate(s.per_second)) for s in speeds
        ),
    )
