"""Safeguards of the subscriber pages: no GET changes anything, tokens never reach a log,
CSRF on the preferences form, security headers, escaping of everything users type."""

from __future__ import annotations

import http.client
import logging
import re
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from werkzeug.serving import make_server

from digest.store.db import transaction
from digest.store.models import Variant
from digest.web.security import RateLimiter, redact
from subscribers import service
from subscribers.models import Status
from tests.conftest import NOW, SmtpServer
from tests.web_support import ONE_CLICK, Site, make_site

TABLES = ("subscribers", "subscriptions", "consents", "confirmations", "suppressions")
GET_ROUTES = [
    "/u/{token}",
    "/p/{token}",
    "/confirm/{confirm}",
    "/subscribe",
    "/unsubscribe",
    "/v/{web_id}",
    "/archive",
    "/archive/{slug}",
    "/feeds/{slug}.atom",
    "/editions/{key}",
    "/editions/{key}/{slug}",
]


@pytest.fixture
def site(tmp_path: Path, engine: Engine, smtp_server: SmtpServer) -> Site:
    site = make_site(tmp_path, engine, smtp_server)
    site.send_edition(NOW)
    return site


def values(site: Site) -> dict[str, str]:
    """Real values for every route parameter."""
    with transaction(site.factory) as session:
        pending = service.add_subscriber(session, "new@example.org", ["neurology"], now=NOW)
        confirm = service.open_confirmation(session, pending, now=NOW)
        web_id = session.scalars(select(Variant.web_id)).first()
    assert web_id is not None
    token = site.subscriber("zoe@example.org").token
    return {
        "token": token,
        "confirm": confirm,
        "web_id": web_id,
        "slug": "neurology",
        "key": "2026-W48",
    }


