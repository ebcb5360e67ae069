"""Import subscribers from a CSV file: streamed, checked row by row, written in batches of
bulk inserts inside one transaction, so an import is all or nothing.

What happens to each row:

* a new address is created: ``active`` with ``confirmed`` (the admin vouches for the
  consent), otherwise ``pending`` until its owner confirms by email; a ``status`` of
  pending, unsubscribed, bounced or complained in the file is kept as it is;
* an address already known (in any letter case), or seen earlier in the file, is merged:
  categories added, a missing name or time zone filled in, an unsubscribed/bounced/complained
  status in the file applied;
* an address that unsubscribed, bounced, complained or was erased is never re-added:
  only its owner can subscribe again (the row is reported and left alone);
* a bad row is reported with its line number and the reason; with any bad row nothing is
  written unless ``skip_invalid``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import JSON, Table, func, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from digest.errors import DataError, SubscriberError
from digest.store.db import Base, Category
from subscribers import consent, suppression
from subscribers.csvio import CategoryIndex, ImportRow, RowProblem, read_rows
from subscribers.models import (
    SUPPRESSED,
    Consent,
    Status,
    Subscriber,
    Subscription,
    Suppression,
)
from subscribers.service import confirm, unsubscribe
from subscribers.tokens import new_token

BATCH = 1000
#: Table statistics are refreshed after this many new subscribers, then each time it doubles.
ANALYZE_FIRST = 5000
#: At most this many problems and notices are kept for the report (all are counted).
KEEP = 1000
_STRICTNESS = {
    None: 0,
    Status.ACTIVE.value: 1,
    Status.PENDING.value: 2,
    Status.UNSUBSCRIBED.value: 3,
    Status.BOUNCED.value: 4,
    Status.COMPLAINED.value: 5,
}
_CLOSED = (Status.UNSUBSCRIBED.value, *SUPPRESSED)
_OWNER_ONLY = " (only its owner can subscribe again, with the link in a confirmation email)"
_NOT_READDED = ": not re-added" + _OWNER_ONLY


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

    @property
    def pending(self) -> int:
        return self.created[Status.PENDING.value]


def category_index(session: Session) -> CategoryIndex:
    """Categories by lower-case slug and by lower-case name (a slug wins)."""
    index: dict[str, tuple[int, str]] = {}
    categories = session.scalars(select(Category).order_by(Category.id)).all()
    for category in categories:
        index[category.slug.lower()] = (category.id, category.slug)
    for category in categories:
        index.setdefault(category.name.lower(), (category.id, category.slug))
    return index


def import_csv(
    factory: sessionmaker[Session],
    path: Path,
    *,
    now: dt.datetime,
    confirmed: bool = False,
    skip_invalid: bool = False,
    dry_run: bool = False,
    consent_version: str | None = None,
    batch: int = BATCH,
) -> ImportResult:
    """Import ``path``; nothing is written on a dry run, or when a row is bad and
    ``skip_invalid`` is not set."""
    version = consent.check_version(consent_version)
    try:
        stream = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    with stream, factory() as session:
        session.begin()
        try:
            ignored, rows = read_rows(stream, category_index(session))
            result = ImportResult(ignored_columns=ignored)
            importer = _Importer(session, result, now=now, confirmed=confirmed, version=version)
            for chunk in _chunks(rows, batch):
                importer.apply(chunk)
            if dry_run or (result.invalid and not skip_invalid):
                session.rollback()
            else:
                session.commit()
                result.written = True
        except BaseException:
            session.rollback()
            raise
    return result


def _chunks(
    rows: Iterable[ImportRow | RowProblem], size: int
) -> Iterator[list[ImportRow | RowProblem]]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


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


def _insert(session: Session, model: type[Base], rows: Sequence[Mapping[str, object]]) -> None:
    """Bulk insert through Core (no per-row ORM bookkeeping): one executemany on SQLite,
    COPY on PostgreSQL (where an executemany costs a statement per row)."""
    if not rows:
        return
    table: Table = Base.metadata.tables[model.__tablename__]
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        connection.execute(insert(table), rows)
        return
    from psycopg import sql
    from psycopg.types.json import Json

    columns = list(rows[0])
    json_columns = {name for name in columns if isinstance(table.c[name].type, JSON)}
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    driver = connection.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([Json(row[c]) if c in json_columns else row[c] for c in columns])


def _refresh_statistics(session: Session) -> None:
    """On PostgreSQL, let the planner see the rows this transaction added: with statistics
    of a much smaller table it scans the whole table for each batch's address look-up."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(text("ANALYZE subscribers"))


