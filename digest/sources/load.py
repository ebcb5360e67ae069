"""Import summaries from a source in one transaction: all or nothing (unless asked to skip
invalid records), safe to run again.

Parsing and checking are pure (:mod:`digest.sources`); this module matches the checked
records to stored summaries (canonical URL, else DOI, else PMID), resolves their categories
and stores them with :func:`digest.sources.store.upsert_summary`. A stored summary keeps its
publish time: selection decides what is new by it, so moving it would send a summary again
(or never).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from digest.errors import DigestError
from digest.sources import Problem, parse_source
from digest.sources.catmap import CategoryMap
from digest.sources.store import (
    SummaryRecord,
    find_category,
    find_summary,
    slugify,
    upsert_summary,
)
from digest.sources.validate import Checked, ValidRecord, check
from digest.store.db import Category


@dataclass(frozen=True)
class ImportOptions:
    default_category: str | None = None
    category_map: CategoryMap | None = None
    skip_invalid: bool = False
    dry_run: bool = False
    lenient: bool = False


@dataclass
class ImportReport:
    format: str = ""
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Problem] = field(default_factory=list)  # invalid records
    skipped: list[Problem] = field(default_factory=list)  # valid, but no known category
    warnings: list[Problem] = field(default_factory=list)
    duplicates: int = 0
    new_categories: list[str] = field(default_factory=list)  # "Name (slug)"
    unknown_categories: dict[str, int] = field(default_factory=dict)  # label -> items
    dry_run: bool = False
    skip_invalid: bool = False

    @property
    def failed(self) -> bool:
        """Invalid records without --skip-invalid: nothing was stored."""
        return bool(self.rejected) and not self.skip_invalid

    @property
    def skipped_count(self) -> int:
        invalid = len(self.rejected) if self.skip_invalid else 0
        return invalid + len(self.skipped) + self.duplicates

    @property
    def counts(self) -> str:
        return (
            f"{self.added} added, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.skipped_count} skipped"
        )


def import_summaries(
    factory: sessionmaker[Session],
    data: bytes,
    *,
    fmt: str,
    zone: dt.tzinfo,
    now: dt.datetime,
    options: ImportOptions,
) -> ImportReport:
    """Parse, check and store ``data`` in one transaction, committed only when nothing was
    rejected (or ``skip_invalid``) and not ``dry_run``. Raises :class:`DataError` when the
    source as a whole cannot be read (:class:`digest.errors.DataError`); rejected records
    are in the report."""
    checked = check(parse_source(data, fmt, lenient=options.lenient), zone=zone, now=now)
    session = factory()
    try:
        report = apply(session, checked, options=options, now=now)
        if report.failed or options.dry_run:
            session.rollback()
        else:
            session.commit()
    except IntegrityError:
        session.rollback()
        raise DigestError(
            "the summaries changed while importing (is another import running?): "
            "nothing was imported; run it again"
        ) from None
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
    return report


def apply(
    session: Session, checked: Checked, *, options: ImportOptions, now: dt.datetime
) -> ImportReport:
    """Store the checked records in ``session`` (the caller commits or rolls back)."""
    report = ImportReport(
        format=checked.format,
        rejected=list(checked.rejects),
        warnings=list(checked.warnings),
        duplicates=checked.duplicates,
        dry_run=options.dry_run,
        skip_invalid=options.skip_invalid,
    )
    categories = _CategoryResolver(session, options, report)
    touched: dict[int, str] = {}
    for valid in checked.records:
        slugs = categories.resolve(valid.record.categories) or _stored_slugs(session, valid)
        if not slugs:
            report.skipped.append(Problem(valid.position, categories.why_none(valid)))
            continue
        record = replace(valid.record, categories=tuple(slugs))
        fields = record.fields
        existing = find_summary(session, record.url, doi=fields.get("doi"), pmid=fields.get("pmid"))
        if existing is not None:
            if existing.id in touched:
                report.rejected.append(
                    Problem(valid.position, f"same stored summary as {touched[existing.id]}")
                )
                continue
            touched[existing.id] = valid.position
            record = _keep_published(record, valid, existing.published_at, report)
        outcome = upsert_summary(session, record, now=now)
        if existing is None:
            added = find_summary(session, record.url)
            if added is not None:
                touched[added.id] = valid.position
        setattr(report, outcome, getattr(report, outcome) + 1)
    return report


def _stored_slugs(session: Session, valid: ValidRecord) -> list[str]:
    """A correction or retraction that names no category keeps the stored summary's."""
    fields = valid.record.fields
    if valid.record.categories or not fields.get("status"):
        return []
    url = valid.record.url
    stored = find_summary(session, url, doi=fields.get("doi"), pmid=fields.get("pmid"))
    return [c.slug for c in stored.categories] if stored is not None else []


