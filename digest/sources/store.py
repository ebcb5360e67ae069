"""The summary store: add or update summaries and categories (used by importers and the demo)."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from digest.sources.corrections import PUBLISHED, mark
from digest.store.db import Category
from digest.store.models import Summary

#: Fields of a summary record besides title, url, published_at and categories.
OPTIONAL_FIELDS = (
    "doi",
    "pmid",
    "journal",
    "year",
    "simple_explanation",
    "key_findings",
    "study_duration",
    "participants",
    "evidence_level",
    "study_type",
    "population",
    "sample_size",
    "open_access",
    "practical_implications",
    "limitations",
)


@dataclass(frozen=True)
class SummaryRecord:
    """A validated summary, ready to store."""

    title: str
    url: str
    published_at: dt.datetime
    categories: tuple[str, ...]  # slugs or names
    fields: Mapping[str, object] = field(default_factory=dict)


def slugify(name: str) -> str:
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "category"


def find_category(session: Session, label: str) -> Category | None:
    key = label.strip().lower()
    return session.scalar(
        select(Category).where(
            or_(func.lower(Category.slug) == key, func.lower(Category.name) == key)
        )
    )


def ensure_category(session: Session, label: str, name: str | None = None) -> Category:
    """The category with this slug or name (or with the slug this label makes), created on
    first sight."""
    category = find_category(session, label) or find_category(session, slugify(label)[:80])
    if category is None:
        category = Category(slug=slugify(label)[:80], name=(name or label.strip())[:200])
        session.add(category)
        session.flush()
    return category


def find_summary(
    session: Session, url: str, *, doi: object = None, pmid: object = None
) -> Summary | None:
    """The stored summary with this URL, else with this DOI (any case), else this PMID."""
    summary = session.scalar(select(Summary).where(Summary.url == url))
    if summary is None and isinstance(doi, str) and doi:
        by_doi = select(Summary).where(func.lower(Summary.doi) == doi.lower())
        summary = session.scalar(by_doi.order_by(Summary.id).limit(1))
    if summary is None and isinstance(pmid, str) and pmid:
        by_pmid = select(Summary).where(Summary.pmid == pmid)
        summary = session.scalar(by_pmid.order_by(Summary.id).limit(1))
    return summary


def upsert_summary(session: Session, record: SummaryRecord, *, now: dt.datetime) -> str:
    """Add the summary, or update the one with the same URL (else DOI, else PMID: a summary
    that moved takes the new URL). Returns "added", "updated" or "unchanged"."""
    summary = find_summary(
        session, record.url, doi=record.fields.get("doi"), pmid=record.fields.get("pmid")
    )
    categories = [ensure_category(session, label) for label in record.categories]
    values: dict[str, object] = {"title": record.title, "published_at": record.published_at}
    values.update({k: record.fields[k] for k in OPTIONAL_FIELDS if k in record.fields})
    status = record.fields.get("status")
    note = record.fields.get("correction_note")
    marked = isinstance(status, str) and status != PUBLISHED
    if summary is None:
        defaults: dict[str, object] = {
            "key_findings": [],
            "limitations": [],
            "simple_explanation": "",
        }
        summary = Summary(url=record.url, created_at=now, updated_at=now, **{**defaults, **values})
        summary.categories = categories
        session.add(summary)
        session.flush()
        if marked:
            assert isinstance(status, str)
            mark(session, summary, status, note if isinstance(note, str) else None, now=now)
        return "added"
    values["url"] = record.url
    changed = any(getattr(summary, k) != v for k, v in values.items())
    if {c.id for c in summary.categories} != {c.id for c in categories}:
        changed = True
    if marked:
        assert isinstance(status, str)
        before = (summary.status, summary.correction_note)
        mark(session, summary, status, note if isinstance(note, str) else None, now=now)
        changed = changed or before != (summary.status, summary.correction_note)
    if not changed:
        return "unchanged"
    for k, v in values.items():
        setattr(summary, k, v)
    summary.categories = categories
    summary.updated_at = now
    return "updated"


def list_summaries(
    session: Session,
    *,
    since: dt.datetime | None = None,
    category: str | None = None,
    limit: int = 50,
) -> tuple[list[Summary], int]:
    """The newest summaries (published after ``since``, in ``category``), at most ``limit``,
    and how many match in all. An unknown category raises :class:`LookupError`."""
    query = select(Summary)
    if since is not None:
        query = query.where(Summary.published_at > since)
    if category is not None:
        found = find_category(session, category)
        if found is None:
            raise LookupError(category)
        query = query.where(Summary.categories.any(Category.id == found.id))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Summary.published_at.desc(), Summary.id.desc()).limit(limit)
    ).all()
    return list(rows), total
