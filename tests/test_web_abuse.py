"""The public endpoints cannot be abused: no secret or token in ``digest serve``'s log,
webhook secrets in headers, sign-up limits shared through the database, control
characters refused, and links found by a keyed hash of their token."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.client
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text

from digest.store import schema
from digest.store.db import session_factory, transaction
from digest.web import create_app, security
from digest.web.limits import limits_for
from subscribers import service
from subscribers.instance import token_key
from subscribers.models import Subscriber
from subscribers.tokens import token_digest
from tests.conftest import NOW, SmtpServer, free_port
from tests.web_support import ONE_CLICK, Site, make_site

SECRET = "k" * 12 + "-webhook-secret-42"
JSON = "application/json"
BOUNCE = {"type": "bounce", "recipient": "sam@example.org", "status": "5.1.1", "id": "e1"}


@pytest.fixture
def site(tmp_path: Path, engine: Engine, smtp_server: SmtpServer) -> Site:
    site = make_site(tmp_path, engine, smtp_server)
    site.settings = replace(site.settings, bounce_webhook_secret=SECRET)
    site.app = create_app(site.settings, engine, now=lambda: site.clock[0])
    site.app.config["TESTING"] = True
    site.send_edition(NOW)
    return site


def stamp_of(site: Site) -> str:
    return security.form_stamp(site.app.extensions["digest_web"].key, time.time())


# ---------------------------------------------------------------- 4: secrets and logs


def test_digest_serve_logs_no_token_and_no_secret(site: Site, tmp_path: Path) -> None:
    """``digest serve`` as a process; every route with a real token or secret, then its
    whole log is searched."""
    token = site.subscriber("zoe@example.org").token
    with transaction(site.factory) as session:
        pending = service.add_subscriber(session, "new@example.org", ["neurology"], now=NOW)
        # digest serve runs on the real clock
        confirm = service.open_confirmation(session, pending, now=dt.datetime.now(dt.UTC))
    port = free_port()
    env = {
        **os.environ,
        "DIGEST_CONFIG": str(site.settings.config_path),
        "DIGEST_DATABASE_URL": site.settings.database_url,
        "DIGEST_TRANSPORT": "smtp",
        "DIGEST_SMTP_URL": site.smtp.url,
        "DIGEST_BOUNCE_WEBHOOK_SECRET": SECRET,
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "digest", "serve", "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            connection = wait_for(port)
            form = {"Content-Type": "application/x-www-form-urlencoded"}
            as_json = {"Content-Type": "application/json"}
            body = json.dumps(BOUNCE)
            signature = hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
            bearer = {**as_json, "Authorization": f"Bearer {SECRET}"}
            signed = {**as_json, "X-Digest-Signature": f"sha256={signature}"}
            calls = [
                ("GET", f"/u/{token}", "", {}, 200),
                ("GET", f"/p/{token}?token={token}", "", {}, 200),
                ("GET", f"/confirm/{confirm}", "", {}, 200),
                ("GET", f"/u/{token[:-1]}{'y' if token.endswith('x') else 'x'}", "", {}, 404),
                ("POST", f"/p/{token}", "action=save", form, 400),
                ("POST", f"/u/{token}", ONE_CLICK, form, 200),
                ("POST", f"/confirm/{confirm}", "", form, 200),
                ("POST", f"/bounces/json?secret={SECRET}", body, as_json, 200),
                ("POST", "/bounces/json", body, bearer, 200),
                ("POST", "/bounces/json", body, signed, 200),
                ("POST", f"/bounces/json?secret={SECRET[:-1]}", body, as_json, 403),
                ("POST", f"/bounces/ses?x-secret={SECRET}", "{}", as_json, 400),
                ("GET", f"/subscribe?key={SECRET}", "", {}, 200),
            ]  # fmt: skip
            for method, path, data, headers, status in calls:
                connection.request(method, path, body=data or None, headers=headers)
                answer = connection.getresponse()
                answer.read()
                assert answer.status == status, (method, path[:20])
        finally:
            server.terminate()
            server.wait(timeout=10)
    logged = log.read_text(encoding="utf-8", errors="replace")
    assert "/u/<token>" in logged and "secret=<redacted>" in logged  # requests were logged
    for needle in (token, token[:-1], confirm, SECRET, SECRET[:-1], signature, "zoe@example.org"):
        assert needle not in logged


def wait_for(port: int) -> http.client.HTTPConnection:
    for _ in range(200):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.connect()
            return connection
        except OSError:
            time.sleep(0.05)
    raise AssertionError("digest serve did not start")


def test_webhook_secret_in_a_header_or_a_signature(site: Site) -> None:
    client = site.app.test_client()
    body = json.dumps(BOUNCE)
    good = hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
    bad = hmac.new(b"x" * 30, body.encode(), hashlib.sha256).hexdigest()
    answers = {
        "bearer": {"Authorization": f"Bearer {SECRET}"},
        "header": {"X-Digest-Secret": SECRET},
        "signature": {"X-Digest-Signature": f"sha256={good}"},
    }
    for name, headers in answers.items():
        reply = client.post(
            "/bounces/json", data=body, headers=headers, content_type="application/json"
        )
        assert reply.status_code == 200, name
    refused = [
        {"Authorization": f"Basic {SECRET}"},
        {"Authorization": "Bearer wrong-secret-0123456789"},
        {"X-Digest-Signature": f"sha256={bad}"},
        {
            "X-Digest-Signature": f"sha256={bad}",
            "X-Digest-Secret": SECRET,
        },  # a signature given must be good
    ]
    for headers in refused:
        reply = client.post(
            "/bounces/json", data=body, headers=headers, content_type="application/json"
        )
        assert reply.status_code == 403, headers
    # a good signature of another body does not pass
    other = client.post(
        "/bounces/json",
        data=body.replace("e1", "e2"),
        headers={"X-Digest-Signature": f"sha256={good}"},
        content_type="application/json",
    )
    assert other.status_code == 403


def test_redact_secret_query_parameters() -> None:
    line = '"POST /bounces/json?a=1&secret=abc123&WebhookKey=zz;x=2 HTTP/1.1" 200 -'
    assert security.redact(line) == (
        '"POST /bounces/json?a=1&secret=<redacted>&WebhookKey=<redacted>;x=2 HTTP/1.1" 200 -'
    )


# ---------------------------------------------------------------- 5: sign-up abuse


def sign_up(site: Site, address: str, ip: str = "127.0.0.1", **headers: str) -> int:
    client = site.app.test_client(use_cookies=False)
    data = {"email": address, "categories": ["neurology"], "stamp": stamp_of(site)}
    answer = client.post("/subscribe", data=data, environ_base={"REMOTE_ADDR": ip}, headers=headers)
    return answer.status_code


def test_one_confirmation_per_address_a_day_whatever_the_client(site: Site) -> None:
    assert sign_up(site, "target@example.org", "10.0.0.1") == 200
    for i in range(2, 6):
        assert sign_up(site, "Target@Example.org", f"10.0.0.{i}") == 429
    assert len(site.received("target@example.org")) == 1
    site.clock[0] = NOW + dt.timedelta(hours=24, seconds=1)
    assert sign_up(site, "target@example.org", "10.0.0.9") == 200
    assert len(site.received("target@example.org")) == 2


def test_the_site_wide_limit_says_when_to_retry_and_sends_nothing(site: Site) -> None:
    settings = replace(site.settings, signup_limit_per_hour=3)
    site.app.extensions["digest_web"].limits = limits_for(settings)
    for i in range(3):
        assert sign_up(site, f"a{i}@example.org", f"10.1.0.{i}") == 200
    site.clock[0] = NOW + dt.timedelta(minutes=20)
    client = site.app.test_client(use_cookies=False)
    data = {"email": "late@example.org", "categories": ["neurology"], "stamp": stamp_of(site)}
    answer = client.post("/subscribe", data=data, environ_base={"REMOTE_ADDR": "10.2.0.1"})
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == str(40 * 60)
    page = answer.get_data(as_text=True)
    assert "Please try again in 40 minutes" in page and "nothing was sent" in page
    assert site.received("late@example.org") == []
    link = client.post(
        "/unsubscribe",
        data={"email": "zoe@example.org", "stamp": stamp_of(site)},
        environ_base={"REMOTE_ADDR": "10.2.0.2"},
    )
    assert link.status_code == 429
    assert len(site.received("zoe@example.org")) == 1  # this week's digest, no links email
    site.clock[0] = NOW + dt.timedelta(hours=1, seconds=1)
    assert sign_up(site, "late@example.org", "10.2.0.1") == 200


def test_trusted_proxies_name_the_client(site: Site) -> None:
    settings = replace(site.settings, signup_limit_per_ip=2, trusted_proxies="127.0.0.1")
    web = site.app.extensions["digest_web"]
    web.limits, web.proxies = limits_for(settings), security.networks(settings.trusted_proxies)
    forged = "X-Forwarded-For"
    assert sign_up(site, "c1@example.org", **{forged: "6.6.6.6, 203.0.113.7"}) == 200
    assert sign_up(site, "c2@example.org", **{forged: "1.1.1.1, 203.0.113.7"}) == 200
    assert sign_up(site, "c3@example.org", **{forged: "2.2.2.2, 203.0.113.7"}) == 429
    assert sign_up(site, "c4@example.org", **{forged: "203.0.113.8"}) == 200
    # a client that is not a trusted proxy cannot pick its address by the header
    assert sign_up(site, "c5@example.org", "198.51.100.1", **{forged: "9.9.9.9"}) == 200
    assert sign_up(site, "c6@example.org", "198.51.100.1", **{forged: "9.9.9.8"}) == 200
    assert sign_up(site, "c7@example.org", "198.51.100.1", **{forged: "9.9.9.7"}) == 429


def test_forwarded_client() -> None:
    proxies = security.networks("10.0.0.0/8, ::1")
    assert security.forwarded_client("10.1.1.1", ["1.2.3.4, 10.2.2.2"], proxies) == "1.2.3.4"
    assert security.forwarded_client("8.8.8.8", ["1.2.3.4"], proxies) == "8.8.8.8"
    assert security.forwarded_client("::1", [], proxies) == "::1"
    assert security.forwarded_client("10.1.1.1", ["10.3.3.3"], proxies) == "10.3.3.3"


@pytest.mark.parametrize(
    "engine", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_the_limits_hold_across_two_app_instances(
    tmp_path: Path, engine: Engine, smtp_server: SmtpServer
) -> None:
    """Two apps (as two processes would be) on one PostgreSQL database share every limit."""
    one = make_site(tmp_path, engine, smtp_server)
    settings = replace(one.settings, signup_limit_per_hour=5)
    two = replace(one, app=create_app(settings, engine, now=lambda: one.clock[0]))
    one.app = create_app(settings, engine, now=lambda: one.clock[0])
    assert sign_up(one, "same@example.org", "10.9.0.1") == 200
    assert sign_up(two, "same@example.org", "10.9.0.2") == 429
    codes = [sign_up((one, two)[i % 2], f"s{i}@example.org", f"10.8.0.{i}") for i in range(6)]
    assert codes == [200] * 4 + [429] * 2  # 5 an hour for the whole site
    assert len(one.smtp.handler.messages) == 5


# ---------------------------------------------------------------- 6: control characters


@pytest.mark.parametrize("value", ["a\x00b", "\x07bell", "x\x1by", "del\x7f"])
def test_control_characters_are_refused_with_a_clear_message(site: Site, value: str) -> None:
    client = site.app.test_client(use_cookies=False)
    data = {
        "email": "ctl@example.org",
        "name": value,
        "categories": ["neurology"],
        "stamp": stamp_of(site),
    }
    answer = client.post("/subscribe", data=data)
    assert answer.status_code == 400
    assert "The field “name” holds an invisible control character" in answer.get_data(True)
    reply = client.post(
        "/bounces/json",
        json={**BOUNCE, "diagnostic": value},
        headers={"Authorization": f"Bearer {SECRET}"},
    )
    assert reply.status_code == 400
    assert reply.get_data(True).startswith("refused: 'diagnostic' holds a control character")
    with site.factory() as session:
        assert (
            session.scalar(select(Subscriber).where(Subscriber.email_key == "ctl@example.org"))
            is None
        )
        assert session.scalar(text("SELECT count(*) FROM bounce_events")) == 0
    assert site.received("ctl@example.org") == []


def test_names_with_control_characters_are_refused_by_the_service(site: Site) -> None:
    with pytest.raises(Exception, match="control characters"), transaction(site.factory) as session:
        service.add_subscriber(session, "n@example.org", ["neurology"], now=NOW, name="a\x00b")


# ---------------------------------------------------------------- 7: token look-up


def test_tokens_are_found_by_their_keyed_hash(site: Site) -> None:
    zoe = site.subscriber("zoe@example.org")
    with site.factory() as session:
        key = token_key(session)
        assert zoe.token_hash == token_digest(key, zoe.token)
        assert service.find_by_token(session, zoe.token) is not None
        near = zoe.token[:-1] + ("B" if zoe.token.endswith("A") else "A")
        for wrong in (near, "short", "\x00" * 43, "é" * 43, zoe.token_hash):
            assert service.find_by_token(session, wrong) is None
    with transaction(site.factory) as session:
        found = session.get(Subscriber, zoe.id)
        assert found is not None
        service.rotate_token(session, found)
        new = found.token
        assert found.token_hash == token_digest(token_key(session), new) != zoe.token_hash
    client = site.app.test_client()
    assert client.get(f"/u/{new}").status_code == 200
    pages = set()
    for token in (zoe.token, "A" * 43, "short", "x" * 500):  # old, unknown, malformed
        answer = client.get(f"/u/{token}")
        assert answer.status_code == 404
        pages.add(re.sub(r"nonce=\S+", "", answer.get_data(True)))
    assert len(pages) == 1 and "This link does not work" in pages.pop()


def test_the_migration_hashes_the_tokens_already_stored(engine: Engine) -> None:
    schema.downgrade(engine, "0010")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscribers (email, email_key, email_hash, status, token, created_at,"
                " frequency) VALUES ('o@example.org', 'o@example.org', 'h', 'active', :t, :now,"
                " 'weekly')"
            ),
            {"t": "t" * 43, "now": NOW.replace(tzinfo=None)},
        )
    schema.upgrade(engine)
    with transaction(session_factory(engine)) as session:
        key = token_key(session)
        old = session.scalars(select(Subscriber)).one()
        assert old.token_hash == token_digest(key, "t" * 43)
        assert service.find_by_token(session, "t" * 43) is not None
    schema.downgrade(engine, "0010")
    schema.upgrade(engine)
