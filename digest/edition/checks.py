"""Run the preflight checks on this week's digests: ``digest check`` and every send.

The render step (:func:`digest.edition.variants.render_each`) hands over what it rendered,
with each variant's content; :func:`check_renders` puts each through the pure checks of
:mod:`digest.render.preflight` without reading anything again (or takes what a render
helper found on that very render, :mod:`digest.edition.render_pool`), and the digest with the
most summaries also through MJML's official validator (once per template version and
process). :func:`preflight` is what a send does with the outcome.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings
from digest.edition.build import personal_links, problems_of
from digest.edition.variants import Built, Renders, render_each
from digest.errors import PreflightError
from digest.planning.catalog import load_contents, sample_key
from digest.planning.plan import EditionRef, dry_plan, get_or_create_edition
from digest.planning.selection import VariantKey
from digest.planning.when import Schedule, current_key
from digest.render import mjml_lint
from digest.render.cards import DigestContent
from digest.render.preflight import summary_warnings
from digest.render.renderer import DIGEST_MJML, Renderer

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
    found, _ = get_or_create_edition(factory, key, now=now, create=False)
    status = found.status if found is not None else None
    edition = found or EditionRef.unsaved(key, now)
    _, counts = dry_plan(factory, settings, edition, now=now)
    return WeekPlan(key, edition.cutoff, status, counts)


def check_renders(
    renderer: Renderer,
    variants: Sequence[tuple[int, VariantKey]],
    renders: Renders,
    *,
    validate: bool = True,
    web_ids: Mapping[VariantKey, str] | None = None,
) -> Checked:
    """Check each numbered variant as the render step left it; nothing is raised for what
    is found."""
    identity = renderer.identity
    checked = Checked(built=renders.built, variants=[], contents=dict(renders.contents))
    warnings: dict[str, None] = {}
    for number, key in variants:
        content = renders.contents[key]
        categories = tuple(c.name for c in content.reader_categories)
        if key in renders.failures:
            failure = (renders.failures[key],)
            checked.variants.append(VariantCheck(number, key, categories, "", failure))
            continue
        rendered = renders.built[key][0]
        problems = renders.problems.get(key)
        if problems is None:  # not checked where it was rendered
            problems = problems_of(identity, content, renders.built[key], (web_ids or {}).get(key))
        checked.variants.append(
            VariantCheck(number, key, categories, rendered.subject, tuple(problems))
        )
        warnings.update(dict.fromkeys(summary_warnings(content)))
    checked.warnings = list(warnings)
    if validate and renders.built:
        largest = max(renders.built, key=lambda k: (len(k[1]), k))
        links = personal_links(identity, renders.built[largest][1].placeholder)
        source = renderer.render_mjml(renders.contents[largest], links)
        checked.validation = validate_mjml(renderer, source)
    return checked


def check_variants(
    session: Session,
    settings: Settings,
    variants: Sequence[tuple[int, VariantKey]],
    *,
    date: dt.datetime,
    validate: bool = True,
    web_ids: Mapping[VariantKey, str] | None = None,
    edition: str | None = None,
) -> Checked:
    """Read, render and check each numbered variant (of the ``edition``); nothing is
    raised for what is found."""
    renderer = Renderer(settings)
    keys = [key for _, key in variants]
    contents = load_contents(session, keys, settings.card_cap, edition=edition)
    renders = render_each(renderer, contents, date=date, web_ids=web_ids)
    return check_renders(renderer, variants, renders, validate=validate, web_ids=web_ids)


def validate_mjml(
    renderer: Renderer, source: str, template: str = DIGEST_MJML
) -> mjml_lint.Validation:
    """MJML's official validator on ``source`` (rendered from ``template``); once per
    template version in a process."""
    path = renderer.templates_dir / template
    template = path.read_text(encoding="utf-8")
    command, detail = mjml_lint.find_validator()
    digest_ = hashlib.sha256(f"{command}\0{detail}\0{template}".encode()).hexdigest()
    if digest_ not in _validated:
        _validated[digest_] = mjml_lint.validate(source, path, template)
    return _validated[digest_]


def preflight(checked: Checked) -> Built:
    """What a send does before its first message: raise :class:`PreflightError` listing
    every problem found, log the warnings, and hand back the built variants."""
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
            key = sample_key(session, settings.card_cap, plan.cutoff)
            variants, sample = ([(1, key)] if key else []), True
        checked = check_variants(session, settings, variants, date=now, edition=plan.key)
    directory = Renderer(settings).templates_dir
    return CheckReport(plan=plan, templates_dir=directory, checked=checked, sample=sample)
