"""What the views of the subscriber pages have in common: the reader a token page shows,
the topics a form offers, the 404 page, the client's address and cleaning of form text."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from flask import render_template, request
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.planning.plan import ordered_categories
from digest.web.security import forwarded_client
from digest.web.state import current_web
from subscribers.models import Status, Subscriber
from subscribers.preferences import is_paused

Page = tuple[str, int]
#: Control characters (NUL included) never reach the database from a form.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Reader:
    """What a token page shows about its reader (never the token's owner's full address)."""

    masked_email: str
    name: str | None
    status: str
    categories: tuple[str, ...]  # slugs
    category_names: tuple[str, ...]
    frequency: str
    paused_until: str | None  # a date, when paused

    @property
    def subscribed(self) -> bool:
        return self.status == Status.ACTIVE


def mask(address: str) -> str:
    """``zoe@example.org`` -> ``z••@example.org``: enough to recognise, not to harvest."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}{'•' * min(max(len(local) - 1, 2), 6)}@{domain}"


def reader_of(subscriber: Subscriber, settings: Settings, now: dt.datetime) -> Reader:
    until = None
    if is_paused(subscriber, now):
        assert subscriber.paused_until is not None
        until = f"{subscriber.paused_until.astimezone(settings.zone):%d %B %Y}".lstrip("0")
    return Reader(
        masked_email=mask(subscriber.email),
        name=subscriber.name,
        status=subscriber.status,
        categories=tuple(c.slug for c in subscriber.categories),
        category_names=tuple(c.name for c in subscriber.categories),
        frequency=subscriber.frequency,
        paused_until=until,
    )


def topics(session: Session) -> list[tuple[str, str]]:
    """(slug, name) of every topic a form offers, in the digest's order."""
    return [(c.slug, c.name) for c in ordered_categories(session)]


def known_topics(chosen: list[str], offered: list[tuple[str, str]]) -> list[str]:
    """The offered slugs among ``chosen``, each once, in the order chosen."""
    known = {slug for slug, _ in offered}
    return [slug for slug in dict.fromkeys(chosen) if slug in known]


def form_text(name: str, limit: int) -> str:
    """A form field as text: at most ``limit`` characters, trimmed, without control
    characters (PostgreSQL refuses NUL; nothing else wants them)."""
    return _CONTROL.sub("", request.form.get(name, "").strip())[:limit]


def not_found() -> Page:
    """The one page for unknown and malformed tokens, ids and topics."""
    return render_template("site/not_found.html"), 404


def client_address() -> str:
    """The client's IP address: the peer's, or behind a trusted proxy the last
    ``X-Forwarded-For`` hop that is not one (see :func:`digest.web.security.forwarded_client`)."""
    forwarded = request.headers.getlist("X-Forwarded-For")
    return forwarded_client(request.remote_addr or "unknown", forwarded, current_web().proxies)
