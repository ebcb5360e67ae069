"""Render and build each distinct digest of an edition once (stages 3 and 4)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy.orm import Session

from digest.config import Settings
from digest.content import CategoryRef, build_content, load_cards
from digest.message import MessageTemplate, build_template, new_placeholder
from digest.planning import ordered_categories
from digest.render import Links, Rendered, Renderer
from digest.selection import VariantKey

Built = dict[VariantKey, tuple[Rendered, MessageTemplate]]


def personal_links(settings: Settings, token: str) -> Links:
    return Links(
        unsubscribe=f"{settings.base_url}/u/{token}",
        preferences=f"{settings.base_url}/p/{token}",
        more=settings.site_url,
    )


def render_variants(
    session: Session,
    renderer: Renderer,
    settings: Settings,
    keys: Iterable[VariantKey],
    *,
    date: dt.datetime,
) -> Built:
    """Render and build each distinct digest once. Any template or standards problem
    raises here, before a single message is sent."""
    keys = list(keys)
    categories = [CategoryRef(c.id, c.slug, c.name) for c in ordered_categories(session)]
    cards = load_cards(session, {i for _, items in keys for i in items})
    built: Built = {}
    for category_ids, item_ids in keys:
        content = build_content(item_ids, category_ids, cards, categories, settings.card_cap)
        placeholder = new_placeholder()
        rendered = renderer.render_digest(content, personal_links(settings, placeholder))
        template = build_template(settings, rendered, placeholder=placeholder, date=date)
        built[(category_ids, item_ids)] = (rendered, template)
    return built
