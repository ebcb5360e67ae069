"""Preview exactly what a reader gets this week, touching no ledger row.

A preview renders and builds a variant through the same code as a send
(:func:`digest.edition.variants.render_contents`): its ``.eml`` is byte for byte what the transport
would get, apart from the reader's values (token, Message-ID, Date; ``To`` for a category
preview). Test sends (:func:`send_test`) are the same message with "[TEST] " before the
subject, sent through the configured transport without any ledger row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.edition.build import personal_links
from digest.edition.variants import render_contents
from digest.errors import DigestError
from digest.mail.message import Recipient, build_template
from digest.mail.transports.base import Envelope, Transport
from digest.planning.catalog import load_contents
from digest.planning.ids import new_message_id
from digest.planning.plan import load_catalog
from digest.planning.selection import VariantKey
from digest.planning.webid import web_id_for, web_salt
from digest.planning.when import Schedule, current_key
from digest.preview.persona import persona_of
from digest.render.preflight import summary_warnings, variant_problems
from digest.render.renderer import Rendered, Renderer
from digest.store.models import Edition, Variant
from digest.store.schema import open_database
from subscribers import service

TEST_PREFIX = "[TEST] "

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
    reason: str = ""  # why this reader gets no email, or a note on their ledger row
    problems: tuple[str, ...] = ()  # preflight problems (a send would stop)
    warnings: tuple[str, ...] = ()  # summaries missing fields
    rendered: Rendered | None = None  # with the template's placeholder token
    placeholder: str = ""
    edition: str = ""

    @property
    def headers(self) -> str:
        """The raw header block of the message."""
        return self.eml.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")


def window(
    session: Session, settings: Settings, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """(since, cutoff) of this week's edition for a reader who got the previous one."""
    key = current_key(now, Schedule.from_settings(settings))
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
            why = "nothing new in these categories: such a reader gets no email this week"
            return Preview(names, since, cutoff, 0, reason=why)
        return preview_key(session, settings, (ids, items, ()), now=now, since=since, cutoff=cutoff)


def preview_subscriber(
    settings: Settings, address: str, *, now: dt.datetime, engine: Engine | None = None
) -> Preview:
    """What the subscriber with ``address`` gets this week: their categories, their window."""
    factory = open_database(settings, engine)
    schedule = Schedule.from_settings(settings)
    with factory() as session:
        subscriber = service.find_by_email(session, address)
        if subscriber is None:
            raise DigestError(f"no subscriber has the address {address!r}")
        key = current_key(now, schedule)
        edition = session.scalar(select(Edition).where(Edition.key == key))
        persona = persona_of(
            session,
            subscriber,
            edition_key=key,
            edition=edition,
            cutoff=edition.cutoff if edition else now,
            lookback=dt.timedelta(days=settings.lookback_days),
            schedule=schedule,
            now=now,
        )
        recipient = Recipient(
            persona.address,
            persona.name,
            PREVIEW_TOKEN,
            new_message_id("preview", settings.sender_domain),
        )
        if persona.key is None:
            names = tuple(c.name for c in subscriber.categories)
            since = persona.since or persona.cutoff
            return Preview(names, since, persona.cutoff, 0, reason=persona.reason, edition=key)
        return preview_key(
            session,
            settings,
            persona.key,
            now=now,
            since=persona.since,
            cutoff=persona.cutoff,
            recipient=recipient,
            reason=persona.reason,
        )


def preview_key(
    session: Session,
    settings: Settings,
    key: VariantKey,
    *,
    now: dt.datetime,
    since: dt.datetime | None,
    cutoff: dt.datetime,
    recipient: Recipient | None = None,
    reason: str = "",
) -> Preview:
    """Render and build one variant as a send does, and personalise it for ``recipient``
    (default: a sample reader) with a token that is not valid."""
    edition = current_key(now, Schedule.from_settings(settings))
    web_ids = {key: _web_id(session, edition, key)}
    renderer = Renderer(settings)
    contents = load_contents(session, [key], settings.card_cap, edition=edition)
    rendered, template = render_contents(renderer, contents, date=now, web_ids=web_ids)[key]
    content = contents[key]
    recipient = recipient or Recipient(
        PREVIEW_READER.address,
        PREVIEW_READER.name,
        PREVIEW_TOKEN,
        new_message_id("preview", settings.sender_domain),
    )
    links = personal_links(renderer.identity, template.placeholder, web_ids[key])
    return Preview(
        categories=tuple(c.name for c in content.reader_categories),
        since=since or cutoff,
        cutoff=cutoff,
        summaries=len(key[1]),
        subject=rendered.subject,
        html=rendered.html.replace(template.placeholder, recipient.token),
        text=rendered.text.replace(template.placeholder, recipient.token),
        eml=template.personalize(recipient),
        reason=reason,
        problems=tuple(variant_problems(rendered, content, links, settings.postal_address)),
        warnings=tuple(summary_warnings(content)),
        rendered=rendered,
        placeholder=template.placeholder,
        edition=edition,
    )


def _web_id(session: Session, edition_key: str, key: VariantKey) -> str:
    """The address of the variant's web version as the send gives it: the stored one when
    the week already has this variant (one planned by an earlier version has an id of
    another shape), else the one planning will give it."""
    planned = select(Variant).join(Edition).where(Edition.key == edition_key)
    for variant in session.scalars(planned):
        if variant.key == key:
            return variant.web_id
    return web_id_for(web_salt(session), edition_key, key)


def send_test(
    settings: Settings, preview: Preview, address: str, transport: Transport, *, now: dt.datetime
) -> str:
    """Send ``preview`` to ``address`` marked as a test: "[TEST] " before the subject, a token
    that is not valid, and no ledger row. Returns the transport's reply."""
    if preview.rendered is None:
        raise DigestError("there is no email to send: this reader gets none this week")
    address = service.normalize_email(address)
    template = build_template(
        settings,
        preview.rendered,
        placeholder=preview.placeholder,
        date=now,
        subject_prefix=TEST_PREFIX,
    )
    message_id = new_message_id("test", settings.sender_domain)
    raw = template.personalize(Recipient(address, None, PREVIEW_TOKEN, message_id))
    return transport.send(Envelope(settings.sender_address, address, "test-sends"), raw)
