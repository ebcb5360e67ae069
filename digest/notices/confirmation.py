"""Double opt-in emails: one per pending subscriber, asking them to confirm by a link.

Rendered like the digest (Jinja2 -> MJML -> mjml-python -> premailer, plus a text part)
once per distinct (categories, frequency) and built once into a pre-encoded message whose
To, Message-ID and token are spliced in per person. Each token is sent, then forgotten:
only its sha256 is stored (``subscribers.service.open_confirmation``), valid for 7 days.
The link is ``BASE/confirm/<token>``. No List-Unsubscribe: this is not list mail, and the
message says plainly to ignore it if it was not asked for.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings
from digest.errors import MessageError, TransportUnavailable
from digest.mail.headers import one_line, subject_header
from digest.mail.message import (
    MAX_LINE,
    SAMPLE,
    MessageTemplate,
    Recipient,
    alternative_body,
    new_placeholder,
)
from digest.mail.transports.base import DeliveryFailed, Envelope, Transport
from digest.render.renderer import DIGEST_CSS, Rendered, Renderer
from digest.store.db import Category, transaction
from subscribers.models import Confirmation, Status, Subscriber, Subscription
from subscribers.service import CONFIRM_TTL, store_confirmations
from subscribers.tokens import new_token

CONFIRM_MJML = "email/confirm.mjml.j2"
CONFIRM_TEXT = "email/confirm.txt.j2"
CONFIRM_SUBJECT = "email/confirm_subject.txt.j2"
#: The "your links" email (sent by the web pages; checked by ``digest check``).
LINKS_MJML = "email/links.mjml.j2"
LINKS_TEXT = "email/links.txt.j2"
LINKS_SUBJECT = "email/links_subject.txt.j2"
#: Confirmation messages go to this folder of a file outbox.
OUTBOX_FOLDER = "confirmations"
BATCH = 200
_MESSAGE_ID = re.compile(r"<[^@\s<>]+@[^@\s<>]+>")


@dataclass(frozen=True, slots=True)
class ConfirmationContent:
    categories: tuple[str, ...]  # names, in order
    frequency: str
    expires: dt.datetime


@dataclass
class ConfirmationReport:
    sent: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # address -> the server's reply


def confirm_link(settings: Settings, token: str) -> str:
    return f"{settings.base_url}/confirm/{token}"


class ConfirmationRenderer(Renderer):
    """The digest's renderer, with the confirmation templates."""

    def __init__(self, settings: Settings, templates_dir: Path | None = None) -> None:
        super().__init__(settings, templates_dir)
        self.settings = settings

    def render_confirmation(self, content: ConfirmationContent, link: str) -> Rendered:
        values = self.confirmation_values(content, link)
        return self.render_notice((CONFIRM_SUBJECT, CONFIRM_MJML, CONFIRM_TEXT), values)

    def confirmation_values(self, content: ConfirmationContent, link: str) -> dict[str, Any]:
        """What the confirmation templates see besides the base context."""
        return {
            "categories": list(content.categories),
            "frequency": content.frequency,
            "expires": f"{content.expires.astimezone(self.identity.zone):%d %B %Y}".lstrip("0"),
            "link": link,
        }

    def notice_mjml(self, templates: tuple[str, str, str], values: dict[str, Any]) -> str:
        """The MJML source of a short email, before it is compiled (for MJML's validator)."""
        context = self.base_context() | values
        context["subject"] = " ".join(self._render(templates[0], context).split())
        return self._render(templates[1], context)

    def render_notice(self, templates: tuple[str, str, str], values: dict[str, Any]) -> Rendered:
        """A short email (a confirmation, a reader's links) from its subject, MJML and text
        templates, with the digest's stylesheet and ``values`` added to the base context."""
        subject_template, mjml_template, text_template = templates
        context = self.base_context() | values
        subject = " ".join(self._render(subject_template, context).split())
        context["subject"] = subject
        html = self.mjml_to_html(
            self._render(mjml_template, context), self._render(DIGEST_CSS, context), mjml_template
        )
        lines = self._render(text_template, context).strip().splitlines()
        text = "\n".join(line.rstrip() for line in lines) + "\n"
        return Rendered(subject=subject, html=html, text=text)


def _header(name: str, value: str | Address) -> bytes:
    """One header line, RFC 2047-encoded where needed and folded at 78 columns."""
    if isinstance(value, Address):
        value = Address(one_line(value.display_name), addr_spec=value.addr_spec)
    else:
        value = one_line(value)
    folded: str = email.policy.SMTP.header_factory(name, value).fold(policy=email.policy.SMTP)
    return folded.encode("ascii")


_SLOT_TO = b"\x00to\x00"
_SLOT_MID = b"\x00message_id\x00"


