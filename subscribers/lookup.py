"""Validation of subscriber input and look-ups by address, token and category."""

from __future__ import annotations

import re
from collections.abc import Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.errors import SubscriberError
from digest.store.db import Category
from subscribers.instance import token_key
from subscribers.models import Frequency, Subscriber
from subscribers.tokens import looks_like_token, token_digest, tokens_equal

NAME_MAX = 200
#: Control characters that are not white space: no name or address may hold one.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def normalize_email(address: str) -> str:
    """Validate the syntax (no DNS) and return the normalised address.

    The domain is kept in its ASCII (IDNA) form and a non-ASCII local part is refused:
    digest sends 7-bit messages without SMTPUTF8, so every stored address can be mailed.
    """
    try:
        result = validate_email(address.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        hint = ""
        if "before the @-sign are not supported" in str(exc):
            hint = " (digest sends plain 7-bit email, without SMTPUTF8)"
        raise SubscriberError(f"{address!r} is not a valid email address: {exc}{hint}") from None
    return str(result.ascii_email or result.normalized)


def clean_name(name: str | None) -> str | None:
    """A display name on one line (no CR/LF can ever reach a header), or None. Control
    characters other than white space (NUL among them) are refused."""
    if name is None:
        return None
    if _CONTROL.search(name):
        raise SubscriberError("a name may not contain control characters (such as NUL)")
    cleaned = " ".join(name.split())
    if len(cleaned) > NAME_MAX:
        raise SubscriberError(f"a name is at most {NAME_MAX} characters")
    return cleaned or None


def validate_timezone(name: str | None) -> str | None:
    """An IANA time zone name such as Europe/Paris (None: the list's time zone)."""
    if name is None or not name.strip():
        return None
    text = name.strip()
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise SubscriberError(
            f"{text[:80]!r} is not an IANA time zone such as Europe/Paris"
        ) from None
    return text


def validate_frequency(value: str | None) -> str:
    """``weekly`` (the default) or ``monthly``."""
    text = (value or Frequency.WEEKLY.value).strip().lower()
    if text not in tuple(Frequency):
        raise SubscriberError(f"frequency must be weekly or monthly, not {text[:40]!r}")
    return text


def resolve_categories(session: Session, wanted: Iterable[str]) -> list[Category]:
    """Categories by slug or name, case-insensitively; an unknown one is an error."""
    found: list[Category] = []
    for label in wanted:
        key = label.strip().lower()
        category = session.scalar(
            select(Category).where(
                (func.lower(Category.slug) == key) | (func.lower(Category.name) == key)
            )
        )
        if category is None:
            raise SubscriberError(f"unknown category {label!r} (see `digest categories list`)")
        if category not in found:
            found.append(category)
    return found


def find_by_email(session: Session, address: str) -> Subscriber | None:
    """The subscriber with this address, in any letter case (also before normalisation)."""
    key = address.strip().lower()
    found = session.scalar(select(Subscriber).where(Subscriber.email_key == key))
    if found is None:
        try:
            key = normalize_email(address).lower()
        except SubscriberError:
            return None
        found = session.scalar(select(Subscriber).where(Subscriber.email_key == key))
    return found


def find_by_token(session: Session, token: str) -> Subscriber | None:
    """The subscriber owning ``token``, or None for an unknown or malformed token.

    Every token, well-formed or not, takes the same steps: its keyed hash is computed
    and looked up (so the index walk depends on a value an attacker cannot choose), then
    compared in constant time; only then is its shape checked."""
    digest = token_digest(token_key(session), token)
    subscriber = session.scalar(select(Subscriber).where(Subscriber.token_hash == digest))
    same = subscriber is not None and tokens_equal(subscriber.token_hash, digest)
    if not (same & looks_like_token(token)):
        return None
    return subscriber
