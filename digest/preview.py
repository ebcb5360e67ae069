"""Preview exactly what a reader of some categories gets this week, touching no ledger row."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.delivery import open_database
from digest.errors import DigestError
from digest.message import Recipient, new_message_id
from digest.models import Edition
from digest.planning import load_catalog
from digest.render import Renderer
from digest.selection import edition_key
from digest.variants import render_variants
from subscribers import service

#: Stands in for a reader's token in previews: the right shape, never a valid token.
PREVIEW_TOKEN = "preview-token-not-valid-".ljust(43, "x")
PREVIEW_READER = Recipient(
    address="reader@example.org",
    name="Sample Reader",
    token=PREVIEW_TOKEN,
    message_id="<preview@example.org>",
)


@dataclass(frozen=True)
class Preview:
    categories: tuple[str, ...]
    since: dt.datetime
    cutoff: dt.datetime
    summaries: int
    subject: str = ""
    html: str = ""
    text: str = ""
    eml: bytes = b""


def window(
    session: Session, settings: Settings, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """(since, cutoff) of this week's edition for a reader who got the previous one."""
    key = edition_key(now, settings.zone)
    current = session.scalar(select(Edition).where(Edition.key == key))
    cutoff = current.cutoff if current else now
    previous = session.scalar(
        select(Edition.cutoff)
        .where(Edition.cutoff < cutoff, Edition.key != key)
        .order_by(Edition.cutoff.desc())
        .limit(1)
    )
    return previous or cutoff - dt.timedelta(days=settings.lookback_days), cutoff


def preview_categories(
    settings: Settings,
    labels: Sequence[str],
    *,
    now: dt.datetime,
    since: dt.datetime | None = None,
    engine: Engine | None = None,
) -> Preview:
    factory = open_database(settings, engine)
    with factory() as session:
        categories = service.resolve_categories(session, labels)
        if not categories:
            raise DigestError("name at least one category, for example --categories pharmacology")
        default_since, cutoff = window(session, settings, now)
        since = since or default_since
        ids = tuple(sorted(c.id for c in categories))
        items = load_catalog(session, cutoff).select(frozenset(ids), since)
        names = tuple(c.name for c in categories)
        if not items:
            return Preview(names, since, cutoff, 0)
        key = (ids, items)
        built = render_variants(session, Renderer(settings), settings, [key], date=now)
    rendered, template = built[key]
    recipient = Recipient(
        PREVIEW_READER.address,
        PREVIEW_READER.name,
        PREVIEW_TOKEN,
        new_message_id("preview", settings.sender_domain),
    )
    return Preview(
        categories=names,
        since=since,
        cutoff=cutoff,
        summaries=len(items),
        subject=rendered.subject,
        html=rendered.html.replace(template.placeholder, PREVIEW_TOKEN),
        text=rendered.text.replace(template.placeholder, PREVIEW_TOKEN),
        eml=template.personalize(recipient),
    )
