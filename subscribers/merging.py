"""The merge rules of a subscriber import, pure: checked rows and what is stored in, frozen
rows to write out (no database, no clock: ``now`` is given).

What happens to each row:

* a new address is created: ``active`` with ``confirmed`` (the admin vouches for the
  consent), otherwise ``pending`` until its owner confirms by email; a ``status`` of
  pending, unsubscribed, bounced or complained in the file is kept as it is;
* an address already known (in any letter case), or seen earlier in the file, is merged:
  categories added, a missing name or time zone filled in, an unsubscribed/bounced/complained
  status in the file applied;
* an address that unsubscribed, bounced, complained or was erased is never re-added:
  only its owner can subscribe again (the row is reported and left alone);
* a bad row is reported with its line number and the reason.

:func:`collapse` joins the rows of one batch that share an address; :func:`plan_batch`
decides, against the stored state of those addresses (:class:`Known`), what to create and
what to change; :func:`subscribers.service.write_import` writes that.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from subscribers.csvio import ImportRow, RowProblem
from subscribers.models import SUPPRESSED, Status
from subscribers.rules import CLOSED, confirm_refusal, stricter

#: At most this many problems and notices are kept for the report (all are counted).
KEEP = 1000
_OWNER_ONLY = " (only its owner can subscribe again, with the link in a confirmation email)"
_NOT_READDED = ": not re-added" + _OWNER_ONLY


@dataclass(frozen=True, slots=True)
class Options:
    now: dt.datetime
    confirmed: bool  # the admin vouches for everyone's consent: new people are active
    version: str  # consent text version for rows that name none
    #: Subscribers with this id or a larger one were created by this import.
    first_new_id: int


@dataclass(frozen=True, slots=True)
class Known:
    """A stored subscriber whose address is in the batch."""

    id: int
    email: str
    email_hash: str
    status: str
    name: str | None
    timezone: str | None
    category_ids: frozenset[int]
    unsubscribed_at: dt.datetime | None
    #: Why the address is on the suppression list, if it is.
    listed: str | None = None


@dataclass(frozen=True, slots=True)
class NewConsent:
    created_at: dt.datetime
    source: str
    categories: tuple[str, ...]
    text_version: str
    confirmed_at: dt.datetime | None
    confirmed_by: str | None


@dataclass(frozen=True, slots=True)
class NewSubscriber:
    """A subscriber to create, with their subscriptions, consent record and, for a
    bounced or complained status, their place on the suppression list."""

    email: str
    key: str
    email_hash: str
    name: str | None
    status: str
    created_at: dt.datetime
    confirmed_at: dt.datetime | None
    unsubscribed_at: dt.datetime | None
    active_since: dt.datetime | None
    timezone: str | None
    frequency: str
    category_ids: tuple[int, ...]
    consent: NewConsent

    @property
    def suppressed(self) -> bool:
        return self.status in SUPPRESSED


@dataclass(frozen=True, slots=True)
class Close:
    """Give a known subscriber a stricter closed status (unsubscribed, bounced...)."""

    subscriber_id: int
    status: str
    unsubscribed_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Update:
    """Add categories to an active or pending subscriber, fill gaps, maybe confirm."""

    subscriber_id: int
    add_category_ids: tuple[int, ...]
    name: str | None  # set when they have none
    timezone: str | None  # set when they have none
    consent_version: str | None  # record their (new) choice of categories with this text
    confirmed_at: dt.datetime | None  # make them active, with this confirmation time


@dataclass(frozen=True)
class Collapsed:
    """One batch of parsed rows: the valid ones by address key, rows with the same key in
    the batch joined, and the refused ones."""

    rows: dict[str, ImportRow]
    problems: tuple[RowProblem, ...]
    read: int
    duplicates: int


@dataclass(frozen=True)
class BatchPlan:
    new: tuple[NewSubscriber, ...] = ()
    changes: tuple[Close | Update, ...] = ()
    outcomes: Counter[str] = field(default_factory=Counter)  # merged, unchanged, kept_out...
    notices: tuple[RowProblem, ...] = ()


@dataclass
class ImportResult:
    rows: int = 0  # data rows read (blank lines not counted)
    created: Counter[str] = field(default_factory=Counter)  # new subscribers by status
    merged: int = 0  # rows that changed a subscriber known before the import
    unchanged: int = 0  # rows about a known subscriber that changed nothing
    duplicates: int = 0  # rows merged into an earlier row of the same file
    kept_out: int = 0  # unsubscribed, suppressed or erased addresses not re-added
    invalid: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    notices: list[RowProblem] = field(default_factory=list)
    unknown_categories: Counter[str] = field(default_factory=Counter)
    ignored_columns: list[str] = field(default_factory=list)
    written: bool = False
    encoding: str = "UTF-8"
    #: The encoding was guessed (the file is not UTF-8 and has no UTF-16 byte-order mark).
    guessed: bool = False

    @property
    def pending(self) -> int:
        return self.created[Status.PENDING.value]

    @property
    def read_as(self) -> str | None:
        """What the summary line says about the encoding, when it was guessed."""
        return f"read as {self.encoding} (guessed)" if self.guessed else None

    def add_read(self, batch: Collapsed) -> None:
        self.rows += batch.read
        self.duplicates += batch.duplicates
        for problem in batch.problems:
            self.invalid += 1
            if len(self.problems) < KEEP:
                self.problems.append(problem)
            for label in problem.unknown_categories:
                key = label.lower()[:60]
                if key in self.unknown_categories or len(self.unknown_categories) < KEEP:
                    self.unknown_categories[key] += 1

    def add_plan(self, plan: BatchPlan) -> None:
        self.created.update(new.status for new in plan.new)
        self.merged += plan.outcomes["merged"]
        self.unchanged += plan.outcomes["unchanged"]
        self.kept_out += plan.outcomes["kept_out"]
        self.duplicates += plan.outcomes["duplicates"]
        self.notices.extend(plan.notices[: max(0, KEEP - len(self.notices))])


def collapse(batch: Sequence[ImportRow | RowProblem]) -> Collapsed:
    merged: dict[str, ImportRow] = {}
    problems: list[RowProblem] = []
    duplicates = 0
    for item in batch:
        if isinstance(item, RowProblem):
            problems.append(item)
        elif item.key in merged:
            duplicates += 1
            merged[item.key] = _combine(merged[item.key], item)
        else:
            merged[item.key] = item
    return Collapsed(merged, tuple(problems), len(batch), duplicates)


def _combine(first: ImportRow, other: ImportRow) -> ImportRow:
    """Two rows of one address: categories joined, gaps filled, the stricter status."""
    ids = dict.fromkeys(first.category_ids + other.category_ids)
    slugs = dict.fromkeys(first.category_slugs + other.category_slugs)
    return dataclasses.replace(
        first,
        name=first.name or other.name,
        category_ids=tuple(sorted(ids)),
        category_slugs=tuple(sorted(slugs)),
        status=stricter(first.status, other.status),
        timezone=first.timezone or other.timezone,
        frequency=first.frequency or other.frequency,
        created_at=first.created_at or other.created_at,
        confirmed_at=first.confirmed_at or other.confirmed_at,
        unsubscribed_at=first.unsubscribed_at or other.unsubscribed_at,
    )


def plan_batch(
    rows: Mapping[str, ImportRow],
    known: Mapping[str, Known],
    hashes: Mapping[str, str],
    listed: Mapping[str, str],
    options: Options,
) -> BatchPlan:
    """What to store for ``rows`` (by address key): ``known`` are the stored subscribers
    among them, ``hashes`` the address hashes of the others and ``listed`` the suppression
    reason of those hashes that are on the list."""
    planner = _Planner(options)
    for key, row in rows.items():
        if key in known:
            planner.merge(known[key], row)
        elif hashes[key] in listed:
            planner.keep_out(row, f"{row.email} is on the suppression list ({listed[hashes[key]]})")
        else:
            planner.create(row, hashes[key])
    return BatchPlan(
        tuple(planner.new), tuple(planner.changes), planner.outcomes, tuple(planner.notes)
    )


class _Planner:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.new: list[NewSubscriber] = []
        self.changes: list[Close | Update] = []
        self.outcomes: Counter[str] = Counter()
        self.notes: list[RowProblem] = []

    def notice(self, row: ImportRow, why: str) -> None:
        self.notes.append(RowProblem(row.line, why))

    def keep_out(self, row: ImportRow, why: str) -> None:
        self.outcomes["kept_out"] += 1
        self.notice(row, why + _NOT_READDED)

    def create(self, row: ImportRow, address_hash: str) -> None:
        now = self.options.now
        if row.status in (*CLOSED, Status.PENDING.value):
            status = row.status
        else:
            status = Status.ACTIVE.value if self.options.confirmed else Status.PENDING.value
        active = status == Status.ACTIVE
        confirmed_at = (row.confirmed_at or now) if active else row.confirmed_at
        self.new.append(
            NewSubscriber(
                email=row.email,
                key=row.key,
                email_hash=address_hash,
                name=row.name,
                status=status,
                created_at=row.created_at or now,
                confirmed_at=confirmed_at,
                unsubscribed_at=(row.unsubscribed_at or now) if status in CLOSED else None,
                active_since=now if active else None,
                timezone=row.timezone,
                frequency=row.frequency or "weekly",
                category_ids=row.category_ids,
                consent=NewConsent(
                    created_at=row.consent_at or row.created_at or now,
                    source=row.consent_source or "import",
                    categories=row.category_slugs,
                    text_version=row.consent_version or self.options.version,
                    confirmed_at=confirmed_at if active else None,
                    confirmed_by="import" if active else None,
                ),
            )
        )

    def merge(self, known: Known, row: ImportRow) -> None:
        """Merge ``row`` into a subscriber known before the import or made by an earlier
        batch of it (then it counts as a repeat in the file)."""
        in_file = known.id >= self.options.first_new_id
        if in_file:
            self.outcomes["duplicates"] += 1
        if known.status in CLOSED or row.status in CLOSED:
            outcome = self._close(known, row, in_file)
        else:
            outcome = self._update(known, row)
        if not in_file:
            self.outcomes[outcome] += 1

    def _close(self, known: Known, row: ImportRow, in_file: bool) -> str:
        """A closed status on either side: the stricter one wins, nothing is reopened."""
        strictest = stricter(known.status, row.status)
        if strictest == known.status:
            if in_file or row.status in CLOSED:
                return "unchanged"
            when = known.unsubscribed_at
            since = f" since {when:%Y-%m-%d}" if when else ""
            self.notice(row, f"{known.email} is {known.status}{since}{_NOT_READDED}")
            return "kept_out"
        assert strictest is not None
        # unsubscribing an open subscriber stamps them with now
        before = known.unsubscribed_at if known.status in CLOSED else None
        when = row.unsubscribed_at or before or self.options.now
        self.changes.append(Close(known.id, strictest, when))
        return "merged"

    def _update(self, known: Known, row: ImportRow) -> str:
        """An active or pending subscriber: categories added, gaps filled, maybe confirmed."""
        missing = tuple(cid for cid in row.category_ids if cid not in known.category_ids)
        name = row.name if row.name and not known.name else None
        zone = row.timezone if row.timezone and not known.timezone else None
        changed = bool(missing or name or zone)
        activate = self.options.confirmed and known.status == Status.PENDING
        activate = activate and row.status != Status.PENDING
        refused = None
        if activate:
            refused = confirm_refusal(
                known.status, known.unsubscribed_at, known.listed, by="import"
            )
        if changed or activate:
            version = row.consent_version or self.options.version
            confirmed_at = (row.confirmed_at or self.options.now) if activate else None
            self.changes.append(
                Update(known.id, missing, name, zone, version, None if refused else confirmed_at)
            )
        if refused:
            self.notice(row, f"{known.email} {refused}: left pending{_OWNER_ONLY}")
            return "kept_out"
        return "merged" if changed or activate else "unchanged"
