"""The admin console's list and health pages in a real headless Chromium, checked by
axe-core at 375 and 1280 px: the list, a search typed and sent in the browser (its answer,
and a refused one), the suppression check, the health index and each chart page, with the
pages' real Content-Security-Policy (a blocked style or script would show in the console)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from digest.store import schema
from digest.store.db import make_engine, session_factory
from tests.admin_pages_support import W48, admin_app, seed
from tests.browser_support import launch_chromium
from tests.conftest import make_settings
from tests.test_web_axe import Auditor


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    yield from launch_chromium()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from werkzeug.serving import make_server

    folder: Path = tmp_path_factory.mktemp("admin-axe")
    engine = make_engine(f"sqlite:///{folder / 'admin.sqlite3'}")
    schema.upgrade(engine)
    factory = session_factory(engine)
    seed(factory, folder)
    app = admin_app(make_settings(folder), factory, lambda: W48)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        server.server_close()
        engine.dispose()


@pytest.fixture
def audit(browser) -> Iterator[Auditor]:  # type: ignore[no-untyped-def]
    auditor = Auditor(browser)
    yield auditor
    auditor.page.close()


def test_the_list_and_a_search_pass_axe(audit: Auditor, base: str) -> None:
    blocked: list[str] = []
    audit.page.on(
        "console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None
    )
    audit.visit(base + "/admin/list/", "admin-list")
    page = audit.page
    page.get_by_label("Address or its beginning").fill("zoe@example.org")
    audit.submit("Search", "admin-list-search", 200)
    expect(page.get_by_role("heading", name="zoe@example.org", exact=True)).to_be_visible()
    expect(page.get_by_role("table", name="Consent record of zoe@example.org")).to_be_visible()
    page.get_by_label("Address or its beginning").fill("zo")
    audit.submit("Search", "admin-list-search-refused", 400)
    expect(page.get_by_text("type at least 4 characters")).to_be_visible()
    page.get_by_label("Is this address on it?").fill("bounced@example.net")
    audit.submit("Check", "admin-list-suppressed", 200)
    expect(page.get_by_text("is on the suppression list (erased)")).to_be_visible()
    audit.done()
    assert blocked == []


def test_each_chart_page_passes_axe(audit: Auditor, base: str) -> None:
    blocked: list[str] = []
    audit.page.on(
        "console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None
    )
    audit.visit(base + "/admin/health/", "admin-health")
    for name in ("topics", "editions", "speed"):
        audit.visit(f"{base}/admin/health/{name}", f"admin-health-{name}")
        charts = audit.page.locator("svg[role=img]")
        assert charts.count() >= 1
        # the chart is drawn with its style (allowed by the nonce): wider than it is tall
        box = charts.first.bounding_box()
        assert box is not None and box["width"] > box["height"] > 100
    audit.done()
    assert blocked == []
