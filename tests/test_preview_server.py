"""The preview server: its pages in a real headless Chromium (phone and desktop widths, with
screenshots in test-artifacts/), test sends to a real SMTP server, and its HTTP safeguards."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import expect
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.serving import make_server

from digest.config import Settings
from digest.preview.server import create_preview_app
from digest.render.renderer import builtin_templates_dir
from digest.store import schema
from digest.store.db import make_engine, session_factory
from digest.store.models import Delivery
from tests.browser_support import ARTIFACTS, launch_chromium
from tests.conftest import NOW, SmtpServer, add_categories, add_reader, add_summary, make_settings

DAY = dt.timedelta(days=1)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Engine]:
    """A SQLite database with this week's data: two variants, three readers."""
    engine = make_engine(f"sqlite:///{tmp_path / 'preview.sqlite3'}")
    schema.upgrade(engine)
    factory = session_factory(engine)
    add_categories(factory, "Pharmacology", "Neurology", "Rehabilitation")
    add_summary(factory, "Riluzole after acute injury", ["pharmacology"], NOW - DAY)
    add_summary(factory, "Minocycline and inflammation", ["pharmacology", "neurology"], NOW - DAY)
    add_summary(factory, "Nerve transfers for hand function", ["neurology"], NOW - 3 * DAY)
    add_summary(factory, "Robotic gait training at home", ["rehabilitation"], NOW - 4 * DAY)
    add_reader(factory, "zoe@example.org", ["pharmacology", "neurology"], name="Zoë Müller")
    add_reader(factory, "sam@example.org", ["neurology", "pharmacology"])
    add_reader(factory, "rehab@example.org", ["rehabilitation"])
    yield engine
    engine.dispose()


def deliveries(engine: Engine) -> int:
    factory: sessionmaker[Session] = session_factory(engine)
    with factory() as session:
        return session.scalar(select(func.count()).select_from(Delivery)) or 0


def app_for(settings: Settings, engine: Engine) -> Flask:
    return create_preview_app(settings, engine, now=lambda: NOW)


