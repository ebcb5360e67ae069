"""Render and build each distinct digest of an edition once (stages 3 and 4).

The contents come from :mod:`digest.planning.catalog`; from there on everything is pure:
each content is rendered (:mod:`digest.render.renderer`) with placeholder links and built
into a message template (:mod:`digest.mail.message`). :func:`render_each` keeps what it
rendered together with each content, so the preflight checks exactly these, with no
second read of the store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from digest.config import Settings
from digest.errors import DigestError
from digest.mail.message import MessageTemplate, build_template, new_placeholder
from digest.planning.catalog import load_contents
from digest.planning.selection import VariantKey
from digest.planning.when import key_of_day
from digest.render.cards import DigestContent
from digest.render.identity import ListIdentity
from digest.render.preflight import variant_problems
from digest.render.renderer import Links, Rendered, Renderer

Built = dict[VariantKey, tuple[Rendered, MessageTemplate]]


@dataclass(frozen=True)
class Renders:
    """What the render step made of some variants: what each shows, its rendered digest
    and message template, or (in ``failures``) why it could not be rendered. ``problems``
    holds the preflight's findings (:func:`problems_of`) for the variants already checked
    where they were rendered (in a helper process); the preflight checks the others."""

    contents: Mapping[VariantKey, DigestContent]
    built: Built
    failures: Mapping[VariantKey, str]
    problems: Mapping[VariantKey, tuple[str, ...]] = field(default_factory=dict)


def personal_links(
    identity: ListIdentity, token: str, web_id: str | None = None, *, edition: str | None = None
) -> Links:
    """A reader's links, with ``token`` (or a placeholder of its length) in them; with the
    ``edition`` key, "N more in a topic" leads to that edition's page for the topic."""
    return Links(
        unsubscribe=f"{identity.base_url}/u/{token}",
        preferences=f"{identity.base_url}/p/{token}",
        more=identity.site_url,
        web_version=web_url(identity, web_id) if web_id else None,
        edition=f"{identity.base_url}/editions/{edition}" if edition else None,
    )


def problems_of(
    identity: ListIdentity,
    content: DigestContent,
    made: tuple[Rendered, MessageTemplate],
    web_id: str | None = None,
) -> tuple[str, ...]:
    """Every blocking problem the preflight finds in one rendered and built variant."""
    rendered, template = made
    links = personal_links(identity, template.placeholder, web_id)
    return tuple(variant_problems(rendered, content, links, identity.postal_address))


def edition_of(content: DigestContent) -> str | None:
    """The key of the edition a dated content belongs to (its ``issued`` week)."""
    return key_of_day(content.issued) if content.issued else None


def web_url(identity: ListIdentity, web_id: str) -> str:
    """The web version of a sent variant (no personal data in it)."""
    return f"{identity.base_url}/v/{web_id}"


def build_variant(
    renderer: Renderer,
    content: DigestContent,
    *,
    date: dt.datetime,
    web_id: str | None = None,
    placeholder: Callable[[], str] = new_placeholder,
) -> tuple[Rendered, MessageTemplate]:
    """One digest rendered and built into a checked message template. Any template or
    standards problem raises here, before a single message is sent."""
    token = placeholder()
    links = personal_links(renderer.identity, token, web_id, edition=edition_of(content))
    rendered = renderer.render_digest(content, links)
    template = build_template(renderer.identity, rendered, placeholder=token, date=date)
    return rendered, template


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
