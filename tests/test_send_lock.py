"""Never two senders: the edition's hold is proven while messages go out, whatever the
rate, and a sender that cannot prove it stops before its next message. Real ``digest
send`` processes, a real SMTP server, SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from digest.config import STARTER_CONFIG
from digest.delivery.locks import SendLock, _advisory_id, advisory_id, no_workers, working_on
from digest.store.db import make_engine, session_factory, transaction
from digest.store.models import Delivery, Edition, EditionLock
from subscribers import service
from tests.conftest import PG_URL, SmtpServer, add_categories, add_summary, pg_schema

READERS = 30
RATE = 4.0  # messages per second: the run takes about 7.5 s
LEASE = 2.0  # seconds: proven every 0.2 s


def _setup(tmp_path: Path, smtp: SmtpServer, factory: sessionmaker[Session], url: str) -> Path:
    config = tmp_path / "digest.toml"
    chosen = {
        "transport": '"smtp"',
        "smtp_url": f'"{smtp.url}"',
        "smtp_connections": "1",
        "send_batch_size": "10",
        "rate_per_second": str(RATE),
        "send_lease_seconds": str(LEASE),
        "database_url": f'"{url}"',
    }
    kept = [line for line in STARTER_CONFIG.splitlines() if line.split(" =")[0] not in chosen]
    config.write_text("\n".join(kept + [f"{k} = {v}" for k, v in chosen.items()]) + "\n")
    now = dt.datetime.now(dt.UTC)
    add_categories(factory, "Pharmacology")
    add_summary(factory, "A study", ["pharmacology"], now - dt.timedelta(days=1))
    with transaction(factory) as session:
        for i in range(READERS):
            service.add_subscriber(
                session, f"r{i:02d}@example.org", ["pharmacology"], confirmed=True, now=now
            )
    return config


def _send(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(config), "send"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")},
    )


def _wait_for(smtp: SmtpServer, count: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while len(smtp.handler.messages) < count:
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "no messages arrived"
        time.sleep(0.01)


def _each_reader_once(smtp: SmtpServer, factory: sessionmaker[Session]) -> None:
    copies = Counter(r for m in smtp.handler.messages for r in m.recipients)
    assert len(copies) == READERS and set(copies.values()) == {1}, copies.most_common(3)
    with factory() as session:
        statuses = session.execute(
            select(Delivery.status, func.count()).group_by(Delivery.status)
        ).all()
    assert dict(statuses) == {"sent": READERS}


def _terminate_lock_session(engine: Engine, key: str, purpose: str = "edition") -> int:
    """End the PostgreSQL sessions of this database holding edition ``key``'s advisory lock
    for ``purpose`` (not another database's on the same server: a test run beside this
    one, say); returns how many."""
    with engine.begin() as conn:
        unsigned = advisory_id(conn, key, purpose) & 0xFFFF_FFFF_FFFF_FFFF
        ended = conn.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype ="
                " 'advisory' AND classid::bigint = :hi AND objid::bigint = :lo AND database ="
                " (SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            {"hi": unsigned >> 32, "lo": unsigned & 0xFFFF_FFFF},
        )
    return int(ended or 0)


@pytest.fixture
def sqlite(tmp_path: Path) -> tuple[str, Engine]:
    from digest.store import schema

    url = f"sqlite:///{tmp_path / 'digest.sqlite3'}"
    engine = make_engine(url)
    schema.upgrade(engine)
    return url, engine


def test_a_send_started_after_the_lease_would_have_run_out_finds_it_renewed(
    tmp_path: Path, smtp_server: SmtpServer, sqlite: tuple[str, Engine]
) -> None:
    url, engine = sqlite
    factory = session_factory(engine)
    config = _setup(tmp_path, smtp_server, factory, url)
    first = _send(config)
    _wait_for(smtp_server, 2, first)
    time.sleep(LEASE * 1.5)  # well past a lease that was only renewed between batches
    second = _send(config)
    said = second.communicate(timeout=60)[0]
    assert second.returncode == 0 and "is being sent by" in said, said
    assert first.poll() is None  # still sending all along
    out = first.communicate(timeout=60)[0]
    assert first.returncode == 0, out
    _each_reader_once(smtp_server, factory)


def test_a_sender_whose_lease_was_taken_stops_and_the_next_one_finishes(
    tmp_path: Path, smtp_server: SmtpServer, sqlite: tuple[str, Engine]
) -> None:
    url, engine = sqlite
    factory = session_factory(engine)
    config = _setup(tmp_path, smtp_server, factory, url)
    first = _send(config)
    _wait_for(smtp_server, 3, first)
    # as if another machine's sender had taken the lease over (its renewal came too late)
    with engine.begin() as conn:
        conn.execute(
            update(EditionLock).values(
                holder="elsewhere:1:cafe", expires_at=dt.datetime.now(dt.UTC)
            )
        )
    out = first.communicate(timeout=30)[0]
    assert first.returncode == 1, out
    assert "Error: lost the send lock of edition" in out and out.count("\n") == 1, out
    stopped_at = len(smtp_server.handler.messages)
    assert stopped_at < READERS
    second = _send(config)
    out = second.communicate(timeout=60)[0]
    assert second.returncode == 0, out
    _each_reader_once(smtp_server, factory)


@pytest.mark.postgres
def test_a_sender_whose_lock_session_is_terminated_stops_before_a_second_sends(
    tmp_path: Path, smtp_server: SmtpServer, engine: Engine
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("advisory-lock sessions are PostgreSQL's")
    assert PG_URL
    factory = session_factory(engine)
    url = engine.url.render_as_string(hide_password=False)
    config = _setup(tmp_path, smtp_server, factory, url)
    first = _send(config)
    _wait_for(smtp_server, 3, first)
    with factory() as session:
        key = session.scalars(select(Edition.key)).one()
    # a pooler restart or a network blip does the same
    assert _terminate_lock_session(engine, key) == 1
    second = _send(config)  # started at once, while the first may still be sending
    out_second = second.communicate(timeout=90)[0]
    out_first = first.communicate(timeout=30)[0]
    assert first.returncode == 1 and "Error: lost the send lock of edition" in out_first
    assert second.returncode == 0, out_second
    _each_reader_once(smtp_server, factory)


def test_the_hold_is_proven_while_held_and_lost_soon_after_it_is_taken(engine: Engine) -> None:
    """In one process, on both databases: renewed (SQLite) or checked (PostgreSQL) every
    heartbeat; taken over or its session ended, ``holds()`` turns False within two."""
    lock = SendLock(engine, "2026-W49", lease=dt.timedelta(seconds=1), heartbeat=0.1)
    assert lock.acquire()
    try:
        # proven from before the acquire: on a loaded machine the acquire itself can
        # outlast that first proof (0.2 s), and the next heartbeat proves it again
        deadline = time.monotonic() + 2
        while not lock.holds():
            assert time.monotonic() < deadline, "the hold is never proven"
            time.sleep(0.01)
        time.sleep(1.5)  # longer than the lease: still held, it was renewed meanwhile
        assert lock.holds() and lock.lost is None
        if engine.dialect.name == "postgresql":
            assert _terminate_lock_session(engine, "2026-W49") == 1
        else:
            with engine.begin() as conn:
                conn.execute(update(EditionLock).values(holder="elsewhere:1:cafe"))
        deadline = time.monotonic() + 0.4
        while lock.holds():
            assert time.monotonic() < deadline, "still claims the edition"
            time.sleep(0.01)
        assert lock.lost is not None
    finally:
        lock.release()  # also when the session is gone; a failure leaves no lock behind


@pytest.mark.postgres
def test_a_worker_whose_shared_lock_session_ends_can_tell(engine: Engine) -> None:
    """A run started then would take the worker's rows for a crash's: the worker sees it
    lost its lock within two heartbeats (and its sender stops before the next message)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("worker processes share an edition through PostgreSQL")
    with working_on(engine, "2026-W49", heartbeat=0.1) as holds:
        time.sleep(0.3)
        assert holds()
        assert _terminate_lock_session(engine, "2026-W49", "workers") == 1
        deadline = time.monotonic() + 0.4
        while holds():
            assert time.monotonic() < deadline, "the worker still thinks it holds the edition"
            time.sleep(0.01)


