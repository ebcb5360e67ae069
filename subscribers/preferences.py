"""Small subscriber operations used by the subscriber web pages: pausing, the state of a
confirmation link, and a per-database key for signing form values.

Like :mod:`subscribers.service`, functions take an open session and never commit.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.errors import SubscriberError
from subscribers.instance import instance_secret
from subscribers.models import Confirmation, Subscriber
from subscribers.tokens import looks_like_token, token_hash, tokens_equal

#: Pauses a reader may choose, in weeks.
PAUSE_WEEKS = (2, 4, 8)
FORM_KEY_NAME = "web_form_key"


class LinkState(enum.StrEnum):
    VALID = "valid"
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # malformed, never issued, or already used


def pause(subscriber: Subscriber, weeks: int, *, now: dt.datetime) -> None:
    """No digest for ``weeks`` weeks from ``now`` (0 resumes at once)."""
    if weeks == 0:
        subscriber.paused_until = None
        return
    if weeks not in PAUSE_WEEKS:
        raise SubscriberError(f"a pause is {', '.join(map(str, PAUSE_WEEKS))} weeks, or none")
    subscriber.paused_until = now + dt.timedelta(weeks=weeks)


def is_paused(subscriber: Subscriber, now: dt.datetime) -> bool:
    return subscriber.paused_until is not None and subscriber.paused_until > now


def confirmation_state(session: Session, token: str, *, now: dt.datetime) -> LinkState:
    """Whether a confirmation link would work now (reads only: GET pages use it)."""
    if not looks_like_token(token):
        return LinkState.UNKNOWN
    digest = token_hash(token)
    row = session.scalar(select(Confirmation).where(Confirmation.token_hash == digest))
    if row is None or not tokens_equal(row.token_hash, digest):
        return LinkState.UNKNOWN
    return LinkState.VALID if row.expires_at > now else LinkState.EXPIRED


def form_key(session: Session) -> bytes:
    """This database's random key for signing form values (created on first use, so every
    process serving the pages agrees on it). Deleting the row rotates it."""
    return instance_secret(session, FORM_KEY_NAME)
