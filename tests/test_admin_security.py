"""Who may use the admin console, and what it refuses: a non-local bind without a password
(`digest admin`, `digest preview --serve`), every POST without the session's CSRF token
(every POST route of the app, nested Blueprints' too), a lockout after repeated wrong
passwords, the session cookie's flags, the security headers, redirects after sign-in that
leave the console, clients of other machines without a password; and that `digest serve`
has no page of it."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import Engine
from werkzeug.routing import Rule
from werkzeug.security import generate_password_hash

from digest.cli.main import cli
from digest.config import STARTER_CONFIG
from digest.errors import ConfigError
from digest.web import create_app
from digest.web.admin.lockout import Lockout
from digest.web.admin.state import current_admin
from tests.admin_support import PASSWORD, Console, make_console, signed_in
from tests.conftest import SmtpServer, make_settings


@pytest.fixture
def console(tmp_path: Path, engine: Engine, smtp_server: SmtpServer) -> Console:
    return make_console(tmp_path, engine, smtp_server, admin_password=PASSWORD)


@pytest.fixture
def local(tmp_path: Path, engine: Engine, smtp_server: SmtpServer) -> Console:
    """The console without a password: this machine only."""
    return make_console(tmp_path, engine, smtp_server)


# ---------------------------------------------------------------- binding


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "digest.toml").write_text(STARTER_CONFIG, encoding="utf-8")
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)


@pytest.mark.parametrize(
    "command",
    [("admin",), ("preview", "--serve")],
    ids=["digest admin", "digest preview --serve"],
)
@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "::"])  # noqa: S104 (refused)
def test_a_non_local_bind_without_a_password_is_refused(
    folder: Path, command: tuple[str, ...], host: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    result = CliRunner(env=env).invoke(cli, [*command, "--host", host, "--port", "1"])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: the admin console listens on {host!r} only with a password: set "
        "admin_password (or DIGEST_ADMIN_PASSWORD) and serve it behind HTTPS, or use "
        "127.0.0.1 (reach it through an SSH tunnel)\n"
    )


def test_the_password_setting_is_long_or_a_hash(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as short:
        make_settings(tmp_path, admin_password="letmein")
    assert "admin_password" in str(short.value)
    assert "must be at least 12 characters, or a hash made by `digest admin" in str(short.value)
    hashed = generate_password_hash(PASSWORD)
    assert make_settings(tmp_path, admin_password=hashed).admin_password == hashed
    assert "admin_password" not in repr(make_settings(tmp_path, admin_password=PASSWORD))


def test_hash_password_prints_a_hash_the_console_accepts(
    folder: Path, engine: Engine, smtp_server: SmtpServer
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    result = CliRunner(env=env).invoke(
        cli, ["admin", "--hash-password"], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    hashed = result.output.strip().splitlines()[-1]
    assert hashed.startswith("scrypt:") and PASSWORD not in result.output
    console = make_console(folder, engine, smtp_server, data=False, admin_password=hashed)
    client = console.app.test_client()
    client.get("/admin/login")
    answer = client.post("/admin/login", data={"password": PASSWORD, "csrf_token": csrf(client)})
    assert answer.status_code == 303 and answer.headers["Location"] == "/admin/"


# ---------------------------------------------------------------- sign-in


def client_from(app: Flask, address: str):  # type: ignore[no-untyped-def]
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def csrf(client) -> str:  # type: ignore[no-untyped-def]
    with client.session_transaction() as session:
        return str(session["csrf"])


def test_pages_need_signing_in_and_the_cookie_is_secure_httponly_strict(console: Console) -> None:
    client = console.app.test_client()
    page = client.get("/admin/view?categories=rehabilitation")
    assert page.status_code == 303
    assert page.headers["Location"] == "/admin/login?next=/admin/view?categories%3Drehabilitation"
    assert client.get("/admin/eml?categories=rehabilitation").status_code == 303
    login = client.get(page.headers["Location"])
    assert login.status_code == 200
    cookie = login.headers["Set-Cookie"]
    assert cookie.startswith("digest_admin=")
    assert "; Secure" in cookie and "; HttpOnly" in cookie and "; SameSite=Strict" in cookie
    answer = client.post(
        "/admin/login",
        data={
            "password": PASSWORD,
            "csrf_token": csrf(client),
            "next": "/admin/view?categories=rehabilitation",
        },
    )
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/admin/view?categories=rehabilitation"
    cookie = answer.headers["Set-Cookie"]
    assert "; Secure" in cookie and "; HttpOnly" in cookie and "; SameSite=Strict" in cookie
    assert "Expires=" in cookie  # a session for SESSION_HOURS, not for ever
    assert client.get("/admin/view?categories=rehabilitation").status_code == 200
    client.post("/admin/logout", data={"csrf_token": csrf(client)})
    assert client.get("/admin/").status_code == 303


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/admin/", "/archive"])
def test_signing_in_never_leads_out_of_the_console(console: Console, target: str) -> None:
    client = console.app.test_client()
    client.get("/admin/login")
    answer = client.post(
        "/admin/login", data={"password": PASSWORD, "csrf_token": csrf(client), "next": target}
    )
    assert answer.status_code == 303 and answer.headers["Location"] == "/admin/"


def test_repeated_wrong_passwords_lock_the_address_out(console: Console) -> None:
    now = [1_800_000_000.0]
    state = console.app.extensions["digest_admin"]
    state.lockout = Lockout(clock=lambda: now[0])
    attacker = client_from(console.app, "127.0.0.9")
    attacker.get("/admin/login")
    token = csrf(attacker)
    for _ in range(4):
        wrong = attacker.post("/admin/login", data={"password": "guess", "csrf_token": token})
        assert wrong.status_code == 401
        assert b"Wrong password." in wrong.data
    locked = attacker.post("/admin/login", data={"password": "guess", "csrf_token": token})
    assert locked.status_code == 429
    assert locked.headers["Retry-After"].isdigit()
    message = re.search(rb'role="alert">([^<]+)<', locked.data)
    assert message is not None
    assert re.fullmatch(
        r"Too many failed sign-ins from your address: try again after \d\d:\d\d UTC "
        r"\(in 15 minutes\)\.",
        message[1].decode(),
    )
    # even the right password is refused while locked; another address is not locked
    right = attacker.post("/admin/login", data={"password": PASSWORD, "csrf_token": token})
    assert right.status_code == 429
    assert attacker.get("/admin/").status_code == 303
    admin = client_from(console.app, "127.0.0.2")
    admin.get("/admin/login")
    assert (
        admin.post("/admin/login", data={"password": PASSWORD, "csrf_token": csrf(admin)})
    ).status_code == 303
    now[0] += 15 * 60 + 1  # the lockout ends
    again = attacker.post("/admin/login", data={"password": PASSWORD, "csrf_token": token})
    assert again.status_code == 303


# ---------------------------------------------------------------- CSRF


def post_rules(app: Flask) -> list[Rule]:
    return [rule for rule in app.url_map.iter_rules() if "POST" in (rule.methods or ())]


def path_of(rule: Rule) -> str:
    """The rule's path with every variable part filled in."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", lambda m: "1", rule.rule)