@pytest.mark.postgres
def test_two_lists_in_one_database_each_send_their_week(engine: Engine) -> None:
    """Two installations in one PostgreSQL database, each in its own schema (the URL's
    search_path), send the same week at once: advisory locks are per database, so each
    schema's are its own; within one schema a second sender is still refused."""
    if engine.dialect.name != "postgresql":
        pytest.skip("advisory locks are PostgreSQL's")
    with pg_schema("other") as other:
        with SendLock(engine, "2026-W49") as ours, SendLock(other, "2026-W49") as theirs:
            assert ours.acquired and theirs.acquired
            with SendLock(other, "2026-W49") as again:
                assert not again.acquired and again.other == "another process"
        # a worker process sending the other list's week does not hold up this one's run
        with working_on(other, "2026-W49") as working, no_workers(engine, "2026-W49") as alone:
            assert working() and alone
        with working_on(other, "2026-W49"), no_workers(other, "2026-W49") as alone:
            assert not alone


def test_the_default_schemas_locks_are_those_of_earlier_versions() -> None:
    """A sender of the previous version and one of this version on the same list (an
    upgrade during a send) still exclude each other: ``public``'s ids did not change."""
    import hashlib

    earlier = hashlib.sha256(b"digest-edition:2026-W49").digest()[:8]
    assert _advisory_id("2026-W49") == int.from_bytes(earlier, "big", signed=True)
    assert _advisory_id("2026-W49", schema="list_b") != _advisory_id("2026-W49")