def _keep_published(
    record: SummaryRecord, valid: ValidRecord, stored: dt.datetime, report: ImportReport
) -> SummaryRecord:
    """``record`` with the stored publish time, and a warning when the source's differs."""
    if valid.dated and record.published_at != stored:
        report.warnings.append(
            Problem(
                valid.position,
                f"the source says published {_utc(record.published_at)}, stored as "
                f"{_utc(stored)}: kept the stored time (readers got it by that date)",
            )
        )
    return replace(record, published_at=stored)


def _utc(moment: dt.datetime) -> str:
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


class _CategoryResolver:
    """Source labels -> slugs of the site's categories, creating them on first sight.

    Without a category map every label is a category (matched by slug or name, any case,
    else created). With a map, a label is mapped, or used if the site already has it;
    others are unknown and left out. An item left with none takes the default category.
    """

    def __init__(self, session: Session, options: ImportOptions, report: ImportReport) -> None:
        self.session = session
        self.map = options.category_map
        self.default = options.default_category
        self.report = report
        self.cache: dict[str, Category | None] = {}

    def resolve(self, labels: tuple[str, ...]) -> list[str]:
        slugs: list[str] = []
        for label in labels:
            targets: tuple[str, ...] = (label,)
            if self.map is not None:
                mapped = self.map.lookup(label)
                if mapped is None and self._find(label) is None:
                    self.report.unknown_categories[label] = (
                        self.report.unknown_categories.get(label, 0) + 1
                    )
                    continue
                targets = mapped if mapped is not None else targets
            for target in targets:
                slug = self._ensure(target).slug
                if slug not in slugs:
                    slugs.append(slug)
        if not slugs and self.default:
            slugs.append(self._ensure(self.default).slug)
        return slugs

    def why_none(self, valid: ValidRecord) -> str:
        labels = valid.record.categories
        if not labels:
            return "skipped: no category (give one, or use --default-category)"
        shown = ", ".join(labels[:5])
        return f"skipped: no known category ({shown}; see --category-map, --default-category)"

    def _find(self, label: str) -> Category | None:
        key = label.casefold()
        if key not in self.cache:
            self.cache[key] = find_category(self.session, label) or find_category(
                self.session, slugify(label)[:80]
            )
        return self.cache[key]

    def _ensure(self, label: str) -> Category:
        category = self._find(label)
        if category is None:
            category = Category(slug=slugify(label)[:80], name=display_name(label))
            self.session.add(category)
            self.session.flush()
            self.cache[label.casefold()] = category
            self.report.new_categories.append(f"{category.name} ({category.slug})")
        return category


def display_name(label: str) -> str:
    """The name a new category gets: the label, or for a slug (``spinal-cord``) words."""
    name = label.strip()[:200]
    if name == slugify(name):
        name = name.replace("-", " ").capitalize()
    return name


def failure_message(report: ImportReport) -> str:
    """The one line the CLI ends with when invalid records stopped the import."""
    others = report.added + report.updated + report.unchanged
    return (
        f"{len(report.rejected)} record{'s' if len(report.rejected) != 1 else ''} rejected; "
        f"nothing was imported (fix {'them' if len(report.rejected) != 1 else 'it'}, or use "
        f"--skip-invalid to import the other {others})"
    )