@pytest.mark.parametrize("with_password", [True, False], ids=["password", "local"])
def test_every_post_without_the_csrf_token_is_refused(
    with_password: bool, tmp_path: Path, engine: Engine, smtp_server: SmtpServer
) -> None:
    password = {"admin_password": PASSWORD} if with_password else {}
    console = make_console(tmp_path, engine, smtp_server, **password)
    app = console.app
    rules = post_rules(app)
    endpoints = {rule.endpoint for rule in rules}
    assert {"admin.login", "admin.send_test", "admin.send", "admin.cancel"} <= endpoints
    assert {"admin.preflight", "admin.logout"} <= endpoints
    client = signed_in(app)
    form = {"address": "editor@example.org", "categories": "rehabilitation", "edition": "2026-W48"}
    for rule in rules:
        for sent in ({}, {"csrf_token": "forged"}, {"csrf_token": ""}):
            answer = client.post(path_of(rule), data={**form, **sent, "password": PASSWORD})
            assert answer.status_code == 400, (rule.rule, sent, answer.status_code)
            assert b"This form has expired or came from another page" in answer.data
    # nothing was done: no test message, no edition
    assert console.smtp.handler.messages == []
    with app.app_context():
        assert current_admin().sends.current is None
        assert current_admin().preflight is None
    # the same form with the token goes through
    answer = client.post("/admin/send-test", data={**form, "csrf_token": client.csrf})  # type: ignore[attr-defined]
    assert answer.status_code == 303
    assert len(console.smtp.handler.messages) == 1


def test_every_route_is_under_admin(console: Console) -> None:
    for rule in console.app.url_map.iter_rules():
        assert rule.rule == "/" or rule.rule.startswith("/admin/"), rule.rule


def test_gets_change_nothing(console: Console) -> None:
    client = signed_in(console.app)
    for path in ("/admin/send", "/admin/cancel"):
        page = client.get(path)
        assert page.status_code == 200  # the confirmation page: a POST does it
    assert (
        client.get("/admin/send-test?categories=rehabilitation&address=a@example.org").status_code
        == 405
    )
    assert client.get("/admin/preflight").status_code == 405
    assert console.smtp.handler.messages == []
    with console.app.app_context():
        assert current_admin().sends.current is None


# ---------------------------------------------------------------- without a password


def test_without_a_password_only_this_machine_is_served(local: Console) -> None:
    client = local.app.test_client()
    assert client.get("/admin/").status_code == 200  # no sign-in needed on 127.0.0.1
    assert client.get("/admin/login").status_code == 303
    other = client_from(local.app, "192.0.2.7")
    refused = other.get("/admin/")
    assert refused.status_code == 403
    assert refused.data == b"The admin console without a password answers this machine only."
    proxied = client.get("/admin/", headers={"X-Forwarded-For": "192.0.2.7"})
    assert proxied.status_code == 403
    assert client.get("/admin/", headers={"Host": "127.0.0.1:8025"}).status_code == 200
    assert client.get("/admin/", headers={"Host": "digest.attacker.example"}).status_code == 400


def test_pages_send_the_subscriber_pages_security_headers(local: Console) -> None:
    client = local.app.test_client()
    page = client.get("/admin/")
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src" not in csp  # no script runs in the console
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["X-Robots-Tag"] == "noindex, nofollow"
    frame = client.get("/admin/email?categories=rehabilitation")
    assert frame.status_code == 200 and frame.mimetype == "text/html"
    assert "sandbox" in frame.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in frame.headers["Content-Security-Policy"]
    assert frame.headers["X-Frame-Options"] == "SAMEORIGIN"
    missing = client.get("/admin/no-such-page")
    assert missing.status_code == 404
    assert missing.headers["X-Frame-Options"] == "DENY"
    assert missing.headers["Cache-Control"] == "no-store"


# ---------------------------------------------------------------- digest serve


def test_digest_serve_has_no_page_of_the_console(
    tmp_path: Path, engine: Engine, console: Console
) -> None:
    public = create_app(console.settings, engine)
    client = public.test_client()
    for rule in console.app.url_map.iter_rules():
        path = path_of(rule)
        if path == "/":
            continue
        assert client.get(path).status_code == 404, path
        assert client.post(path).status_code in (404, 405), path
    assert not any(r.rule.startswith("/admin") for r in public.url_map.iter_rules())
