"""The admin console in a real headless Chromium, as an admin uses it at a phone's width
(375 px) and a desktop's (1280 px): sign in (a wrong password first), "This week", a
variant's preview with its frames, text and .eml, a test send into the real SMTP server,
the confirmation pages, and sending the edition from the console with its progress;
axe-core finds no violation on any of those pages, with their real Content-Security-Policy."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from digest.preview.reader import preview_categories
from digest.store.models import Delivery
from tests.admin_support import PASSWORD, WIDTHS, Console, axe_problems, served_console
from tests.browser_support import launch_chromium
from tests.conftest import NOW


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    yield from launch_chromium()


@pytest.fixture
def console(tmp_path: Path) -> Iterator[tuple[Console, str]]:
    with served_console(tmp_path, admin_password=PASSWORD) as found:
        yield found


def boundless(raw: bytes) -> bytes:
    raw = re.sub(rb"(?m)^Message-ID: <digest\.preview\.[0-9a-f.]+@", b"Message-ID: <M@", raw)
    return re.sub(rb"=_digest_[0-9a-f]+", b"=_digest_B", raw)


def deliveries(console: Console) -> int:
    with console.factory() as session:
        return session.scalar(select(func.count()).select_from(Delivery)) or 0


def sign_in(page, base: str, problems: list[str]) -> None:  # type: ignore[no-untyped-def]
    page.goto(base + "/admin/")
    expect(page.locator("h1")).to_have_text("Sign in to the admin console")
    assert page.url == base + "/admin/login?next=/admin/"
    problems += axe_problems(page, "login")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong password.")
    problems += axe_problems(page, "login-wrong")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("h1")).to_have_text("This week: edition 2026-W48")


def test_an_admin_previews_and_tests_this_week_at_both_widths(
    browser, console: tuple[Console, str]
) -> None:
    site, base = console
    problems: list[str] = []
    for width in WIDTHS:
        context = browser.new_context(viewport={"width": width, "height": 900})
        page = context.new_page()
        sign_in(page, base, problems)
        main = page.locator("main")
        expect(main).to_contain_text("due Due since Mon 23 Nov 2026 08:00 (UTC); not sent yet.")
        rows = page.locator("table").first.locator("tbody tr")
        assert rows.count() == 2
        first = rows.nth(0).locator("td")
        assert first.nth(1).inner_text() == "3 new summaries in Neurology and Pharmacology"
        assert first.nth(2).inner_text() == "Neurology, Pharmacology"
        assert first.nth(4).inner_text() == "2"  # readers
        assert first.nth(5).inner_text() == "ok"
        expect(main).to_contain_text("3 readers would get a digest if the edition were sent now")
        problems += axe_problems(page, f"week-{width}")

        page.get_by_role("link", name="Preview variant 1").click()
        expect(main).to_contain_text("Subject: 3 new summaries in Neurology and Pharmacology")
        expect(page.get_by_text("Preflight: no problems.")).to_be_visible()
        heading = page.frame_locator("iframe.phone").locator("h1")
        expect(heading).to_have_text("3 new summaries for you")
        box = page.locator("iframe.phone").bounding_box()
        assert box is not None and round(box["width"]) == min(375, width - 40)
        assert "Riluzole after acute injury" in page.get_by_label("Text part").inner_text()
        assert "Robotic gait" not in page.get_by_label("Text part").inner_text()
        problems += axe_problems(page, f"variant-{width}")

        address = f"editor{width}@example.org"
        page.get_by_label("Send a test to").fill(address)
        page.get_by_role("button", name="Send test").click()
        expect(page.get_by_role("status").first).to_contain_text(
            f"Sent a test to {address} via smtp: 250"
        )
        (received,) = [m for m in site.smtp.handler.messages if m.recipients == [address]]
        message = email.message_from_bytes(received.data, policy=email.policy.default)
        assert message["Subject"] == "[TEST] 3 new summaries in Neurology and Pharmacology"
        problems += axe_problems(page, f"test-sent-{width}")

        page.get_by_role("link", name="This week", exact=True).click()
        page.get_by_role("link", name="Send edition 2026-W48…").click()
        expect(page.locator("h1")).to_have_text("Send edition 2026-W48 now?")
        problems += axe_problems(page, f"confirm-send-{width}")
        page.get_by_role("link", name="No, back to this week").click()
        expect(page.locator("h1")).to_have_text("This week: edition 2026-W48")
        context.close()
    assert deliveries(site) == 0  # previews and tests touch no ledger row
    assert not problems, problems


def test_the_eml_and_text_are_what_digest_preview_writes(
    browser, console: tuple[Console, str]
) -> None:
    site, base = console
    page = browser.new_page()
    sign_in(page, base, [])
    wanted = preview_categories(site.settings, ["rehabilitation"], now=NOW, engine=site.engine)
    eml = page.request.get(base + "/admin/eml?categories=rehabilitation")
    assert eml.status == 200
    assert eml.headers["content-disposition"] == 'attachment; filename="rehabilitation.eml"'
    # byte for byte, but for the Message-ID and MIME boundary, new in every message
    assert boundless(eml.body()) == boundless(wanted.eml)
    assert len(eml.body()) == len(wanted.eml)
    assert b"Message-ID: <M@example.org>" in boundless(wanted.eml)
    text = page.request.get(base + "/admin/text?categories=rehabilitation")
    assert text.text() == wanted.text
    html = page.request.get(base + "/admin/email?categories=rehabilitation")
    assert html.text() == wanted.html
    assert "sandbox" in html.headers["content-security-policy"]
    page.close()


def test_an_admin_sends_the_edition_and_watches_it_finish(
    browser, console: tuple[Console, str]
) -> None:
    site, base = console
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, base, [])
    page.get_by_role("button", name="Run the preflight").click()
    expect(page.locator("#preflight ~ p").first).to_contain_text("Run at")
    expect(page.locator("main")).to_contain_text("No problems found.")
    page.get_by_role("link", name="Send edition 2026-W48…").click()
    page.get_by_role("button", name="Yes, send it").click()
    expect(page.get_by_role("status").first).to_contain_text("Started sending edition 2026-W48")
    # the page reloads itself while the send runs, then says how it went
    expect(page.locator("main")).to_contain_text("Sent 3 in", timeout=60_000)
    expect(page.locator(".state")).to_have_text("complete")
    received = {r for m in site.smtp.handler.messages for r in m.recipients}
    assert received == {"zoe@example.org", "sam@example.org", "rehab@example.org"}
    expect(page.locator("main")).to_contain_text("Nobody is left to get a digest")
    assert page.get_by_role("link", name="Send edition 2026-W48…").count() == 0
    assert page.get_by_role("link", name="Cancel edition 2026-W48…").count() == 0
    problems = axe_problems(page, "week-sent")
    page.get_by_role("link", name="Preview ledger variant 1").click()
    expect(page.locator("main")).to_contain_text("Subject: 3 new summaries")
    assert not problems, problems
    page.close()