def stricter(a: str | None, b: str | None) -> str | None:
    return a if _STRICTNESS[a] >= _STRICTNESS[b] else b


class _Importer:
    def __init__(
        self,
        session: Session,
        result: ImportResult,
        *,
        now: dt.datetime,
        confirmed: bool,
        version: str,
    ) -> None:
        self.session = session
        self.result = result
        self.now = now
        self.confirmed = confirmed
        self.version = version
        self.salt = suppression.email_salt(session)
        #: Subscribers with a larger id were created by this import.
        self.first_new_id = (session.scalar(select(func.max(Subscriber.id))) or 0) + 1
        self.created = 0
        self.analyze_at = ANALYZE_FIRST

    def apply(self, chunk: Sequence[ImportRow | RowProblem]) -> None:
        merged: dict[str, ImportRow] = {}
        for item in chunk:
            self.result.rows += 1
            if isinstance(item, RowProblem):
                self._problem(item)
            elif item.key in merged:
                self.result.duplicates += 1
                merged[item.key] = _combine(merged[item.key], item)
            else:
                merged[item.key] = item
        if not merged:
            return
        known = {
            s.email_key: s
            for s in self.session.scalars(
                select(Subscriber).where(Subscriber.email_key.in_(list(merged)))
            )
        }
        hashes = {key: suppression.email_hash(self.salt, key) for key in merged if key not in known}
        listed = suppression.suppressed_among(self.session, list(hashes.values()))
        new_rows: list[ImportRow] = []
        for key, row in merged.items():
            if key in known:
                self._merge(known[key], row)
            elif hashes[key] in listed:
                reason = listed[hashes[key]].reason
                self._keep_out(row, f"{row.email} is on the suppression list ({reason})")
            else:
                new_rows.append(row)
        self._create(new_rows, hashes)
        self.session.flush()
        self.session.expunge_all()
        self.created += len(new_rows)
        if self.created >= self.analyze_at:
            self.analyze_at *= 2
            _refresh_statistics(self.session)

    def _problem(self, problem: RowProblem) -> None:
        self.result.invalid += 1
        if len(self.result.problems) < KEEP:
            self.result.problems.append(problem)
        for label in problem.unknown_categories:
            if (
                label.lower() in self.result.unknown_categories
                or len(self.result.unknown_categories) < KEEP
            ):
                self.result.unknown_categories[label.lower()[:60]] += 1

    def _keep_out(self, row: ImportRow, why: str) -> None:
        self.result.kept_out += 1
        self._notice(row, why + _NOT_READDED)

    def _notice(self, row: ImportRow, why: str) -> None:
        if len(self.result.notices) < KEEP:
            self.result.notices.append(RowProblem(row.line, why))

    def _status_for_new(self, row: ImportRow) -> str:
        if row.status in (*_CLOSED, Status.PENDING.value):
            return row.status
        return Status.ACTIVE.value if self.confirmed else Status.PENDING.value

    def _create(self, rows: list[ImportRow], hashes: dict[str, str]) -> None:
        if not rows:
            return
        values = [self._new_subscriber(row, hashes[row.key]) for row in rows]
        _insert(self.session, Subscriber, values)
        ids: dict[str, int] = dict(
            self.session.execute(
                select(Subscriber.email_key, Subscriber.id).where(
                    Subscriber.email_key.in_([row.key for row in rows])
                )
            ).all()
        )
        subscriptions = [
            {"subscriber_id": ids[row.key], "category_id": category_id}
            for row in rows
            for category_id in row.category_ids
        ]
        if subscriptions:
            _insert(self.session, Subscription, subscriptions)
        consents = []
        suppressions = []
        for row, new in zip(rows, values, strict=True):
            active = new["status"] == Status.ACTIVE
            consents.append(
                {
                    "subscriber_id": ids[row.key],
                    "created_at": row.consent_at or row.created_at or self.now,
                    "source": row.consent_source or "import",
                    "categories": list(row.category_slugs),
                    "text_version": row.consent_version or self.version,
                    "confirmed_at": new["confirmed_at"] if active else None,
                    "confirmed_by": "import" if active else None,
                }
            )
            if new["status"] in SUPPRESSED:
                suppressions.append(
                    {
                        "email_hash": new["email_hash"],
                        "reason": new["status"],
                        "created_at": self.now,
                    }
                )
        _insert(self.session, Consent, consents)
        _insert(self.session, Suppression, suppressions)

    def _new_subscriber(self, row: ImportRow, address_hash: str) -> dict[str, object]:
        now = self.now
        status = self._status_for_new(row)
        active = status == Status.ACTIVE
        self.result.created[status] += 1
        return {
            "email": row.email,
            "email_key": row.key,
            "email_hash": address_hash,
            "name": row.name,
            "status": status,
            "token": new_token(),
            "created_at": row.created_at or now,
            "confirmed_at": (row.confirmed_at or now) if active else row.confirmed_at,
            "unsubscribed_at": (row.unsubscribed_at or now) if status in _CLOSED else None,
            "active_since": now if active else None,
            "timezone": row.timezone,
            "frequency": row.frequency or "weekly",
        }

    def _merge(self, subscriber: Subscriber, row: ImportRow) -> None:
        """Merge ``row`` into a subscriber known before the import or made by an earlier row."""
        in_file = subscriber.id >= self.first_new_id
        if in_file:
            self.result.duplicates += 1
        if subscriber.status in _CLOSED or row.status in _CLOSED:
            outcome = self._close(subscriber, row, in_file)
        else:
            outcome = self._update(subscriber, row)
        if in_file:
            return
        if outcome == "kept_out":
            self.result.kept_out += 1
        elif outcome == "merged":
            self.result.merged += 1
        else:
            self.result.unchanged += 1

    def _close(self, subscriber: Subscriber, row: ImportRow, in_file: bool) -> str:
        """A closed status on either side: the stricter one wins, nothing is reopened."""
        strictest = stricter(subscriber.status, row.status)
        if strictest == subscriber.status:
            if in_file or row.status in _CLOSED:
                return "unchanged"
            when = subscriber.unsubscribed_at
            since = f" since {when:%Y-%m-%d}" if when else ""
            self._notice(row, f"{subscriber.email} is {subscriber.status}{since}{_NOT_READDED}")
            return "kept_out"
        assert strictest is not None
        if subscriber.status not in _CLOSED:
            unsubscribe(self.session, subscriber, now=self.now)
        subscriber.status = strictest
        subscriber.unsubscribed_at = row.unsubscribed_at or subscriber.unsubscribed_at or self.now
        if strictest in SUPPRESSED:
            suppression.suppress(self.session, subscriber.email_hash, strictest, now=self.now)
        return "merged"

    def _update(self, subscriber: Subscriber, row: ImportRow) -> str:
        """An active or pending subscriber: categories added, gaps filled, maybe confirmed."""
        changed = False
        have = {c.id for c in subscriber.categories}
        missing = [cid for cid in row.category_ids if cid not in have]
        if missing:
            added = self.session.scalars(select(Category).where(Category.id.in_(missing)))
            subscriber.categories = [*subscriber.categories, *added]
            changed = True
        if row.name and not subscriber.name:
            subscriber.name, changed = row.name, True
        if row.timezone and not subscriber.timezone:
            subscriber.timezone, changed = row.timezone, True
        activate = self.confirmed and subscriber.status == Status.PENDING
        activate = activate and row.status != Status.PENDING
        if changed or activate:
            self.session.flush()
            consent.record(
                self.session,
                subscriber.id,
                source="import",
                categories=[c.slug for c in subscriber.categories],
                now=self.now,
                version=row.consent_version or self.version,
            )
        if activate:
            try:
                confirm(self.session, subscriber, now=self.now, by="import")
            except SubscriberError as exc:
                self._notice(row, str(exc).split(":", 1)[0] + ": left pending" + _OWNER_ONLY)
                return "kept_out"
            subscriber.confirmed_at = row.confirmed_at or self.now
            changed = True
        return "merged" if changed else "unchanged"