def snapshot(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as conn:
        return {
            table: sorted(map(tuple, conn.execute(text(f"SELECT * FROM {table}"))), key=repr)
            for table in (*TABLES, "deliveries", "instance_secrets")
        }


def test_every_get_route_is_covered(site: Site) -> None:
    rules = {
        re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for rule in site.app.url_map.iter_rules()
        if "GET" in (rule.methods or set())
    }
    expected = {
        route.replace("{confirm}", "{token}").replace("{web_id}", "{web_id}")
        for route in GET_ROUTES
    }
    assert rules == expected


def test_no_get_route_changes_anything(site: Site) -> None:
    """Every GET route (see the test above), twice each, as a link scanner would."""
    known = values(site)
    client = site.app.test_client(use_cookies=False)
    for route in GET_ROUTES:
        url = route.format(**known)
        before = snapshot(site.engine)
        for _ in range(2):
            answer = client.get(url)
            assert answer.status_code == 200, route
            assert "Set-Cookie" not in answer.headers
        assert snapshot(site.engine) == before, f"GET {route} changed the database"


def test_tokens_never_reach_the_logs(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    token = site.subscriber("zoe@example.org").token
    confirm = values(site)["confirm"]
    server = make_server("127.0.0.1", 0, site.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)

    def call(method: str, path: str, body: str = "") -> int:
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status

    try:
        with caplog.at_level(logging.DEBUG):
            for path in (f"/u/{token}", f"/p/{token}", f"/confirm/{confirm}"):
                assert call("GET", path) == 200
            assert call("GET", "/u/" + "x" * 43) == 404
            assert call("POST", f"/u/{token}", ONE_CLICK) == 200
            assert call("POST", f"/confirm/{confirm}") == 200
    finally:
        connection.close()
        server.shutdown()
        server.server_close()
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "/u/<token>" in logged and "/confirm/<token>" in logged  # requests were logged
    assert token not in logged and confirm not in logged
    assert "zoe@example.org" not in logged


def test_redact() -> None:
    line = '127.0.0.1 - - "GET /digest/p/abcDEF_-123?x=1 HTTP/1.1" 200 -'
    assert redact(line) == '127.0.0.1 - - "GET /digest/p/<token>?x=1 HTTP/1.1" 200 -'


def test_preference_form_needs_its_csrf_value(site: Site) -> None:
    zoe = site.subscriber("zoe@example.org")
    sam = site.subscriber("sam@example.org")
    client = site.app.test_client(use_cookies=False)
    sams_page = client.get(f"/p/{sam.token}").get_data(as_text=True)
    sams_csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', sams_page)
    assert sams_csrf is not None
    for form in (
        {"categories": ["rehabilitation"]},
        {"categories": ["rehabilitation"], "csrf": sams_csrf.group(1)},
        {"action": "unsubscribe", "csrf": "0" * 64},
    ):
        answer = client.post(f"/p/{zoe.token}", data=form)
        assert answer.status_code == 400
        assert b"Your changes were not saved" in answer.data
    after = site.subscriber("zoe@example.org")
    assert after.status == Status.ACTIVE
    assert {c.slug for c in after.categories} == {"neurology", "pharmacology"}


def test_security_headers(site: Site) -> None:
    token = site.subscriber("zoe@example.org").token
    client = site.app.test_client()
    for path in (f"/u/{token}", f"/p/{token}", "/subscribe", "/archive", "/u/" + "z" * 43):
        headers = client.get(path).headers
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "script-src" not in csp  # no script at all
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
    for path in (f"/u/{token}", f"/p/{token}"):
        assert client.get(path).headers["Cache-Control"] == "no-store"
    page = client.get(f"/u/{token}").get_data(as_text=True)
    nonce = re.search(r"<style nonce=\"([^\"]+)\"", page)
    assert nonce is not None
    csp = client.get(f"/u/{token}").headers["Content-Security-Policy"]
    assert "'nonce-" in csp


def test_user_input_is_escaped(site: Site) -> None:
    client = site.app.test_client()
    evil = '"><script>alert(1)</script>'
    form = client.get("/subscribe").get_data(as_text=True)
    stamp = re.search(r'name="stamp" value="([^"]+)"', form)
    assert stamp is not None
    page = client.post(
        "/subscribe",
        data={"email": evil, "name": evil, "categories": [evil], "stamp": stamp.group(1)},
    ).get_data(as_text=True)
    assert "<script>" not in page
    assert "&lt;script&gt;" in page or "&#34;&gt;&lt;script" in page
    # a reader's name never reaches a page: addresses are shown masked
    with transaction(site.factory) as session:
        reader = service.add_subscriber(
            session, "eve@example.org", ["neurology"], now=NOW, name=evil, confirmed=True
        )
        token = reader.token
    page = client.get(f"/u/{token}").get_data(as_text=True)
    assert "<script>" not in page and "e••@example.org" in page
    assert "eve@example.org" not in page


def test_one_click_needs_no_cookie_or_csrf_and_never_redirects(site: Site) -> None:
    token = site.subscriber("zoe@example.org").token
    client = site.app.test_client(use_cookies=False)
    answer = client.post(
        f"/u/{token}",
        data=ONE_CLICK,
        content_type="application/x-www-form-urlencoded",
        headers={"Origin": "https://mail.example.net"},
    )
    assert answer.status_code == 200 and "Location" not in answer.headers


def test_rate_limiter_is_bounded() -> None:
    now = [0.0]
    limiter = RateLimiter(2, 60.0, max_keys=100, clock=lambda: now[0])
    assert [limiter.hit("a") for _ in range(3)] == [True, True, False]
    for i in range(1000):
        limiter.hit(f"ip{i}")
    assert len(limiter) == 100
    now[0] = 61.0
    assert limiter.hit("a")


def test_only_public_routes_exist(site: Site) -> None:
    """No admin route: the admin preview server is a separate app on 127.0.0.1."""
    endpoints = {rule.endpoint for rule in site.app.url_map.iter_rules()}
    assert not any("admin" in e or "preview" in e or e == "static" for e in endpoints)


def test_bounce_webhook_is_served_only_with_a_secret_and_suppresses_a_hard_bounce(
    tmp_path: Path, engine: Engine, smtp_server: SmtpServer
) -> None:
    from dataclasses import replace

    from digest.web import create_app
    from tests.web_support import make_site, message_of

    site = make_site(tmp_path, engine, smtp_server)
    assert site.app.test_client().post("/bounces/json", json={}).status_code == 404
    site.send_edition(NOW)
    sent = message_of(smtp_server.handler.messages[0].data)
    recipient = smtp_server.handler.messages[0].recipients[0]
    settings = replace(site.settings, bounce_webhook_secret="s" * 24)
    client = create_app(settings, engine).test_client()
    payload = {
        "type": "bounce",
        "recipient": recipient,
        "status": "5.1.1",
        "message_id": str(sent["Message-ID"]),
        "diagnostic": "550 5.1.1 no such user",
    }
    refused = client.post("/bounces/json", json=payload, headers={"X-Digest-Secret": "wrong"})
    assert refused.status_code == 403
    assert site.subscriber(recipient).status == "active"
    accepted = client.post("/bounces/json", json=payload, headers={"X-Digest-Secret": "s" * 24})
    assert accepted.status_code == 200
    assert site.subscriber(recipient).status == "bounced"
