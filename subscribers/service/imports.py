"""The subscriber service's record of imports: one ``imports`` row per CSV import written,
so an admin can see later what each import did (the admin console's "recent imports")."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from subscribers.merging import ImportResult
from subscribers.models import ImportRecord

#: The longest file name kept.
SOURCE_CHARS = 200


def record_import(
    session: Session, result: ImportResult, *, source: str, confirmed: bool, now: dt.datetime
) -> ImportRecord:
    """Record an import in its own transaction, before it commits: the record exists
    exactly when the import was written. ``source`` is the file's name (no folder: a
    path can name a person's home directory)."""
    name = source.replace("\\", "/").rpartition("/")[2][:SOURCE_CHARS] or "(stdin)"
    row = ImportRecord(
        created_at=now,
        source=name,
        confirmed=confirmed,
        rows=result.rows,
        created={status: count for status, count in sorted(result.created.items()) if count},
        merged=result.merged,
        unchanged=result.unchanged,
        duplicates=result.duplicates,
        kept_out=result.kept_out,
        invalid=result.invalid,
    )
    session.add(row)
    session.flush()
    return row
