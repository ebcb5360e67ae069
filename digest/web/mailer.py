"""The "your links" email: a reader's own preferences and unsubscribe links, sent when
someone asks for them on ``/unsubscribe`` (the web version of a digest has no personal
link) or signs up again with an address that is already subscribed. One message per
request, rendered like the confirmation email (MJML and a text part), 7-bit clean.
"""

from __future__ import annotations

import datetime as dt
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from digest.config import Settings
from digest.mail.headers import one_line, subject_header
from digest.mail.transports.base import Envelope, Transport
from digest.notices.confirmation import (
    LINKS_MJML,
    LINKS_SUBJECT,
    LINKS_TEXT,
    ConfirmationRenderer,
)
from digest.render.renderer import Rendered

OUTBOX_FOLDER = "links"


def preferences_link(settings: Settings, token: str) -> str:
    return f"{settings.base_url}/p/{token}"


def unsubscribe_link(settings: Settings, token: str) -> str:
    return f"{settings.base_url}/u/{token}"


def render_links(renderer: ConfirmationRenderer, token: str) -> Rendered:
    settings = renderer.settings
    values = {
        "preferences": preferences_link(settings, token),
        "unsubscribe": unsubscribe_link(settings, token),
    }
    return renderer.render_notice((LINKS_SUBJECT, LINKS_MJML, LINKS_TEXT), values)


def build_links_message(
    settings: Settings,
    rendered: Rendered,
    *,
    to: str,
    name: str | None,
    now: dt.datetime,
) -> tuple[str, bytes]:
    """(Message-ID, bytes) of the email; text part first, HTML last, quoted-printable. The
    subject is folded by :func:`~digest.mail.headers.subject_header`, as in every digest."""
    message = EmailMessage(policy=SMTP)
    message["Date"] = format_datetime(now.astimezone(dt.UTC))
    message["From"] = Address(settings.sender_name, addr_spec=settings.sender_address)
    message["To"] = Address(one_line(name or ""), addr_spec=to)
    message_id = make_msgid("links", domain=settings.sender_domain)
    message["Message-ID"] = message_id
    if settings.reply_to:
        message["Reply-To"] = settings.reply_to
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(rendered.text, cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", cte="quoted-printable")
    return message_id, subject_header(rendered.subject) + message.as_bytes()


def send_links(
    settings: Settings,
    transport: Transport,
    *,
    to: str,
    name: str | None,
    token: str,
    now: dt.datetime,
) -> str:
    """Email a reader their own links; returns the transport's reply."""
    rendered = render_links(ConfirmationRenderer(settings), token)
    _, raw = build_links_message(settings, rendered, to=to, name=name, now=now)
    return transport.send(Envelope(settings.sender_address, to, OUTBOX_FOLDER), raw)
