"""The subscriber pages in a real headless Chromium (Debian's /usr/bin/chromium driven by
Playwright): unsubscribe, preferences and sign-up clicked through with keyboard and mouse,
no horizontal scrolling at 320 px, text contrast, and the digest email itself at 375 px.
Screenshots at 375 and 1280 px go to test-artifacts/."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from subscribers.models import Status
from tests.browser_support import ARTIFACTS, launch_chromium
from tests.conftest import add_reader
from tests.web_support import Site, html_of, link_after, path_of, served_site, text_of

#: Contrast of a text colour on its background (WCAG 2), computed in the page.
CONTRAST_JS = """(el) => {
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => { const [r, g, b] = rgb(c).map(v => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  let bg = null, node = el;
  while (node && node.nodeType === 1) { const c = getComputedStyle(node).backgroundColor;
    if (!c.startsWith('rgba(0, 0, 0, 0)') && c !== 'transparent') { bg = c; break; }
    node = node.parentElement; }
  const a = lum(getComputedStyle(el).color), b = lum(bg || 'rgb(255,255,255)');
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    yield from launch_chromium()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, str]]:
    """One site for the module (the tests touch different readers): a SQLite database with
    this week's digest sent to a real SMTP server, and the app on 127.0.0.1 in a thread."""
    with served_site(tmp_path_factory.mktemp("web")) as found:
        yield found


def open_page(browser, width: int):  # type: ignore[no-untyped-def]
    return browser.new_context(viewport={"width": width, "height": 800}).new_page()


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def check_page(page) -> None:  # type: ignore[no-untyped-def]
    """Landmarks, one h1, and 4.5:1 contrast for body text, notes, links and buttons."""
    assert page.get_by_role("banner").count() == 1
    assert page.get_by_role("main").count() == 1
    assert page.get_by_role("contentinfo").count() == 1
    assert page.locator("h1").count() == 1
    selectors = "main p, main li, main label, main legend, main a, main button, footer p, footer a"
    ratios = page.evaluate(
        f"""() => [...document.querySelectorAll({selectors!r})]
            .filter(e => e.offsetParent !== null && e.getBoundingClientRect().left >= 0)
            .map(e => [e.outerHTML.slice(0, 60), ({CONTRAST_JS})(e)])"""
    )
    assert ratios
    low = [(html, ratio) for html, ratio in ratios if ratio < 4.5]
    assert not low, low


def no_overflow(page, width: int) -> None:  # type: ignore[no-untyped-def]
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, (page.url, scroll)


def tab_to(page, name: str, most: int = 30) -> None:  # type: ignore[no-untyped-def]
    """Move the focus with Tab only until the control called ``name`` has it."""
    for _ in range(most):
        page.keyboard.press("Tab")
        label = page.evaluate(
            "document.activeElement.innerText || document.activeElement.value || ''"
        )
        if label.strip() == name:
            return
    raise AssertionError(f"{name!r} cannot be reached with the keyboard")


def test_unsubscribe_with_the_keyboard(browser, served) -> None:  # type: ignore[no-untyped-def]
    site, base = served
    token = site.subscriber("zoe@example.org").token
    for width in (375, 1280):
        page = open_page(browser, width)
        page.goto(f"{base}/u/{token}")
        check_page(page)
        shot(page, f"web-unsubscribe-{width}.png")
    tab_to(page, "Unsubscribe from all emails")
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("You are unsubscribed")
    assert page.get_by_role("status").is_visible()
    shot(page, "web-unsubscribed-1280.png")
    assert site.subscriber("zoe@example.org").status == Status.UNSUBSCRIBED


def test_preferences_in_the_browser(browser, served) -> None:  # type: ignore[no-untyped-def]
    site, base = served
    token = site.subscriber("sam@example.org").token
    for width in (375, 1280):
        page = open_page(browser, width)
        page.goto(f"{base}/p/{token}")
        check_page(page)
        shot(page, f"web-preferences-{width}.png")
    page.get_by_label("Neurology").check()
    page.get_by_label("Once a month", exact=False).check()
    page.get_by_label("Pause for 4 weeks").check()
    page.get_by_role("button", name="Save my choices").click()
    expect(page.get_by_role("status")).to_contain_text("Your choices are saved")
    assert page.get_by_label("Neurology").is_checked()
    sam = site.subscriber("sam@example.org")
    assert sam.frequency == "monthly" and sam.paused_until is not None
    assert {c.slug for c in sam.categories} == {"neurology", "rehabilitation"}


def test_preferences_without_a_topic_show_the_form_again(browser, served) -> None:  # type: ignore[no-untyped-def]
    """Unticking every topic is refused with a message the reader is taken to, on the
    form itself, and nothing changes (it answered 500 before)."""
    site, base = served
    add_reader(site.factory, "kim@example.org", ["neurology", "pharmacology"])
    token = site.subscriber("kim@example.org").token
    page = open_page(browser, 375)
    page.goto(f"{base}/p/{token}")
    page.get_by_label("Neurology").uncheck()
    page.get_by_label("Pharmacology").uncheck()
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Save my choices").click()
    assert posted.value.status == 400
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Choose at least one topic")
    assert alert.evaluate("e => e === document.activeElement")  # focus on the error
    topics = page.get_by_role("group", name="Topics")
    assert topics.get_attribute("aria-describedby") == alert.get_attribute("id")
    expect(page.get_by_role("button", name="Save my choices")).to_be_visible()
    assert page.get_by_label("Neurology").is_checked()  # the saved choices, unchanged
    check_page(page)
    no_overflow(page, 375)
    shot(page, "web-preferences-error-375.png")
    kim = site.subscriber("kim@example.org")
    assert kim.status == Status.ACTIVE
    assert {c.slug for c in kim.categories} == {"neurology", "pharmacology"}
    page.get_by_label("Rehabilitation").check()  # and the form still works
    page.get_by_role("button", name="Save my choices").click()
    expect(page.get_by_role("status")).to_contain_text("Your choices are saved")
    kim = site.subscriber("kim@example.org")
    assert {c.slug for c in kim.categories} == {"neurology", "pharmacology", "rehabilitation"}


def test_sign_up_and_confirm_in_the_browser(browser, served) -> None:  # type: ignore[no-untyped-def]
    site, base = served
    for width in (375, 1280):
        page = open_page(browser, width)
        page.goto(f"{base}/subscribe")
        check_page(page)
        shot(page, f"web-subscribe-{width}.png")
    for box in page.get_by_role("checkbox").all():
        assert not box.is_checked()
    page.get_by_label("Email address").fill("ada@example.org")
    page.get_by_label("Your name (optional)").fill("Ada")
    page.get_by_label("Rehabilitation").check()
    page.get_by_role("button", name="Subscribe").click()
    expect(page.locator("h1")).to_have_text("Check your inbox")
    (message,) = site.received("ada@example.org")
    link = link_after(text_of(message), "To confirm, open this link")
    page.goto(base + path_of(link))
    shot(page, "web-confirm-1280.png")
    page.get_by_role("button", name="Yes, send me the digest").click()
    expect(page.locator("h1")).to_have_text("You are subscribed")
    assert site.subscriber("ada@example.org").status == Status.ACTIVE


def test_no_page_scrolls_sideways_at_320px(browser, served) -> None:  # type: ignore[no-untyped-def]
    site, base = served
    token = site.subscriber("zoe@example.org").token
    (digest,) = site.received("zoe@example.org")
    web = path_of(link_after(text_of(digest), "View this email in your browser"))
    page = open_page(browser, 320)
    paths = [
        f"/u/{token}",
        f"/p/{token}",
        "/subscribe",
        "/unsubscribe",
        "/archive",
        "/archive/neurology",
        "/u/" + "n" * 43,
        web,
    ]
    for path in paths:
        page.goto(base + path)
        no_overflow(page, 320)
    page.goto(f"{base}/subscribe")
    page.get_by_role("button", name="Subscribe").click()  # the browser's own validation
    no_overflow(page, 320)


def test_the_digest_email_at_375px(browser, served) -> None:  # type: ignore[no-untyped-def]
    site, _ = served
    (digest,) = site.received("zoe@example.org")
    page = open_page(browser, 375)
    page.set_content(html_of(digest))
    no_overflow(page, 375)
    shot(page, "web-email-375.png")
    for title in ("Riluzole after acute injury", "Nerve transfers for hand function"):
        assert title in text_of(digest)
        link = page.get_by_role("link", name=title)
        assert link.is_visible()
        box = link.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
        size = link.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
        assert size >= 16
