"""Helpers for the admin console's tests: a console on a SQLite database with this week's
data, a real SMTP server on loopback and a clock the test moves, served on 127.0.0.1 in a
thread; a test client signed in; axe-core on a page at phone and desktop widths."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings
from digest.store import schema
from digest.store.db import make_engine, session_factory
from digest.web.admin import create_admin_app
from tests.browser_support import ARTIFACTS
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
PASSWORD = "correct horse battery staple"
WIDTHS = (375, 1280)


@dataclass
class Console:
    settings: Settings
    engine: Engine
    smtp: SmtpServer
    app: Flask
    clock: list[dt.datetime] = field(default_factory=lambda: [NOW])

    @property
    def factory(self) -> sessionmaker[Session]:
        return session_factory(self.engine)


def this_week(factory: sessionmaker[Session]) -> None:
    """Two variants (two readers of pharmacology and neurology, one of rehabilitation)."""
    add_categories(factory, "Pharmacology", "Neurology", "Rehabilitation")
    add_summary(factory, "Riluzole after acute injury", ["pharmacology"], NOW - DAY)
    add_summary(factory, "Minocycline and inflammation", ["pharmacology", "neurology"], NOW - DAY)
    add_summary(factory, "Nerve transfers for hand function", ["neurology"], NOW - 3 * DAY)
    add_summary(factory, "Robotic gait training at home", ["rehabilitation"], NOW - 4 * DAY)
    add_reader(factory, "zoe@example.org", ["pharmacology", "neurology"], name="Zoë Müller")
    add_reader(factory, "sam@example.org", ["neurology", "pharmacology"])
    add_reader(factory, "rehab@example.org", ["rehabilitation"])


def make_console(
    folder: Path, engine: Engine, smtp: SmtpServer, *, data: bool = True, **overrides: str
) -> Console:
    settings = make_settings(folder, transport="smtp", smtp_url=smtp.url, **overrides)
    settings = replace(settings, database_url=engine.url.render_as_string(hide_password=False))
    clock = [NOW]
    app = create_admin_app(settings, engine, now=lambda: clock[0])
    console = Console(settings, engine, smtp, app, clock)
    if data:
        this_week(console.factory)
    return console


@contextmanager
def served_console(folder: Path, **overrides: str) -> Iterator[tuple[Console, str]]:
    """A console (``overrides`` are settings, such as ``admin_password``) with a real SMTP
    server, served on 127.0.0.1 in a thread. Yields it and its base URL."""
    from aiosmtpd.controller import Controller
    from werkzeug.serving import make_server

    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    engine = make_engine(f"sqlite:///{folder / 'console.sqlite3'}")
    schema.upgrade(engine)
    try:
        console = make_console(folder, engine, SmtpServer("127.0.0.1", port, handler), **overrides)
        server = make_server("127.0.0.1", 0, console.app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield console, f"http://127.0.0.1:{server.port}"
        finally:
            server.shutdown()
            server.server_close()
    finally:
        engine.dispose()
        controller.stop()


def signed_in(app: Flask) -> FlaskClient:
    """A test client with a signed-in session and its CSRF token (``client.csrf``)."""
    client = app.test_client()
    with client.session_transaction() as session:
        session["admin"] = True
        session["csrf"] = "test-csrf-token"
    client.csrf = "test-csrf-token"  # type: ignore[attr-defined]
    return client


def axe_problems(page, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    """axe-core's violations on ``page`` at each of :data:`WIDTHS`, and sideways scrolling;
    a full-page screenshot at each width in test-artifacts/."""
    from axe_playwright_python.sync_playwright import Axe

    axe, found = Axe(), []
    size = page.viewport_size
    ARTIFACTS.mkdir(exist_ok=True)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        for v in axe.run(page).response["violations"]:
            nodes = v["nodes"]
            found.append(f"{name} at {width}: {v['id']}: {v['help']} ({nodes[0]['html'][:120]})")
        if page.evaluate(f"document.documentElement.scrollWidth > {width}"):
            found.append(f"{name} scrolls sideways at {width} px")
        page.screenshot(path=str(ARTIFACTS / f"admin-{name}-{width}.png"), full_page=True)
    page.set_viewport_size(size)
    return found
