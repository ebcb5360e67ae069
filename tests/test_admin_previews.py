"""Previews in the admin console (what the preview server was), without a password on
127.0.0.1: switching to a subscriber's or some topics' digest, template edits showing on
the next reload, and a test send to an address that is not one, in a real headless
Chromium."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from playwright.sync_api import expect

from digest.render.renderer import builtin_templates_dir
from digest.web.admin import create_admin_app
from tests.admin_support import Console, served_console
from tests.browser_support import launch_chromium
from tests.conftest import NOW


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    yield from launch_chromium()


@pytest.fixture
def console(tmp_path: Path) -> Iterator[tuple[Console, str]]:
    with served_console(tmp_path) as found:
        yield found


def open_page(browser, width: int):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": width, "height": 900})
    return context.new_page()


def switch_persona(page) -> None:  # type: ignore[no-untyped-def]
    """Submit the persona form as a keyboard user would, after closing the browser's
    form-history suggestions (a value typed earlier in this field is offered; twice in CI a
    click after the third fill submitted nothing, the page stayed as it was)."""
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Preview").press("Enter")


def test_switching_persona_to_a_subscriber_and_to_categories(
    browser, console: tuple[Console, str]
) -> None:
    page = open_page(browser, 1280)
    page.goto(console[1] + "/admin/")
    page.get_by_label("Subscriber email").fill("zoe@example.org")
    switch_persona(page)
    expect(page.locator("h1")).to_have_text("What zoe@example.org gets")
    assert (
        "To: =?utf-8?b?Wm/DqyBNw7xsbGVy?= <zoe@example.org>"
        in page.get_by_label("Headers").inner_text()
    )
    # the address is on the page, but in no URL: not the page's, a frame's or a link's
    urls = [page.url, *page.locator("iframe").evaluate_all("fs => fs.map(f => f.src)")]
    urls += page.locator("a").evaluate_all("links => links.map(a => a.href)")
    assert "reader=" in page.url
    assert not [url for url in urls if "zoe" in url.lower()]

    page.get_by_label("Subscriber email").fill("")
    page.get_by_label("Topics").fill("rehabilitation")
    switch_persona(page)
    expect(page.locator("h1")).to_have_text("A reader of rehabilitation")
    frame = page.frame_locator("iframe.desktop")
    assert frame.locator("h3").inner_text() == "Robotic gait training at home"

    page.get_by_label("Topics").fill("astrology")
    switch_persona(page)
    expect(page.get_by_role("alert")).to_have_text(
        "unknown category 'astrology' (see `digest categories list`)"
    )


def test_a_test_to_an_address_that_is_not_one_is_not_sent(
    browser, console: tuple[Console, str]
) -> None:
    site, base = console
    page = open_page(browser, 1280)
    page.goto(base + "/admin/")
    page.get_by_label("Subscriber email").fill("zoe@example.org")
    switch_persona(page)
    page.get_by_label("Send a test to").fill("not an address")
    page.get_by_label("Send a test to").evaluate("input => input.type = 'text'")
    page.get_by_role("button", name="Send test").click()
    expect(page.get_by_role("alert").first).to_contain_text(
        "Not sent: 'not an address' is not a valid email address"
    )
    assert page.locator("h1").inner_text() == "What zoe@example.org gets"  # back on the page
    assert site.smtp.handler.messages == []


def test_template_edits_show_on_the_next_reload(
    browser, console: tuple[Console, str], tmp_path: Path
) -> None:
    from werkzeug.serving import make_server

    site = console[0]
    own = tmp_path / "mine"
    shutil.copytree(builtin_templates_dir(), own)
    app = create_admin_app(replace(site.settings, templates_dir=own), site.engine, now=lambda: NOW)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    page = open_page(browser, 1280)
    page.goto(f"http://127.0.0.1:{server.port}/admin/view?categories=rehabilitation")
    assert "Subject: 1 new summary in Rehabilitation" in page.inner_text("main")
    (own / "email" / "subject.txt.j2").write_text("This week: {{ digest.total }} new\n")
    page.reload()
    assert "Subject: This week: 1 new" in page.inner_text("main")
    assert page.frame_locator("iframe.phone").locator("title").inner_text() == ("This week: 1 new")
    server.shutdown()
    server.server_close()


def test_a_link_to_a_subscriber_works_only_in_the_session_that_looked_them_up(
    browser, console: tuple[Console, str]
) -> None:
    base = console[1]
    page = open_page(browser, 1280)
    page.goto(base + "/admin/")
    page.get_by_label("Subscriber email").fill("zoe@example.org")
    switch_persona(page)
    expect(page.locator("h1")).to_have_text("What zoe@example.org gets")
    link = page.url

    other = open_page(browser, 1280)  # another browser context: another session
    assert other.goto(link).status == 404
    expect(other.get_by_role("alert")).to_contain_text("this preview link has expired")
    assert "zoe" not in other.content().lower()
    # nor does a GET name a subscriber by address
    other.goto(base + "/admin/view?subscriber=zoe@example.org")
    assert "What zoe@example.org gets" not in other.content()
