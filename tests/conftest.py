"""Shared fixtures: settings, a migrated database (SQLite, and PostgreSQL when
DIGEST_TEST_DATABASE_URL is set), a real SMTP server on loopback, and data helpers."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from digest.config import STARTER_CONFIG, Settings, load_settings
from digest.sources.store import SummaryRecord, ensure_category, upsert_summary
from digest.store import schema
from digest.store.db import make_engine, session_factory, transaction
from subscribers import service
from subscribers.models import Subscriber

#: Monday 23 November 2026, 08:00 UTC: the start of ISO week 2026-W48.
NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)


def _database_of_this_worker(url: str | None) -> str | None:
    """``url``, or under pytest-xdist (``-n``) the database ``<name>_<worker>`` on the same
    server, created when missing. Each test has a schema of its own, but some look at the
    whole database: the benchmark's count of the CPU of a database's backends must see
    only this worker's."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not url or not worker:
        return url
    given = make_url(url)
    name = f"{given.database}_{worker}"
    admin = create_engine(given, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            known = "SELECT 1 FROM pg_database WHERE datname = :name"
            if conn.scalar(text(known), {"name": name}) is None:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return given.set(database=name).render_as_string(hide_password=False)


PG_URL = _database_of_this_worker(os.environ.get("DIGEST_TEST_DATABASE_URL"))


def make_settings(tmp_path: Path, **overrides: str) -> Settings:
    config = tmp_path / "digest.toml"
    config.write_text(STARTER_CONFIG, encoding="utf-8")
    env = {f"DIGEST_{k.upper()}": v for k, v in overrides.items()}
    return load_settings(config, env=env)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty database: a SQLite file, or a fresh schema on PostgreSQL."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'test.sqlite3'}")
        schema.upgrade(eng)
        yield eng
        eng.dispose()
        return
    with pg_schema("t") as eng:
        yield eng


@contextmanager
def pg_schema(prefix: str) -> Iterator[Engine]:
    """A migrated, empty schema ``<prefix>_<random>`` on the PostgreSQL server of the tests
    (skips without one), dropped afterwards. The schema travels in the engine's URL (its
    search_path), so processes started from ``db_settings`` use it too."""
    if not PG_URL:
        pytest.skip("PostgreSQL tests need DIGEST_TEST_DATABASE_URL (set by .ci/run)")
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {name}"))
    eng = make_engine(f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{name}")
    try:
        schema.upgrade(eng)
        yield eng
    finally:
        eng.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
        admin.dispose()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


@pytest.fixture
def db_settings(settings: Settings, engine: Engine) -> Settings:
    """Settings whose database_url is the test database (for code that opens its own)."""
    from dataclasses import replace

    return replace(settings, database_url=engine.url.render_as_string(hide_password=False))


# ---------------------------------------------------------------- data helpers


def add_categories(factory: sessionmaker[Session], *names: str) -> None:
    with transaction(factory) as session:
        for name in names:
            ensure_category(session, name.lower().replace(" ", "-"), name)


def add_summary(
    factory: sessionmaker[Session],
    title: str,
    categories: Sequence[str],
    published_at: dt.datetime,
    **fields: object,
) -> None:
    slug = title.lower().replace(" ", "-")[:60]
    record = SummaryRecord(
        title=title,
        url=fields.pop("url", f"https://example.org/research/{slug}"),  # type: ignore[arg-type]
        published_at=published_at,
        categories=tuple(categories),
        fields={
            "journal": "Journal of Neurotrauma",
            "year": 2026,
            "simple_explanation": f"What {title} found, in plain words. It matters for people.",
            "key_findings": [f"The main finding of {title}."],
            **fields,
        },
    )
    with transaction(factory) as session:
        upsert_summary(session, record, now=published_at)


def add_reader(
    factory: sessionmaker[Session],
    email: str,
    categories: Sequence[str],
    *,
    joined: dt.datetime = NOW - dt.timedelta(days=1),
    name: str | None = None,
    confirmed: bool = True,
) -> Subscriber:
    with transaction(factory) as session:
        return service.add_subscriber(
            session, email, categories, name=name, confirmed=confirmed, now=joined
        )


# ---------------------------------------------------------------- SMTP server


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes


@dataclass
class FakeTime:
    """A clock for rate limiters that moves only when slept on (``now`` may be moved by
    hand), recording each sleep rounded to the microsecond."""

    now: float = 0.0
    slept: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


@dataclass
class RecordingHandler:
    """Keeps every message; can refuse recipients with a chosen reply."""

    messages: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        with self.lock:
            self.messages.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
            )
        return "250 2.0.0 queued"

    def by_recipient(self) -> dict[str, Received]:
        return {r: m for m in self.messages for r in m.recipients}


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: RecordingHandler

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that records what it receives."""
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, handler)
    finally:
        controller.stop()
