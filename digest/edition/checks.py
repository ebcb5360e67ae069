"""Run the preflight checks on this week's digests: ``digest check`` and every send.

Variants are rendered exactly as a send renders them
(:func:`digest.edition.variants.render_variants`), then each goes through the pure checks of
:mod:`digest.render.preflight`; the digest with the most summaries also goes through MJML's
official validator (once per template version and process).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings
from digest.edition.plan import dry_plan, get_or_create_edition, ordered_categories
from digest.edition.selection import VariantKey
from digest.edition.variants import Built, personal_links, render_variants
from digest.edition.when import Schedule, current_key
from digest.errors import DigestError, PreflightError
from digest.render import mjml_lint
from digest.render.cards import CategoryRef, DigestContent, build_content, load_cards
from digest.render.preflight import summary_warnings, variant_problems
from digest.render.renderer import DIGEST_MJML, Renderer
from digest.store.models import Edition, EditionStatus, Summary

log = logging.getLogger(__name__)
NOT_VALIDATED = mjml_lint.Validation("skipped", "no digest to validate")
_validated: dict[str, mjml_lint.Validation] = {}


@dataclass(frozen=True)
class WeekPlan:
    """This period's edition as a dry run sees it: who would get which digest."""

    key: str
    cutoff: dt.datetime
    status: str | None  # of the edition, or None if it does not exist yet
    recipients: Counter[VariantKey]

    def numbered(self) -> list[tuple[int, VariantKey]]:
        """Variants numbered as ``digest send --dry-run`` shows them (most readers first)."""
        return [(n, key) for n, (key, _) in enumerate(self.recipients.most_common(), start=1)]


@dataclass(frozen=True)
class VariantCheck:
    number: int
    key: VariantKey
    categories: tuple[str, ...]
    subject: str  # "" when it does not render
    problems: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"variant {self.number} ({', '.join(self.categories)})"


@dataclass
class Checked:
    """The outcome of checking some variants."""

    built: Built
    variants: list[VariantCheck]
    contents: dict[VariantKey, DigestContent]
    warnings: list[str] = field(default_factory=list)
    validation: mjml_lint.Validation = NOT_VALIDATED

    @property
    def problems(self) -> list[str]:
        """Each distinct problem once, saying which variants have it."""
        where: dict[str, list[VariantCheck]] = {}
        for variant in self.variants:
            for problem in variant.problems:
                where.setdefault(problem, []).append(variant)
        lines = []
        for problem, variants in where.items():
            if len(variants) == 1:
                lines.append(f"{variants[0].label}: {problem}")
            elif len(variants) == len(self.variants):
                lines.append(f"{problem} (all {len(variants)} variants)")
            else:
                numbers = ", ".join(str(v.number) for v in variants)
                lines.append(f"{problem} (variants {numbers})")
        return [*lines, *self.validation.problems]


def plan_week(factory: sessionmaker[Session], settings: Settings, now: dt.datetime) -> WeekPlan:
    """The variants of this period's edition still to be sent, as a dry run plans them."""
    schedule = Schedule.from_settings(settings)
    key = current_key(now, schedule)
    edition, _ = get_or_create_edition(factory, key, now=now, create=False)
    status = edition.status if edition is not None else None
    if edition is None:
        edition = Edition(key=key, cutoff=now, created_at=now, status=EditionStatus.OPEN.value)
    _, counts = dry_plan(factory, settings, edition, now=now)
    return WeekPlan(key, edition.cutoff, status, counts)


def sample_key(session: Session, settings: Settings, cutoff: dt.datetime) -> VariantKey | None:
    """A stand-in digest when nobody gets one: the latest summaries in every category."""
    categories = tuple(sorted(c.id for c in ordered_categories(session)))
    ids = session.scalars(
        select(Summary.id)
        .where(Summary.published_at <= cutoff, Summary.categories.any())
        .order_by(Summary.published_at.desc(), Summary.id.desc())
        .limit(settings.card_cap + 1)
    ).all()
    return (categories, tuple(ids)) if ids and categories else None


def contents_of(
    session: Session, settings: Settings, keys: Sequence[VariantKey]
) -> dict[VariantKey, DigestContent]:
    """What each digest shows, built as :func:`render_variants` builds it."""
    categories = [CategoryRef(c.id, c.slug, c.name) for c in ordered_categories(session)]
    cards = load_cards(session, {i for _, items in keys for i in items})
    return {
        key: build_content(key[1], key[0], cards, categories, settings.card_cap) for key in keys
    }


