"""``digest maintenance``: retention (old ledger rows, bounce events, consent records of
erased people), printing what it did; the scheduler runs it weekly."""

from __future__ import annotations

import datetime as dt

import click
from sqlalchemy.orm import Session, sessionmaker

from digest.bounces.retention import Retention, apply_retention
from digest.cli.base import Context, out, pass_app
from digest.config import Settings
from digest.store.db import transaction


def run_maintenance(
    settings: Settings, factory: sessionmaker[Session], *, now: dt.datetime
) -> Retention:
    """One retention pass in one transaction, with the configured keeping periods."""
    with transaction(factory) as session:
        return apply_retention(
            session,
            now=now,
            ledger_days=settings.ledger_retention_days,
            bounce_days=settings.bounce_retention_days,
        )


@click.command()
@pass_app
def maintenance(app: Context) -> None:
    """Delete what is kept no longer: ledger rows older than ledger_retention_days, bounce
    and complaint records older than bounce_retention_days (each edition keeps its totals
    for `digest editions show` and `digest deliverability`), and consent records of erased
    people. Safe to run at any time; the scheduler runs it weekly.

    \b
    Example:
      digest maintenance
    """
    result = run_maintenance(app.settings, app.factory, now=app.now)
    for line in result.lines():
        out.print(line)
