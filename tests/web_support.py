"""Helpers for the subscriber-pages tests: a site (app, database, SMTP server and a clock
the test moves), sending an edition, reading received messages and links."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings
from digest.delivery.transport import make_transport
from digest.edition.run import EditionReport, run_edition
from digest.store import schema
from digest.store.db import make_engine, session_factory
from digest.web import create_app
from subscribers.models import Subscriber
from tests.conftest import (
    NOW,
    RecordingHandler,
    SmtpServer,
    add_categories,
    add_reader,
    add_summary,
    free_port,
    make_settings,
)

DAY = dt.timedelta(days=1)
WEEK = dt.timedelta(weeks=1)
ONE_CLICK = "List-Unsubscribe=One-Click"


@dataclass
class Site:
    settings: Settings
    engine: Engine
    smtp: SmtpServer
    app: Flask
    clock: list[dt.datetime] = field(default_factory=lambda: [NOW])

    @property
    def factory(self) -> sessionmaker[Session]:
        return session_factory(self.engine)

    def send_edition(self, at: dt.datetime) -> EditionReport:
        self.clock[0] = at
        transport = make_transport(self.settings)
        try:
            return run_edition(self.settings, transport, now=at, engine=self.engine)
        finally:
            transport.close()

    def received(self, recipient: str) -> list[EmailMessage]:
        return [message_of(m.data) for m in self.smtp.handler.messages if recipient in m.recipients]

    def subscriber(self, address: str) -> Subscriber:
        with self.factory() as session:
            found = session.scalar(select(Subscriber).where(Subscriber.email_key == address))
            assert found is not None
            session.expunge(found)
            return found


def make_site(
    tmp_path: Path, engine: Engine, smtp: SmtpServer, *, data: bool = True, **overrides: str
) -> Site:
    settings = make_settings(tmp_path, transport="smtp", smtp_url=smtp.url, **overrides)
    settings = replace(settings, database_url=engine.url.render_as_string(hide_password=False))
    clock = [NOW]
    app = create_app(settings, engine, now=lambda: clock[0])
    app.config["TESTING"] = True
    site = Site(settings, engine, smtp, app, clock)
    if data:
        factory = site.factory
        add_categories(factory, "Pharmacology", "Neurology", "Rehabilitation")
        add_summary(factory, "Riluzole after acute injury", ["pharmacology"], NOW - DAY)
        add_summary(factory, "Nerve transfers for hand function", ["neurology"], NOW - 2 * DAY)
        add_summary(factory, "Robotic gait training at home", ["rehabilitation"], NOW - 3 * DAY)
        add_reader(factory, "zoe@example.org", ["pharmacology", "neurology"], name="Zoë Müller")
        add_reader(factory, "sam@example.org", ["rehabilitation"])
    return site


def next_week_summaries(site: Site) -> None:
    add_summary(site.factory, "Spasticity and cannabis", ["pharmacology"], NOW + WEEK - DAY)
    add_summary(site.factory, "Cough assist devices", ["rehabilitation"], NOW + WEEK - DAY)
    add_summary(site.factory, "Imaging the injured cord", ["neurology"], NOW + WEEK - DAY)


def message_of(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    content: str = part.get_content()
    return content


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    content: str = part.get_content()
    return content


def one_click_path(message: EmailMessage) -> str:
    """The https URL of List-Unsubscribe, as a path for the test client."""
    header = str(message["List-Unsubscribe"])
    (url,) = [u for u in re.findall(r"<([^>]+)>", header) if u.startswith("https://")]
    return path_of(url)


def path_of(url: str) -> str:
    parts = urlsplit(url)
    base = "/digest" if parts.path.startswith("/digest/") else ""
    return parts.path[len(base) :]


def link_after(text: str, label: str) -> str:
    """The URL on the line after ``label`` in a text part."""
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if line.strip().startswith(label))
    return lines[index + 1].strip()


@contextmanager
def served_site(
    folder: Path, prepare: Callable[[Site], None] = lambda site: None, **overrides: str
) -> Iterator[tuple[Site, str]]:
    """A site on a SQLite database in ``folder`` with a real SMTP server on loopback:
    ``prepare`` adds what the tests need, this week's edition is sent, and the app serves
    on 127.0.0.1 in a thread. Yields the site and its base URL."""
    from aiosmtpd.controller import Controller
    from werkzeug.serving import make_server

    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    engine = make_engine(f"sqlite:///{folder / 'site.sqlite3'}")
    schema.upgrade(engine)
    try:
        site = make_site(folder, engine, SmtpServer("127.0.0.1", port, handler), **overrides)
        prepare(site)
        site.send_edition(NOW)
        server = make_server("127.0.0.1", 0, site.app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield site, f"http://127.0.0.1:{server.port}"
        finally:
            server.shutdown()
            server.server_close()
    finally:
        engine.dispose()
        controller.stop()