@pytest.fixture
def serve(db: Engine) -> Iterator[object]:
    """Starts the preview app for given settings on 127.0.0.1; returns its base URL."""
    servers = []

    def start(settings: Settings) -> str:
        server = make_server("127.0.0.1", 0, app_for(settings, db), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    yield from launch_chromium()


def open_page(browser, width: int):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": width, "height": 900})
    return context.new_page()


def screenshot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    """The whole page; the viewport grows to it, so that frames below the fold are painted."""
    ARTIFACTS.mkdir(exist_ok=True)
    width = page.viewport_size["width"]
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": width, "height": height})
    page.screenshot(path=str(ARTIFACTS / name))
    page.set_viewport_size({"width": width, "height": 900})


# ---------------------------------------------------------------- in the browser


def test_index_and_a_variant_at_phone_and_desktop_width(
    browser, serve, settings: Settings, db: Engine
) -> None:
    base = serve(settings)
    for width in (375, 1280):
        page = open_page(browser, width)
        response = page.goto(base + "/")
        assert response.status == 200
        assert page.locator("h1").inner_text() == "Edition 2026-W48"
        rows = page.locator("tbody tr")
        assert rows.count() == 2
        first = rows.nth(0).locator("td").all_inner_texts()
        assert first == [
            "1",
            "Neurology, Pharmacology",
            "3 new summaries in Neurology and Pharmacology",
            "3",
            "2",
            "ok",
        ]
        screenshot(page, f"preview-index-{width}.png")

        page.get_by_role("link", name="Neurology, Pharmacology").click()
        expect(page.locator("main")).to_contain_text(
            "Subject: 3 new summaries in Neurology and Pharmacology"
        )
        assert page.get_by_text("Preflight: no problems.").is_visible()
        desktop = 680 if width > 700 else width - 40  # never wider than the screen
        for frame_class, frame_width in (("phone", 375), ("desktop", desktop)):
            frame = page.frame_locator(f"iframe.{frame_class}")
            heading = frame.locator("h1")
            assert heading.inner_text() == "3 new summaries for you"
            box = page.locator(f"iframe.{frame_class}").bounding_box()
            assert box is not None
            assert round(box["width"]) == frame_width
        # the email fits the phone: nothing wider than the frame
        assert (
            page.frame_locator("iframe.phone")
            .locator("body")
            .evaluate("body => body.scrollWidth <= 375")
        )
        text_part = page.get_by_label("Text part").inner_text()
        assert "Riluzole after acute injury" in text_part
        assert "Robotic gait" not in text_part
        headers = page.get_by_label("Headers").inner_text()
        assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in headers
        assert 'To: "Sample Reader" <reader@example.org>' in headers
        screenshot(page, f"preview-variant-{width}.png")
        page.context.close()
    assert deliveries(db) == 0


def switch_persona(page) -> None:  # type: ignore[no-untyped-def]
    """Submit the persona form as a keyboard user would, after closing the browser's
    form-history suggestions (a value typed earlier in this field is offered; twice in CI a
    click after the third fill submitted nothing, the page stayed as it was)."""
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Preview").press("Enter")


def test_switching_persona_to_a_subscriber_and_to_categories(
    browser, serve, settings: Settings
) -> None:
    page = open_page(browser, 1280)
    page.goto(serve(settings) + "/")
    page.get_by_label("Subscriber email").fill("zoe@example.org")
    switch_persona(page)
    expect(page.locator("h1")).to_have_text("What zoe@example.org gets")
    assert (
        "To: =?utf-8?b?Wm/DqyBNw7xsbGVy?= <zoe@example.org>"
        in page.get_by_label("Headers").inner_text()
    )

    page.get_by_label("Subscriber email").fill("")
    page.get_by_label("Categories").fill("rehabilitation")
    switch_persona(page)
    expect(page.locator("h1")).to_have_text("A reader of rehabilitation")
    frame = page.frame_locator("iframe.desktop")
    assert frame.locator("h3").inner_text() == "Robotic gait training at home"

    page.get_by_label("Categories").fill("astrology")
    switch_persona(page)
    expect(page.get_by_role("alert")).to_have_text(
        "unknown category 'astrology' (see `digest categories list`)"
    )
    screenshot(page, "preview-persona-error-1280.png")


def test_send_a_test_through_the_configured_smtp_server(
    browser, serve, tmp_path: Path, db: Engine, smtp_server: SmtpServer
) -> None:
    settings = make_settings(tmp_path, transport="smtp", smtp_url=smtp_server.url)
    page = open_page(browser, 1280)
    page.goto(serve(settings) + "/view?subscriber=zoe@example.org")
    page.get_by_label("Send a test to").fill("editor@example.org")
    page.get_by_role("button", name="Send test").click()
    expect(page.get_by_role("status").first).to_contain_text(
        "Sent a test to editor@example.org via smtp: 250"
    )
    assert page.locator("h1").inner_text() == "What zoe@example.org gets"  # back on the page

    (received,) = smtp_server.handler.messages
    assert received.recipients == ["editor@example.org"]
    msg = email.message_from_bytes(received.data, policy=email.policy.default)
    assert msg["Subject"] == "[TEST] 3 new summaries in Neurology and Pharmacology"
    assert msg["To"] == "editor@example.org"
    assert "/u/preview-token-not-valid-" in msg["List-Unsubscribe"]
    assert deliveries(db) == 0

    page.get_by_label("Send a test to").fill("not an address")
    page.get_by_label("Send a test to").evaluate("input => input.type = 'text'")
    page.get_by_role("button", name="Send test").click()
    expect(page.get_by_role("status").first).to_contain_text(
        "Not sent: 'not an address' is not a valid email address"
    )
    assert len(smtp_server.handler.messages) == 1


def test_template_edits_show_on_the_next_reload(
    browser, serve, settings: Settings, tmp_path: Path
) -> None:
    own = tmp_path / "mine"
    shutil.copytree(builtin_templates_dir(), own)
    page = open_page(browser, 1280)
    page.goto(serve(replace(settings, templates_dir=own)) + "/view?categories=rehabilitation")
    assert "Subject: 1 new summary in Rehabilitation" in page.inner_text("main")
    (own / "email" / "subject.txt.j2").write_text("This week: {{ digest.total }} new\n")
    page.reload()
    assert "Subject: This week: 1 new" in page.inner_text("main")
    assert page.frame_locator("iframe.phone").locator("title").inner_text() == ("This week: 1 new")


# ---------------------------------------------------------------- HTTP safeguards


def test_pages_send_security_headers(settings: Settings, db: Engine) -> None:
    client = app_for(settings, db).test_client()
    page = client.get("/")
    assert page.status_code == 200
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'self'" in csp
    assert "script-src" not in csp  # no script may run at all
    assert page.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    frame = client.get("/email?categories=rehabilitation")
    assert frame.status_code == 200 and frame.mimetype == "text/html"
    assert "sandbox" in frame.headers["Content-Security-Policy"]
    assert frame.headers["X-Frame-Options"] == "SAMEORIGIN"


def test_other_host_names_are_refused(settings: Settings, db: Engine) -> None:
    client = app_for(settings, db).test_client()
    assert client.get("/", headers={"Host": "127.0.0.1:8025"}).status_code == 200
    assert client.get("/", headers={"Host": "digest.attacker.example"}).status_code == 400


def test_a_test_send_needs_post_and_the_page_csrf_token(
    tmp_path: Path, db: Engine, smtp_server: SmtpServer
) -> None:
    settings = make_settings(tmp_path, transport="smtp", smtp_url=smtp_server.url)
    client = app_for(settings, db).test_client()
    form = {"categories": "rehabilitation", "address": "editor@example.org"}
    assert client.get("/send-test", query_string=form).status_code == 405
    forged = client.post("/send-test", data={**form, "csrf_token": "guess"})
    assert forged.status_code == 400
    assert b"This form has expired or came from another page" in forged.data
    assert smtp_server.handler.messages == []
