"""Which rate limiter a run sends under."""

from __future__ import annotations

from sqlalchemy import Engine

from digest.config import Settings
from digest.delivery.ratelimit import RateLimiter
from digest.delivery.ratelimit_shared import SharedRateLimiter


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
