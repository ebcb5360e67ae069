"""Retention (``digest maintenance`` and the scheduler's weekly job): ledger rows and bounce
events past their keeping periods leave, with a fixed ``now``; each edition keeps its totals,
so ``digest editions show`` and ``digest deliverability`` say the same before and after."""

from __future__ import annotations

import datetime as dt
import email
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from digest.bounces.parse import Recipient, Report
from digest.bounces.process import handle
from digest.bounces.report import deliverability
from digest.bounces.retention import apply_retention
from digest.cli.main import cli
from digest.cli.schedule import MAINTENANCE_JOB_ID, build_scheduler, scheduled_maintenance
from digest.config import STARTER_CONFIG, Settings
from digest.edition.manage import edition_info
from digest.edition.run import run_edition
from digest.mail.transports import MemoryTransport
from digest.store.db import transaction
from digest.store.models import BounceEvent, Delivery, Edition
from subscribers.models import Consent
from tests.conftest import NOW, add_categories, add_reader, add_summary

DAY = dt.timedelta(days=1)
READERS = ("ann@reader.example", "bob@reader.example", "cy@reader.example")


def sent_edition(
    db_settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> dict[str, str]:
    """This week's edition to three readers; ann's message hard-bounces, bob complains and a
    bounce for a stranger matches nobody. Returns address -> Message-ID."""
    add_categories(factory, "Neurology")
    add_summary(factory, "Nerve transfers for hand function", ["neurology"], NOW - DAY)
    for address in READERS:
        add_reader(factory, address, ["neurology"])
    transport = MemoryTransport()
    run_edition(db_settings, transport, now=NOW, engine=engine)
    ids = {
        e.recipient: str(email.message_from_bytes(raw)["Message-ID"]) for e, raw in transport.outbox
    }
    reports = [
        Report("dsn", "<dsn-1@mx>", recipients=(Recipient(READERS[0], "failed", "5.1.1"),),
               message_ids=(ids[READERS[0]],)),
        Report("complaint", "<arf-1@fbl>", recipients=(Recipient(READERS[1], "complained", ""),),
               feedback_type="abuse"),
        Report("dsn", "<dsn-2@mx>", recipients=(Recipient("x@else.example", "failed", "5.1.1"),)),
    ]  # fmt: skip
    with transaction(factory) as session:
        outcomes = [o for r in reports for o in handle(session, r, None, now=NOW + DAY)]
    assert [o.counted for o in outcomes] == ["hard", "complaint", "unmatched"]
    return ids


def counts(factory: sessionmaker[Session]) -> tuple[object, ...]:
    with factory() as session:
        info = edition_info(session, "2026-W48")
        report = deliverability(session, "2026-W48")
        overall = deliverability(session)
    return dict(info.counts), [v.recipients for v in info.variants], report, overall.lines()


def rows(factory: sessionmaker[Session], model: type) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def retain(factory: sessionmaker[Session], now: dt.datetime) -> list[str]:
    with transaction(factory) as session:
        return apply_retention(session, now=now, ledger_days=400, bounce_days=180).lines()


def test_old_rows_leave_and_editions_keep_their_totals(
    db_settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    sent_edition(db_settings, engine, factory)
    before = counts(factory)
    assert before[0] == {"sent": 3} and before[2].hard == 1 and before[2].complained == 1

    nothing = retain(factory, NOW + 100 * DAY)
    assert nothing[0].endswith(": 0 deleted") and nothing[1].endswith(": 0 deleted")
    assert "none newly" in nothing[2]
    assert rows(factory, BounceEvent) == 3 and rows(factory, Delivery) == 3

    bounces_gone = retain(factory, NOW + 200 * DAY)
    assert bounces_gone[1] == "Bounce and complaint records before 2026-12-13: 3 deleted"
    assert bounces_gone[2] == "Editions keeping their totals from now on: 2026-W48"
    assert rows(factory, BounceEvent) == 0 and rows(factory, Delivery) == 3
    assert counts(factory) == before

    ledger_gone = retain(factory, NOW + 401 * DAY)
    assert ledger_gone[0] == "Ledger rows created before 2026-11-24: 3 deleted"
    assert "none newly" in ledger_gone[2]
    assert rows(factory, Delivery) == 0
    assert counts(factory) == before  # the same totals, from the edition row
    with factory() as session:
        edition = session.scalars(select(Edition)).one()
        assert edition.archived_at == NOW + 200 * DAY
        assert edition.totals is not None and edition.totals["hard"] == 1


def test_consent_records_of_erased_people_do_not_outlive_them(
    config: Path, db_settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    sent_edition(db_settings, engine, factory)
    assert rows(factory, Consent) == 3
    erase = ["--config", str(config), "subscribers", "erase", READERS[2], "--yes"]
    result = CliRunner().invoke(cli, erase)
    assert result.exit_code == 0, result.output
    lines = retain(factory, NOW + DAY)
    assert lines[3] == "Consent records of erased people: 0 deleted"  # erase took them
    assert rows(factory, Consent) == 2


@pytest.fixture
def config(tmp_path: Path, db_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [n for n in __import__("os").environ if n.startswith("DIGEST_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DIGEST_DATABASE_URL", db_settings.database_url)
    monkeypatch.setenv("DIGEST_BOUNCE_RETENTION_DAYS", "30")
    path = tmp_path / "digest.toml"
    path.write_text(STARTER_CONFIG, encoding="utf-8")
    return path


def test_the_command_and_the_weekly_job(
    config: Path, db_settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    sent_edition(db_settings, engine, factory)  # in November 2026: older than 30 days soon
    result = CliRunner().invoke(cli, ["--config", str(config), "maintenance"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Ledger rows created before ")
    assert "Bounce and complaint records before " in result.output
    assert "Consent records of erased people: 0 deleted" in result.output
    job = scheduled_maintenance(str(config))
    assert job.ledger_rows == 0 and job.consents == 0
    scheduler = build_scheduler(db_settings, str(config))
    weekly = scheduler.get_job(MAINTENANCE_JOB_ID)
    assert weekly is not None and "day_of_week='sun'" in str(weekly.trigger)


def test_maintenance_honours_digest_now(
    config: Path,
    db_settings: Settings,
    engine: Engine,
    factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent_edition(db_settings, engine, factory)
    monkeypatch.setenv("DIGEST_NOW", "2028-01-10T08:00:00+00:00")  # over 400 days on
    result = CliRunner().invoke(cli, ["--config", str(config), "maintenance"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Ledger rows created before 2026-")
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
