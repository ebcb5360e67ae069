"""Render and build each distinct digest of an edition once (stages 3 and 4)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from sqlalchemy.orm import Session

from digest.config import Settings
from digest.edition.plan import ordered_categories
from digest.edition.selection import VariantKey
from digest.mail.message import MessageTemplate, build_template, new_placeholder
from digest.render.cards import CategoryRef, build_content, load_cards
from digest.render.renderer import Links, Rendered, Renderer

Built = dict[VariantKey, tuple[Rendered, MessageTemplate]]


def personal_links(settings: Settings, token: str, web_id: str | None = None) -> Links:
    return Links(
        unsubscribe=f"{settings.base_url}/u/{token}",
        preferences=f"{settings.base_url}/p/{token}",
        more=settings.site_url,
        web_version=web_url(settings, web_id) if web_id else None,
    )


def web_url(settings: Settings, web_id: str) -> str:
    """The web version of a sent variant (no personal data in it)."""
    return f"{settings.base_url}/v/{web_id}"


def render_variants(
    session: Session,
    renderer: Renderer,
    settings: Settings,
    keys: Iterable[VariantKey],
    *,
    date: dt.datetime,
    web_ids: Mapping[VariantKey, str] | None = None,
) -> Built:
    """Render and build each distinct digest once. Any template or standards problem
    raises here, before a single message is sent. ``web_ids`` (of variants stored in an
    edition) add the "view in your browser" link."""
    keys = list(keys)
    categories = [CategoryRef(c.id, c.slug, c.name) for c in ordered_categories(session)]
    cards = load_cards(session, {i for _, items in keys for i in items})
    built: Built = {}
    for category_ids, item_ids in keys:
        content = build_content(item_ids, category_ids, cards, categories, settings.card_cap)
        placeholder = new_placeholder()
        web_id = (web_ids or {}).get((category_ids, item_ids))
        rendered = renderer.render_digest(content, personal_links(settings, placeholder, web_id))
        template = build_template(settings, rendered, placeholder=placeholder, date=date)
        built[(category_ids, item_ids)] = (rendered, template)
    return built
