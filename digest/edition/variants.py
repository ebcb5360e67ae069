"""Render and build each distinct digest of an edition once (stages 3 and 4).

The contents come from :mod:`digest.planning.catalog`; from there on everything is pure:
each content is rendered (:mod:`digest.render.renderer`) with placeholder links and built
into a message template (:mod:`digest.mail.message`), one variant at a time by
:func:`digest.edition.build.build_variant`. :func:`render_each` keeps what it
rendered together with each content, so the preflight checks exactly these, with no
second read of the store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from digest.config import Settings
from digest.edition.build import build_variant
from digest.errors import DigestError
from digest.mail.message import MessageTemplate
from digest.planning.catalog import load_contents
from digest.planning.selection import VariantKey
from digest.render.cards import DigestContent
from digest.render.renderer import Rendered, Renderer

Built = dict[VariantKey, tuple[Rendered, MessageTemplate]]


@dataclass(frozen=True)
class Renders:
    """What the render step made of some variants: what each shows, its rendered digest
    and message template, or (in ``failures``) why it could not be rendered. ``problems``
    holds the preflight's findings (:func:`~digest.edition.build.problems_of`) for the
    variants already checked where they were rendered (in a helper process); the
    preflight checks the others."""

    contents: Mapping[VariantKey, DigestContent]
    built: Built
    failures: Mapping[VariantKey, str]
    problems: Mapping[VariantKey, tuple[str, ...]] = field(default_factory=dict)


def render_contents(
    renderer: Renderer,
    contents: Mapping[VariantKey, DigestContent],
    *,
    date: dt.datetime,
    web_ids: Mapping[VariantKey, str] | None = None,
) -> Built:
    """Render and build each distinct digest once; the first problem raises. ``web_ids``
    (of variants stored in an edition) add the "view in your browser" link."""
    return {
        key: build_variant(renderer, content, date=date, web_id=(web_ids or {}).get(key))
        for key, content in contents.items()
    }


def render_each(
    renderer: Renderer,
    contents: Mapping[VariantKey, DigestContent],
    *,
    date: dt.datetime,
    web_ids: Mapping[VariantKey, str] | None = None,
) -> Renders:
    """Render and build every digest, noting each one that fails instead of stopping."""
    built: Built = {}
    failures: dict[VariantKey, str] = {}
    for key, content in contents.items():
        try:
            built[key] = build_variant(
                renderer, content, date=date, web_id=(web_ids or {}).get(key)
            )
        except DigestError as exc:
            failures[key] = str(exc)
    return Renders(contents, built, failures)


def render_variants(
    session: Session,
    renderer: Renderer,
    settings: Settings,
    keys: Iterable[VariantKey],
    *,
    date: dt.datetime,
    web_ids: Mapping[VariantKey, str] | None = None,
    edition: str | None = None,
) -> Built:
    """Read the contents of ``keys`` (of the ``edition``) and render each
    (:func:`render_contents`)."""
    contents = load_contents(session, list(keys), settings.card_cap, edition=edition)
    return render_contents(renderer, contents, date=date, web_ids=web_ids)
