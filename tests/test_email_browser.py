"""Every email's HTML in a real Chromium at a phone's width: axe-core finds no violation, every
link and button is a tap target at least 44 px tall, and nothing scrolls sideways.

The messages are written by the product itself (the demo's digests, a confirmation and a
links email; see tests/outbox_support.py) and read back from their .eml files, so what is
checked is exactly what a reader's mail program gets.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser_support import ARTIFACTS, launch_chromium
from tests.outbox_support import html_part, is_digest, write_every_email

TAP_TARGET = 44  # px, WCAG 2.5.5 and Apple's and Google's guidance


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    yield from launch_chromium()


@pytest.fixture(scope="module")
def emails(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One email of each distinct HTML: every digest variant, the confirmation, the links."""
    found: dict[str, str] = {}
    for path in write_every_email(tmp_path_factory.mktemp("outbox")):
        html = html_part(path)
        if html not in found.values():
            found[f"{path.parent.name}/{path.stem}"] = html
    assert sum(1 for name in found if is_digest(Path(name + ".eml"))) >= 10
    return found


def test_every_email_passes_axe_and_has_big_tap_targets_at_375px(  # type: ignore[no-untyped-def]
    browser, emails: dict[str, str]
) -> None:
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    page = browser.new_page(viewport={"width": 375, "height": 800})  # type: ignore[attr-defined]
    problems: dict[str, list[str]] = {}
    for name, html in emails.items():
        page.set_content(html, wait_until="load")
        found = [
            f"{v['id']}: {v['help']} ({len(v['nodes'])}x, e.g. {v['nodes'][0]['html'][:120]})"
            for v in axe.run(page).response["violations"]
        ]
        small = page.eval_on_selector_all(
            "a[href]",
            f"""links => links
                .map(a => [a.textContent.trim(), a.getBoundingClientRect().height])
                .filter(([text, height]) => height < {TAP_TARGET})
                .map(([text, height]) => `tap target ${{Math.round(height)}} px: ${{text}}`)""",
        )
        if page.evaluate("document.documentElement.scrollWidth > 375"):
            found.append("scrolls sideways at 375 px")
        if found or small:
            problems[name] = found + small
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "email-375.png"), full_page=True)
    page.close()
    assert not problems, problems
