"""Import subscribers from a CSV file in one transaction: all or nothing, or with
``skip_invalid`` the good rows and a report of exactly which rows were left out and why.

The file may be in any encoding a spreadsheet saves (:mod:`digest.textio`) and is streamed
in batches. For each batch this module reads what is stored about its addresses, the pure
merge rules (:mod:`subscribers.merging`) decide what to create and change, and the
subscriber service (:func:`subscribers.service.write_import`) writes it: nothing is
written here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from digest import textio
from digest.errors import DataError, SubscriberError
from digest.store.db import Category, refresh_statistics
from subscribers import consent, merging, service, suppression
from subscribers.csvio import CategoryIndex, ImportRow, RowProblem, read_rows
from subscribers.merging import ImportResult
from subscribers.models import Subscriber
from subscribers.queries import known_subscribers

__all__ = ["BATCH", "ImportResult", "category_index", "import_csv"]

BATCH = 1000
#: Table statistics are refreshed after this many new subscribers, then each time it doubles.
ANALYZE_FIRST = 5000
_SUBSCRIBERS = Subscriber.metadata.tables[Subscriber.__tablename__]


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
    ``skip_invalid`` is not set. Raises :class:`DataError` (naming the file) when the file
    cannot be read as a whole."""
    version = consent.check_version(consent_version)
    try:
        stream, encoding = textio.open_text(path)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    with stream, factory() as session:
        session.begin()
        try:
            result = _import(session, stream, batch, now=now, confirmed=confirmed, version=version)
            result.encoding, result.guessed = encoding.name, encoding.guessed
            if dry_run or (result.invalid and not skip_invalid):
                session.rollback()
            else:
                service.record_import(
                    session, result, source=path.name, confirmed=confirmed, now=now
                )
                session.commit()
                result.written = True
        except DataError as exc:
            session.rollback()
            raise DataError(f"{path.name}: {exc}") from None
        except IntegrityError as exc:
            session.rollback()
            cause = str(exc.orig).partition("\n")[0]
            raise SubscriberError(
                "the subscribers changed while importing (another import, or someone signing "
                f"up?): nothing was imported; run it again ({cause})"
            ) from None
        except BaseException:
            session.rollback()
            raise
    return result


def _import(
    session: Session, stream: TextIO, batch: int, *, now: dt.datetime, confirmed: bool, version: str
) -> ImportResult:
    ignored, rows = read_rows(stream, category_index(session))
    result = ImportResult(ignored_columns=ignored)
    salt = suppression.email_salt(session)
    first_new_id = (session.scalar(select(func.max(Subscriber.id))) or 0) + 1
    options = merging.Options(now, confirmed, version, first_new_id)
    created, analyze_at = 0, ANALYZE_FIRST
    for chunk in _chunks(rows, batch):
        collapsed = merging.collapse(chunk)
        result.add_read(collapsed)
        if not collapsed.rows:
            continue
        plan = _plan(session, collapsed, salt, options)
        service.write_import(session, plan, now=options.now)
        session.expunge_all()
        result.add_plan(plan)
        created += len(plan.new)
        if created >= analyze_at:
            analyze_at *= 2
            refresh_statistics(session, _SUBSCRIBERS)
    return result


def _plan(
    session: Session, batch: merging.Collapsed, salt: bytes, options: merging.Options
) -> merging.BatchPlan:
    """The merge rules applied to ``batch`` and what is stored about its addresses."""
    known = known_subscribers(session, list(batch.rows))
    hashes = {key: suppression.email_hash(salt, key) for key in batch.rows if key not in known}
    wanted = [*hashes.values(), *(k.email_hash for k in known.values())]
    listed = {h: row.reason for h, row in suppression.suppressed_among(session, wanted).items()}
    known = {
        key: dataclasses.replace(k, listed=listed.get(k.email_hash)) for key, k in known.items()
    }
    return merging.plan_batch(batch.rows, known, hashes, listed, options)


def _chunks(
    rows: Iterable[ImportRow | RowProblem], size: int
) -> Iterator[list[ImportRow | RowProblem]]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk
