"""The real browser for page tests: Debian's /usr/bin/chromium driven by Playwright (never
`playwright install`), skipped only where that file is missing. Screenshots go to
test-artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Pages render whole digests; on a busy CI machine that can take longer than Playwright's
# 5 s default for an expect() to see the page a click leads to.
expect.set_options(timeout=30_000)


def launch_chromium() -> Iterator[object]:
    """Body of a module-scoped ``browser`` fixture: one headless Chromium for the module."""
    if not CHROMIUM.exists():
        pytest.skip(
            "headless Chromium is not installed at /usr/bin/chromium (apt install chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
