"""Public pages holding no personal data, Blueprint ``public``: the web version of each
sent digest (``/v/<web_id>``), the archive of past editions per category and the Atom feeds.
Each answers with validators and ``Cache-Control`` (:mod:`digest.web.caching`)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace

from flask import Blueprint, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.planning.catalog import load_contents, retractions
from digest.planning.plan import ordered_categories
from digest.render.renderer import Links, Renderer
from digest.store.db import Category
from digest.store.models import Edition, EditionStatus, Summary, Variant
from digest.web.caching import cached_page, conditional
from digest.web.feeds import FeedItem, atom_feed, changed_at, group_by_edition
from digest.web.readers import Page, not_found
from digest.web.state import current_web

_WEB_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,79}")
FEED_ITEMS = 50
ARCHIVE_EDITIONS = 26
blueprint = Blueprint("public", __name__)


def neutral_links(base_url: str, site_url: str, edition: str | None = None) -> Links:
    """Links of a web version: no token; "unsubscribe" asks for the address and mails the
    reader their own link; "N more in a topic" leads to the ``edition``'s topic page."""
    return Links(
        unsubscribe=f"{base_url}/unsubscribe",
        preferences=f"{base_url}/unsubscribe",
        more=site_url,
        edition=f"{base_url}/editions/{edition}" if edition else None,
    )


def _items(session: Session, category_id: int, until: dt.datetime, limit: int) -> list[FeedItem]:
    rows = session.scalars(
        select(Summary)
        .where(Summary.categories.any(Category.id == category_id), Summary.published_at <= until)
        .order_by(Summary.published_at.desc(), Summary.id.desc())
        .limit(limit)
    )
    return [
        FeedItem(
            s.id,
            s.title,
            s.url,
            s.published_at,
            changed_at(s.published_at, s.created_at, s.updated_at),
            s.simple_explanation,
            s.status,
            s.correction_note,
            journal=s.journal,
            topics=tuple(c.name for c in s.categories),
        )
        for s in rows
    ]


def shown_editions(session: Session, now: dt.datetime, limit: int) -> list[tuple[str, dt.datetime]]:
    """(key, cutoff) of the newest editions the archive shows: not cancelled, cut off."""
    rows = session.execute(
        select(Edition.key, Edition.cutoff)
        .where(Edition.status != EditionStatus.CANCELLED.value, Edition.cutoff <= now)
        .order_by(Edition.cutoff.desc())
        .limit(limit)
    ).all()
    return [(key, cutoff) for key, cutoff in rows]


def category(session: Session, slug: str) -> Category | None:
    if not _SLUG.fullmatch(slug):
        return None
    return session.scalar(select(Category).where(Category.slug == slug))


@blueprint.get("/v/<web_id>")
def web_version(web_id: str) -> Response | Page:
    if not _WEB_ID.fullmatch(web_id):
        return not_found()
    web = current_web()
    settings = web.settings
    html = web.web_versions.get(web_id)
    if html is None:
        with web.factory() as session:
            variant = session.scalar(select(Variant).where(Variant.web_id == web_id))
            if variant is None:
                return not_found()
            key = variant.edition.key
            content = load_contents(session, [variant.key], settings.card_cap, edition=key)[
                variant.key
            ]
            # a summary retracted since: its card is gone, and the page says why
            withdrawn = retractions(session, variant.summary_ids)
            content = replace(content, notices=(*withdrawn, *content.notices))
        links = neutral_links(settings.base_url, settings.site_url, key)
        html = Renderer(settings).render_digest(content, links).html
        web.web_versions.put(web_id, html)
    return conditional(html, "text/html")


@blueprint.get("/archive")
def archive() -> Response:
    web = current_web()
    with web.factory() as session:
        cats = [(c.slug, c.name) for c in ordered_categories(session)]
        editions = shown_editions(session, web.now(), ARCHIVE_EDITIONS)
    return cached_page("site/archive.html", categories=cats, editions=[k for k, _ in editions])


@blueprint.get("/archive/<slug>")
def archive_category(slug: str) -> Response | Page:
    web = current_web()
    now = web.now()
    with web.factory() as session:
        found = category(session, slug)
        if found is None:
            return not_found()
        pairs = shown_editions(session, now, ARCHIVE_EDITIONS + 1)
        oldest = min((c for _, c in pairs), default=now)
        items = [
            i
            for i in _items(session, found.id, max((c for _, c in pairs), default=now), 2000)
            if i.published_at > oldest - dt.timedelta(days=7)
        ]
        name = found.name
    grouped = [e for e in group_by_edition(pairs, items) if e.items][:ARCHIVE_EDITIONS]
    changed = [i.updated_at for e in grouped for i in e.items] + [c for _, c in pairs]
    return cached_page(
        "site/archive_category.html",
        last_modified=max(changed, default=None),
        slug=slug,
        name=name,
        editions=grouped,
    )


@blueprint.get("/feeds/<slug>.atom")
def feed(slug: str) -> Response | Page:
    web = current_web()
    settings, now = web.settings, web.now()
    with web.factory() as session:
        found = category(session, slug)
        if found is None:
            return not_found()
        items = _items(session, found.id, now, FEED_ITEMS)
        name = found.name
        # an empty feed is as old as the last edition, so its bytes (and ETag) stay put
        quiet = session.scalar(select(func.max(Edition.cutoff)).where(Edition.cutoff <= now))
    body = atom_feed(
        feed_url=f"{settings.base_url}/feeds/{slug}.atom",
        site_url=f"{settings.base_url}/archive/{slug}",
        title=f"{settings.site_name}: {name}",
        author=settings.sender_name,
        items=items,
        updated=quiet or now,
    )
    newest = max((i.updated_at for i in items), default=quiet)
    return conditional(body, "application/atom+xml", last_modified=newest)
