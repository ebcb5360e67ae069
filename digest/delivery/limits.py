"""Which rate limiter a run sends under, and how many rows it claims at a time."""

from __future__ import annotations

import math

from sqlalchemy import Engine

from digest.config import Settings
from digest.delivery.ratelimit import RateLimiter
from digest.delivery.ratelimit_shared import SharedRateLimiter

#: Under a rate limit, a batch holds at most this many seconds of sending: the edition's
#: state (cancelled, paused) is read at each claim, so it takes effect within that time.
BATCH_SECONDS = 10.0


def batch_size(settings: Settings) -> int:
    """Rows claimed at a time: ``send_batch_size``, or fewer when the rate limit would make
    a batch last longer than ``BATCH_SECONDS`` (at least one row)."""
    rates = [settings.rate_per_second or math.inf, (settings.rate_per_hour or math.inf) / 3600]
    return max(1, int(min(settings.send_batch_size, min(rates) * BATCH_SECONDS)))


def limiter_for(settings: Settings, engine: Engine) -> RateLimiter:
    """The run's rate limiter. On PostgreSQL with a limit, one limit per relay shared
    exactly through the database by every sending process, here or on other machines
    (:mod:`digest.delivery.ratelimit_shared`); otherwise (SQLite: one process) a local one."""
    per_second = settings.rate_per_second or None
    per_hour = settings.rate_per_hour or None
    if engine.dialect.name == "postgresql" and (per_second or per_hour):
        relay = f"{settings.smtp.host}:{settings.smtp.port}" if settings.smtp else "smtp"
        return SharedRateLimiter(engine, relay, per_second, per_hour)
    return RateLimiter(per_second, per_hour)
