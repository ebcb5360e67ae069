"""The subscriber pages end to end: a digest goes to a real SMTP server on loopback, the
received message's links are followed as a reader (or a mailbox provider) would, and the
next edition shows the effect. Every assertion is on a page, a received email or the ledger."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import Engine

from subscribers.models import Status
from tests.conftest import NOW, SmtpServer
from tests.web_support import (
    DAY,
    ONE_CLICK,
    WEEK,
    Site,
    link_after,
    make_site,
    next_week_summaries,
    one_click_path,
    path_of,
    text_of,
)


@pytest.fixture
def site(tmp_path: Path, engine: Engine, smtp_server: SmtpServer) -> Site:
    return make_site(tmp_path, engine, smtp_server)


def test_one_click_unsubscribe_as_a_mailbox_provider_does(site: Site) -> None:
    site.send_edition(NOW)
    (digest,) = site.received("zoe@example.org")
    path = one_click_path(digest)
    assert path.startswith("/u/")
    client = site.app.test_client(use_cookies=False)

    page = client.get(path)  # a link scanner: nothing changes
    assert page.status_code == 200 and b"Unsubscribe from all emails" in page.data
    assert site.subscriber("zoe@example.org").status == Status.ACTIVE

    for _ in range(2):  # repeated POSTs are harmless
        answer = client.post(path, data=ONE_CLICK, content_type="application/x-www-form-urlencoded")
        assert answer.status_code == 200
        assert "Location" not in answer.headers
        assert b"You are unsubscribed" in answer.data
    assert site.subscriber("zoe@example.org").status == Status.UNSUBSCRIBED

    next_week_summaries(site)
    report = site.send_edition(NOW + WEEK)
    assert report.sent == 1
    assert len(site.received("zoe@example.org")) == 1
    assert len(site.received("sam@example.org")) == 2


def test_one_click_as_multipart(site: Site) -> None:
    site.send_edition(NOW)
    (digest,) = site.received("sam@example.org")
    client = site.app.test_client(use_cookies=False)
    answer = client.post(
        one_click_path(digest),
        data={"List-Unsubscribe": "One-Click"},
        content_type="multipart/form-data",
    )
    assert answer.status_code == 200 and not answer.headers.get("Location")
    assert site.subscriber("sam@example.org").status == Status.UNSUBSCRIBED


def test_unknown_and_malformed_tokens_get_the_same_404(site: Site) -> None:
    client = site.app.test_client()
    pages = [
        client.get("/u/" + "A" * 43),
        client.get("/u/short"),
        client.post("/u/" + "B" * 43, data=ONE_CLICK),
        client.get("/p/%3Cscript%3E"),
        client.get("/confirm/" + "C" * 43),
    ]
    assert {p.status_code for p in pages} == {404}
    assert len({p.data.replace(b"\n", b"")[-400:] for p in pages}) == 1


def test_preference_change_applies_to_the_next_edition(site: Site) -> None:
    site.send_edition(NOW)
    (digest,) = site.received("zoe@example.org")
    preferences = path_of(link_after(text_of(digest), "Change your topics"))
    assert preferences.startswith("/p/")
    client = site.app.test_client(use_cookies=False)
    page = client.get(preferences).get_data(as_text=True)
    for name in ("Pharmacology", "Neurology", "Rehabilitation"):  # all offered
        assert name in page
    assert 'value="rehabilitation" id="cat-rehabilitation">' in page  # not checked
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert csrf is not None

    saved = client.post(
        preferences,
        data={"csrf": csrf.group(1), "categories": ["rehabilitation"], "frequency": "weekly"},
    )
    assert saved.status_code == 303
    assert "Your choices are saved" in client.get(saved.headers["Location"]).get_data(True)

    next_week_summaries(site)
    site.send_edition(NOW + WEEK)
    second = site.received("zoe@example.org")[-1]
    text = text_of(second)
    assert "Cough assist devices" in text
    assert "Spasticity and cannabis" not in text and "Imaging the injured cord" not in text


def test_pause_skips_the_next_edition(site: Site) -> None:
    site.send_edition(NOW)
    (digest,) = site.received("sam@example.org")
    preferences = path_of(link_after(text_of(digest), "Change your topics"))
    client = site.app.test_client(use_cookies=False)
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get(preferences).get_data(True))
    assert csrf is not None
    form = {"csrf": csrf.group(1), "categories": ["rehabilitation"], "pause": "2"}
    assert client.post(preferences, data=form).status_code == 303
    assert "paused until" in client.get(preferences).get_data(True)
    next_week_summaries(site)
    site.send_edition(NOW + WEEK)
    assert len(site.received("sam@example.org")) == 1


def test_sign_up_confirm_then_first_digest(site: Site) -> None:
    client = site.app.test_client(use_cookies=False)
    form = client.get("/subscribe").get_data(as_text=True)
    assert " checked" not in form  # no topic pre-checked
    stamp = re.search(r'name="stamp" value="([^"]+)"', form)
    assert stamp is not None
    answer = client.post(
        "/subscribe",
        data={
            "email": "ada@example.org",
            "name": "Ada <b>Lovelace</b>",
            "categories": ["neurology"],
            "stamp": stamp.group(1),
        },
    )
    assert answer.status_code == 200 and b"Check your inbox" in answer.data
    assert site.subscriber("ada@example.org").status == Status.PENDING

    (confirmation,) = site.received("ada@example.org")
    link = path_of(link_after(text_of(confirmation), "To confirm, open this link"))
    assert link.startswith("/confirm/")
    page = client.get(link)  # a link scanner: nobody is confirmed
    assert page.status_code == 200 and b"Yes, send me the digest" in page.data
    assert site.subscriber("ada@example.org").status == Status.PENDING
    done = client.post(link)
    assert done.status_code == 200 and b"You are subscribed" in done.data
    assert site.subscriber("ada@example.org").status == Status.ACTIVE
    assert client.post(link).status_code == 404  # used once

    site.send_edition(NOW + DAY)
    first = site.received("ada@example.org")[-1]
    assert "Nerve transfers for hand function" in text_of(first)


def test_expired_confirmation_explains_how_to_sign_up_again(site: Site) -> None:
    client = site.app.test_client()
    stamp = re.search(r'name="stamp" value="([^"]+)"', client.get("/subscribe").get_data(True))
    assert stamp is not None
    client.post(
        "/subscribe",
        data={"email": "late@example.org", "categories": ["neurology"], "stamp": stamp.group(1)},
    )
    (confirmation,) = site.received("late@example.org")
    link = path_of(link_after(text_of(confirmation), "To confirm, open this link"))
    site.clock[0] = NOW + 8 * DAY
    for page in (client.get(link), client.post(link)):
        assert page.status_code == 404  # the same answer as an unknown link
        assert b"sign up again" in page.data
    assert site.subscriber("late@example.org").status == Status.PENDING


def test_sign_up_answers_the_same_for_known_addresses(site: Site) -> None:
    client = site.app.test_client()
    stamp = re.search(r'name="stamp" value="([^"]+)"', client.get("/subscribe").get_data(True))
    assert stamp is not None

    def sign_up(address: str) -> bytes:
        answer = client.post(
            "/subscribe",
            data={"email": address, "categories": ["neurology"], "stamp": stamp.group(1)},
        )
        assert answer.status_code == 200
        return re.sub(rb'nonce="[^"]+"', b"", answer.data)  # the CSP nonce differs

    assert sign_up("zoe@example.org") == sign_up("new@example.org")
    # the active reader is sent their own links, not a confirmation
    (links,) = site.received("zoe@example.org")
    assert "/p/" in text_of(links) and "/confirm/" not in text_of(links)
    assert site.subscriber("zoe@example.org").status == Status.ACTIVE


def test_sign_up_rate_limit_and_honeypot(site: Site) -> None:
    client = site.app.test_client()
    stamp = re.search(r'name="stamp" value="([^"]+)"', client.get("/subscribe").get_data(True))
    assert stamp is not None
    data = {"email": "bot@example.org", "categories": ["neurology"], "stamp": stamp.group(1)}
    trapped = client.post("/subscribe", data={**data, "website": "http://spam"})
    assert trapped.status_code == 200 and b"Check your inbox" in trapped.data
    assert site.received("bot@example.org") == []
    answers = [client.post("/subscribe", data=data) for _ in range(5)]
    assert [a.status_code for a in answers] == [200] + [429] * 4
    assert len(site.received("bot@example.org")) == 1  # per-address limit: one a day
    assert b"Please try again in" in answers[-1].data
    assert answers[-1].headers["Retry-After"] == str(24 * 3600)
    codes = [
        client.post("/subscribe", data={**data, "email": f"p{i}@example.org"}).status_code
        for i in range(10)
    ]
    assert codes[-1] == 429  # per-IP limit (10 in 10 minutes; refused posts do not count)
    assert site.received("p9@example.org") == []


def test_sign_up_refuses_missing_topics_and_bad_address(site: Site) -> None:
    client = site.app.test_client()
    stamp = re.search(r'name="stamp" value="([^"]+)"', client.get("/subscribe").get_data(True))
    assert stamp is not None
    answer = client.post("/subscribe", data={"email": "nope", "stamp": stamp.group(1)})
    assert answer.status_code == 400
    page = answer.get_data(as_text=True)
    assert "Enter your email address" in page and "Choose at least one topic" in page
    assert 'role="alert"' in page
