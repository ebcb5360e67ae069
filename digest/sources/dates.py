"""Publish dates as sources write them: ISO 8601 (JSON, CSV, Atom) and RFC 822 (RSS).

A date or time without a time zone is read in the list's configured time zone
(``timezone`` in digest.toml); a date alone means midnight there.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re

#: Dates outside these years are typing mistakes, not publish dates.
FIRST_YEAR, LAST_YEAR = 1900, 2200
_RFC822_UTC = re.compile(r"(?:[+-]0000|\b(?:GMT|UTC?|Z))\s*$", re.IGNORECASE)


class DateError(ValueError):
    """The text is not a date this module can read."""


def parse_datetime(text: str, zone: dt.tzinfo) -> dt.datetime:
    """A timezone-aware moment from ISO 8601 or RFC 822 text; naive values are in ``zone``."""
    value = text.strip()
    if not value or len(value) > 64:
        raise DateError(text)
    moment = _iso(value)
    if moment is None:
        moment = _rfc822(value)
    if moment is None:
        raise DateError(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    if not FIRST_YEAR <= moment.year <= LAST_YEAR:
        raise DateError(text)
    return moment


def _iso(value: str) -> dt.datetime | None:
    candidate = value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value
    try:
        return dt.datetime.fromisoformat(candidate)
    except ValueError:
        pass
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        return None
    return dt.datetime(day.year, day.month, day.day)


def _rfc822(value: str) -> dt.datetime | None:
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None and _RFC822_UTC.search(value):
        moment = moment.replace(tzinfo=dt.UTC)  # "-0000" and GMT are UTC, not "unknown"
    return moment
