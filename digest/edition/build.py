"""One variant rendered and built into a message template, and checked (stages 3 and 4
for one digest): pure functions, with no database code, so that a render helper process
(:mod:`digest.edition.render_pool`) starts without loading SQLAlchemy (an import-linter
contract keeps it so)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from digest.mail.message import MessageTemplate, build_template, new_placeholder
from digest.planning.when import key_of_day
from digest.render.cards import DigestContent
from digest.render.identity import ListIdentity
from digest.render.preflight import variant_problems
from digest.render.renderer import Links, Rendered, Renderer


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
