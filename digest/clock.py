"""The time digest takes as now: the real clock, or the one ``DIGEST_NOW`` sets.

``DIGEST_NOW`` (an ISO 8601 time with its offset, such as ``2026-12-07T08:00:00+00:00``)
is for tests and replays: a run of ``digest send``, ``preview``, ``check``... with it set
behaves as if it ran at that moment, so next week's edition can be sent or previewed now.
One-shot commands take that moment as now (:func:`now`); long-running ones (``digest
serve``, ``digest preview --serve``, ``digest schedule``) start their clock there and let it
run on (:func:`running_clock`). Only the edges read this module; everything below them gets
``now`` as a parameter.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Mapping

from digest.errors import SetupError

#: The environment variable that sets the clock (listed in ``config.OTHER_VARIABLES``).
VARIABLE = "DIGEST_NOW"
EXAMPLE = "2026-12-07T08:00:00+00:00"


def parse_now(text: str) -> dt.datetime:
    """``text`` as an aware UTC time; a :class:`SetupError` naming ``DIGEST_NOW`` and the
    expected form if it is not an ISO 8601 time with an offset."""
    value = text.strip()
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.utcoffset() is None:
        raise SetupError(
            f"{VARIABLE} is {text!r}: expected an ISO 8601 time with its offset, such as {EXAMPLE}",
            key=VARIABLE,
        )
    return moment.astimezone(dt.UTC)


def fixed_now(env: Mapping[str, str] | None = None) -> dt.datetime | None:
    """The time ``DIGEST_NOW`` sets, or None when it is not set (or empty)."""
    text = (os.environ if env is None else env).get(VARIABLE, "")
    return parse_now(text) if text.strip() else None


def real_now() -> dt.datetime:
    """The real time, aware, in UTC."""
    return dt.datetime.now(dt.UTC)


def now(env: Mapping[str, str] | None = None) -> dt.datetime:
    """Now for a one-shot run: ``DIGEST_NOW`` when set, else the real time."""
    return fixed_now(env) or real_now()


def running_clock(
    env: Mapping[str, str] | None = None, monotonic: Callable[[], float] = time.monotonic
) -> Callable[[], dt.datetime]:
    """A clock for a long-running process: the real one, or, with ``DIGEST_NOW``, one that
    reads ``DIGEST_NOW`` when made and then runs on at the real pace. A bad value fails
    here, when the process starts, not at its first request."""
    start = fixed_now(env)
    if start is None:
        return real_now
    began = monotonic()

    def shifted() -> dt.datetime:
        return start + dt.timedelta(seconds=monotonic() - began)

    return shifted