def _render_each(
    session: Session,
    renderer: Renderer,
    settings: Settings,
    variants: Sequence[tuple[int, VariantKey]],
    date: dt.datetime,
    web_ids: Mapping[VariantKey, str] | None = None,
) -> tuple[Built, dict[VariantKey, str]]:
    """Render all at once; if one fails, render each alone to find every failure."""
    keys = [k for _, k in variants]
    try:
        return render_variants(session, renderer, settings, keys, date=date, web_ids=web_ids), {}
    except DigestError:
        pass
    built: Built = {}
    failures: dict[VariantKey, str] = {}
    for _, key in variants:
        try:
            built.update(
                render_variants(session, renderer, settings, [key], date=date, web_ids=web_ids)
            )
        except DigestError as exc:
            failures[key] = str(exc)
    return built, failures


def check_variants(
    session: Session,
    settings: Settings,
    variants: Sequence[tuple[int, VariantKey]],
    *,
    date: dt.datetime,
    validate: bool = True,
    web_ids: Mapping[VariantKey, str] | None = None,
) -> Checked:
    """Render and check each numbered variant; nothing is raised for what is found."""
    renderer = Renderer(settings)
    built, failures = _render_each(session, renderer, settings, variants, date, web_ids)
    contents = contents_of(session, settings, [k for _, k in variants])
    ordered = ordered_categories(session)
    checked = Checked(built=built, variants=[], contents=contents)
    warnings: dict[str, None] = {}
    for number, key in variants:
        categories = tuple(c.name for c in ordered if c.id in key[0])
        if key in failures:
            checked.variants.append(VariantCheck(number, key, categories, "", (failures[key],)))
            continue
        rendered, template = built[key]
        links = personal_links(settings, template.placeholder, (web_ids or {}).get(key))
        problems = variant_problems(rendered, contents[key], links, settings.postal_address)
        checked.variants.append(
            VariantCheck(number, key, categories, rendered.subject, tuple(problems))
        )
        warnings.update(dict.fromkeys(summary_warnings(contents[key])))
    checked.warnings = list(warnings)
    if validate and built:
        largest = max(built, key=lambda k: (len(k[1]), k))
        links = personal_links(settings, built[largest][1].placeholder)
        checked.validation = validate_mjml(renderer, renderer.render_mjml(contents[largest], links))
    return checked


def validate_mjml(renderer: Renderer, source: str) -> mjml_lint.Validation:
    """MJML's official validator on ``source``; once per template version in a process."""
    path = renderer.templates_dir / DIGEST_MJML
    template = path.read_text(encoding="utf-8")
    command, detail = mjml_lint.find_validator()
    digest_ = hashlib.sha256(f"{command}\0{detail}\0{template}".encode()).hexdigest()
    if digest_ not in _validated:
        _validated[digest_] = mjml_lint.validate(source, path, template)
    return _validated[digest_]


def render_checked(
    session: Session,
    settings: Settings,
    variants: Sequence[tuple[int, VariantKey]],
    *,
    date: dt.datetime,
    web_ids: Mapping[VariantKey, str] | None = None,
) -> Built:
    """What a send does before its first message: render and build every variant, run every
    preflight check, and raise :class:`PreflightError` listing every problem found."""
    if not variants:
        return {}
    checked = check_variants(session, settings, variants, date=date, web_ids=web_ids)
    if checked.problems:
        raise PreflightError(checked.problems)
    for warning in checked.warnings:
        log.info("preflight warning: %s", warning)
    return checked.built


@dataclass
class CheckReport:
    """What ``digest check`` found for this period's edition."""

    plan: WeekPlan
    templates_dir: Path
    checked: Checked
    sample: bool  # nobody gets a digest this week: a sample was checked instead

    @property
    def problems(self) -> list[str]:
        return self.checked.problems


def run_checks(
    factory: sessionmaker[Session], settings: Settings, *, now: dt.datetime
) -> CheckReport:
    """Every preflight check on every variant of this period's edition (or on a sample)."""
    plan = plan_week(factory, settings, now)
    variants = plan.numbered()
    sample = False
    with factory() as session:
        if not variants:
            key = sample_key(session, settings, plan.cutoff)
            variants, sample = ([(1, key)] if key else []), True
        checked = check_variants(session, settings, variants, date=now)
    directory = Renderer(settings).templates_dir
    return CheckReport(plan=plan, templates_dir=directory, checked=checked, sample=sample)
