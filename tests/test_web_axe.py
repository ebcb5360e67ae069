"""Every page of ``digest serve`` in a real headless Chromium, checked by axe-core at a
phone's width (375 px) and a desktop's (1280 px): no violation on the sign-up, confirmation,
unsubscribe, preferences and link-request pages (with their answers and errors), the
archive, the edition pages, the web version of a digest and the error pages.

Each page is reached as a reader reaches it (links from the emails the site sent, forms
filled and sent in the browser), so what axe sees is what a reader's browser shows, with
the pages' real Content-Security-Policy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.browser_support import ARTIFACTS, launch_chromium
from tests.conftest import NOW, add_summary
from tests.web_support import DAY, Site, link_after, path_of, served_site, text_of

WIDTHS = (375, 1280)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    yield from launch_chromium()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, str]]:
    """One site for the module: this week's edition sent (two cards per digest, so the
    digests link to the edition pages) to a real SMTP server; the app on 127.0.0.1."""

    def prepare(site: Site) -> None:
        add_summary(
            site.factory,
            "Baclofen pump outcomes",
            ["pharmacology"],
            NOW - 4 * DAY,
            doi="10.1000/bp.1",
            pmid="31415926",
            study_type="Pilot study",
            limitations=["Only 11 people took part."],
            practical_implications="Ask your team whether a pump could suit you.",
        )
        add_summary(
            site.factory, "Stem cells in rats", ["neurology"], NOW - 5 * DAY, population="rats"
        )

    with served_site(tmp_path_factory.mktemp("axe"), prepare, card_cap="2") as found:
        yield found


class Auditor:
    """Runs axe-core on the page in the browser at each width, collecting what it finds."""

    def __init__(self, browser) -> None:  # type: ignore[no-untyped-def]
        from axe_playwright_python.sync_playwright import Axe

        self.axe = Axe()
        self.page = browser.new_page(viewport={"width": WIDTHS[0], "height": 800})
        self.problems: dict[str, list[str]] = {}
        self.seen: list[str] = []

    def check(self, name: str, status: int | None = None) -> None:
        page = self.page
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 800})
            found = [
                f"{v['id']}: {v['help']} ({len(v['nodes'])}x, e.g. {v['nodes'][0]['html'][:120]})"
                for v in self.axe.run(page).response["violations"]
            ]
            if page.evaluate(f"document.documentElement.scrollWidth > {width}"):
                found.append(f"scrolls sideways at {width} px")
            if found:
                self.problems[f"{name} at {width} px"] = found
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"axe-{name}-1280.png"), full_page=True)
        page.set_viewport_size({"width": WIDTHS[0], "height": 800})
        self.seen.append(name)

    def visit(self, url: str, name: str, status: int = 200) -> None:
        answer = self.page.goto(url)
        assert answer is not None and answer.status == status, (url, answer and answer.status)
        self.check(name)

    def visit_html(self, url: str, name: str) -> None:
        """The web version of an email: its sandbox policy (no script at all) would stop
        axe too, so its HTML is checked as the page's content, as the emails' are."""
        answer = self.page.request.get(url)
        assert answer.status == 200, (url, answer.status)
        assert "sandbox" in answer.headers["content-security-policy"]
        self.page.set_content(answer.text(), wait_until="load")
        self.check(name)

    def submit(self, button: str, name: str, status: int) -> None:
        """Press the form button called ``button`` and check the page it answers with."""
        with self.page.expect_response(lambda r: r.request.method == "POST") as posted:
            self.page.get_by_role("button", name=button).click()
        assert posted.value.status == status, (name, posted.value.status)
        self.page.wait_for_load_state()
        self.check(name)

    def done(self) -> None:
        self.page.close()
        assert not self.problems, self.problems


@pytest.fixture
def audit(browser) -> Iterator[Auditor]:  # type: ignore[no-untyped-def]
    auditor = Auditor(browser)
    yield auditor
    auditor.page.close()


def test_public_pages_pass_axe(audit: Auditor, served: tuple[Site, str]) -> None:
    site, base = served
    (digest,) = site.received("zoe@example.org")
    text = text_of(digest)
    audit.visit(base + "/archive", "archive")
    audit.visit(base + "/archive/neurology", "archive-topic")
    audit.visit(base + "/editions/2026-W48", "edition")
    more = next(line for line in text.splitlines() if " more in " in line)
    audit.visit(base + path_of(more.split(": ", 1)[1].strip()), "edition-topic")
    expect(audit.page.locator("h1")).to_contain_text("week of 23 November 2026")
    web_version = base + path_of(link_after(text, "View this email in your browser"))
    audit.visit_html(web_version, "web-version")
    audit.visit(base + "/u/" + "n" * 43, "not-found", status=404)
    audit.visit(base + "/editions/2026-W01", "edition-not-found", status=404)
    audit.done()


def test_reader_pages_pass_axe(audit: Auditor, served: tuple[Site, str]) -> None:
    site, base = served
    token = site.subscriber("sam@example.org").token
    page = audit.page
    audit.visit(f"{base}/p/{token}", "preferences")
    page.get_by_label("Rehabilitation").uncheck()
    audit.submit("Save my choices", "preferences-error", 400)
    page.get_by_label("Neurology").check()
    page.get_by_label("Pause for 4 weeks").check()
    audit.submit("Save my choices", "preferences-saved", 303)  # then the form, saved
    expect(page.get_by_role("status")).to_contain_text("Your choices are saved")
    page.evaluate("document.querySelector('input[name=csrf]').value = 'stale'")
    audit.submit("Save my choices", "expired-form", 400)
    audit.visit(f"{base}/u/{token}", "unsubscribe")
    audit.submit("Unsubscribe from all emails", "unsubscribed", 200)
    audit.visit(f"{base}/u/{token}", "unsubscribe-after")
    audit.done()


def test_sign_up_and_link_pages_pass_axe(audit: Auditor, served: tuple[Site, str]) -> None:
    site, base = served
    page = audit.page
    audit.visit(base + "/subscribe", "subscribe")
    page.get_by_label("Email address").fill("ada@example.org")
    audit.submit("Subscribe", "subscribe-error", 400)  # no topic chosen
    page.get_by_label("Rehabilitation").check()
    audit.submit("Subscribe", "check-inbox", 200)
    (message,) = site.received("ada@example.org")
    confirm = base + path_of(link_after(text_of(message), "To confirm, open this link"))
    audit.visit(confirm, "confirm")
    audit.submit("Yes, send me the digest", "confirmed", 200)

    audit.visit(base + "/unsubscribe", "request-links")
    page.get_by_label("Email address").fill("zoe@example.org")
    audit.submit("Email me my link", "links-sent", 200)

    page.goto(base + "/subscribe")
    page.get_by_label("Email address").fill("late@example.org")
    page.get_by_label("Neurology").check()
    page.get_by_role("button", name="Subscribe").click()
    expect(page.locator("h1")).to_have_text("Check your inbox")
    (late,) = site.received("late@example.org")
    site.clock[0] = NOW + 8 * DAY  # confirmation links work for 7 days
    try:
        audit.visit(base + path_of(link_after(text_of(late), "To confirm")), "confirm-expired", 404)
    finally:
        site.clock[0] = NOW

    page.goto(base + "/unsubscribe")
    page.evaluate("document.querySelector('input[name=email]').removeAttribute('maxlength')")
    page.evaluate("document.querySelector('input[name=email]').type = 'text'")
    page.get_by_label("Email address").fill("y" * 70_000)
    audit.submit("Email me my link", "too-large", 413)

    for _ in range(2):  # three link emails an hour to one address, then "please wait"
        page.goto(base + "/unsubscribe")
        page.get_by_label("Email address").fill("zoe@example.org")
        page.get_by_role("button", name="Email me my link").click()
        expect(page.locator("h1")).not_to_have_text("Please wait")
    page.goto(base + "/unsubscribe")
    page.get_by_label("Email address").fill("zoe@example.org")
    audit.submit("Email me my link", "too-many", 429)
    audit.done()