def build_confirmation(
    settings: Settings, rendered: Rendered, *, placeholder: str, date: dt.datetime
) -> MessageTemplate:
    """Encode ``rendered`` once, with holes for To, Message-ID and the token; checked by
    parsing a personalised sample back."""
    boundary = f"=_digest_{secrets.token_hex(12)}"
    message = b"".join(
        [
            f"Date: {format_datetime(date.astimezone(dt.UTC))}\r\n".encode("ascii"),
            _header("From", Address(settings.sender_name, addr_spec=settings.sender_address)),
            _SLOT_TO,
            subject_header(rendered.subject),
            b"Message-ID: " + _SLOT_MID + b"\r\n",
            _header("Reply-To", settings.reply_to) if settings.reply_to else b"",
            b"Auto-Submitted: auto-generated\r\n",
            b"MIME-Version: 1.0\r\n",
            f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n'.encode(),
            alternative_body(rendered, placeholder, boundary),
        ]
    )
    names = {_SLOT_TO: "to", _SLOT_MID: "message_id", placeholder.encode("ascii"): "token"}
    pieces = re.split(b"(" + b"|".join(re.escape(n) for n in names) + b")", message)
    template = MessageTemplate(
        parts=tuple(pieces[0::2]),
        slots=tuple(names[p] for p in pieces[1::2]),
        placeholder=placeholder,
    )
    sample = SAMPLE._replace(name="Zoë Sample")
    problems = confirmation_problems(
        template.personalize(sample), link=confirm_link(settings, sample.token)
    )
    if problems:
        raise MessageError(f"confirmation email {rendered.subject!r}: " + "; ".join(problems))
    return template


def confirmation_problems(raw: bytes, *, link: str) -> list[str]:
    """What is wrong with a confirmation email against the email standards (empty if fine)."""
    problems: list[str] = []
    if any(byte > 127 for byte in raw):
        problems.append("message is not 7-bit clean")
    if max(len(line) for line in raw.split(b"\r\n")) > MAX_LINE:
        problems.append(f"a line is longer than {MAX_LINE} octets")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    for name in ("Date", "From", "To", "Subject", "Message-ID", "MIME-Version", "Auto-Submitted"):
        if len(msg.get_all(name) or []) != 1:
            problems.append(f"not exactly one {name} header")
    if not _MESSAGE_ID.fullmatch(str(msg.get("Message-ID", ""))):
        problems.append("Message-ID is malformed")
    parts = [part.get_content_type() for part in msg.iter_parts()]
    if msg.get_content_type() != "multipart/alternative" or parts != ["text/plain", "text/html"]:
        return [*problems, f"structure is {msg.get_content_type()} {parts}, not text then html"]
    for part in msg.iter_parts():
        if link not in part.get_content():
            problems.append(f"the {part.get_content_type()} part lacks the confirmation link")
    return problems


@dataclass(frozen=True, slots=True)
class _Pending:
    id: int
    email: str
    name: str | None
    frequency: str
    categories: tuple[str, ...]


def _pending_batch(
    session: Session, after: int, only: Sequence[int] | None, limit: int
) -> list[_Pending]:
    query = select(Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.frequency).where(
        Subscriber.status == Status.PENDING.value, Subscriber.id > after
    )
    if only is None:
        query = query.where(~exists().where(Confirmation.subscriber_id == Subscriber.id))
    else:
        query = query.where(Subscriber.id.in_(only))
    rows = session.execute(query.order_by(Subscriber.id).limit(limit)).all()
    names: dict[int, list[str]] = {}
    for subscriber_id, name in session.execute(
        select(Subscription.subscriber_id, Category.name)
        .join(Category, Category.id == Subscription.category_id)
        .where(Subscription.subscriber_id.in_([r[0] for r in rows]))
        .order_by(Category.name)
    ):
        names.setdefault(subscriber_id, []).append(name)
    return [_Pending(i, e, n, f, tuple(names.get(i, ()))) for i, e, n, f in rows]


def send_confirmations(
    settings: Settings,
    factory: sessionmaker[Session],
    transport: Transport,
    *,
    now: dt.datetime,
    subscriber_ids: Sequence[int] | None = None,
    batch: int = BATCH,
) -> ConfirmationReport:
    """Email a confirmation link to each pending subscriber that was never sent one (or,
    with ``subscriber_ids``, to those, replacing an earlier link). Each batch is sent,
    then its token hashes stored; if the transport becomes unreachable, what was sent is
    recorded before the error is raised, and a later call sends the rest."""
    renderer = ConfirmationRenderer(settings)
    templates: dict[tuple[tuple[str, ...], str], MessageTemplate] = {}
    report = ConfirmationReport()
    after = 0
    while True:
        with factory() as session:
            people = _pending_batch(session, after, subscriber_ids, batch)
        if not people:
            return report
        after = people[-1].id
        sent: list[tuple[_Pending, str, str]] = []  # person, token, message id
        try:
            for person in people:
                key = (person.categories, person.frequency)
                if key not in templates:
                    content = ConfirmationContent(key[0], key[1], now + CONFIRM_TTL)
                    placeholder = new_placeholder()
                    rendered = renderer.render_confirmation(
                        content, confirm_link(settings, placeholder)
                    )
                    templates[key] = build_confirmation(
                        settings, rendered, placeholder=placeholder, date=now
                    )
                token = new_token()
                message_id = f"<confirm.{secrets.token_hex(10)}@{settings.sender_domain}>"
                raw = templates[key].personalize(
                    Recipient(person.email, person.name, token, message_id)
                )
                envelope = Envelope(settings.sender_address, person.email, OUTBOX_FOLDER)
                try:
                    transport.send(envelope, raw)
                except DeliveryFailed as exc:
                    report.failed[person.email] = exc.reply
                    continue
                sent.append((person, token, message_id))
        except TransportUnavailable:
            _record(factory, sent, now)
            report.sent += len(sent)
            raise
        _record(factory, sent, now)
        report.sent += len(sent)


def _record(
    factory: sessionmaker[Session], sent: list[tuple[_Pending, str, str]], now: dt.datetime
) -> None:
    if sent:
        with transaction(factory) as session:
            store_confirmations(session, [(p.id, token, mid) for p, token, mid in sent], now=now)
