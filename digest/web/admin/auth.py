"""Who may use the console, and the forms' CSRF tokens.

* **Without a password** (``admin_password`` unset) the console answers only clients on
  this machine: a loopback peer, no proxy header, a ``Host`` of 127.0.0.1 or localhost
  (``TRUSTED_HOSTS``, against DNS rebinding). ``digest admin`` refuses any other address.
* **With a password** every page but the sign-in page needs a signed-in session: a cookie
  that is ``Secure``, ``HttpOnly`` and ``SameSite=Strict``, signed with a key derived from
  the database's form key and the password's hash (changing the password signs everyone
  out), valid for :data:`SESSION_HOURS`. Only the hash of the password is kept
  (werkzeug's scrypt); the setting may hold the hash itself. Repeated failures lock the
  client's address out for a while (:mod:`~digest.web.admin.lockout`).
* **CSRF**: every POST to the console (nested Blueprints included) carries the session's
  token in a field named ``csrf_token`` (:func:`csrf_field`), or is refused with 400.
"""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import secrets
from urllib.parse import urlsplit

from flask import Response, g, redirect, render_template, request, session, url_for
from markupsafe import Markup
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers import Response as WerkzeugResponse

from digest.config_values import PASSWORD_HASH
from digest.web import security
from digest.web.admin.blueprint import bp
from digest.web.admin.state import current_admin
from digest.web.state import current_web

SESSION_HOURS = 12
#: Methods that change nothing (every other one needs the CSRF token).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Endpoints open without signing in.
OPEN_ENDPOINTS = frozenset({"admin.login"})
EXPIRED = "This form has expired or came from another page: reload the page and try again."


def password_hash(password: str | None) -> str | None:
    """What the console keeps of ``admin_password``: its hash (the setting may be one)."""
    if not password:
        return None
    if PASSWORD_HASH.fullmatch(password):
        return password
    return generate_password_hash(password)


def csrf_token() -> str:
    """The session's CSRF token, made on first use."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


def csrf_field() -> Markup:
    """The hidden field every POST form of the console carries."""
    return Markup('<input type="hidden" name="csrf_token" value="{}">').format(csrf_token())


def csrf_ok() -> bool:
    sent = str(request.form.get("csrf_token", ""))
    kept = str(session.get("csrf", ""))
    return bool(kept) and hmac.compare_digest(sent.encode(), kept.encode())


def client_address() -> str:
    """The client, as the abuse limits of the subscriber pages see it."""
    remote = request.remote_addr or ""
    forwarded = request.headers.getlist("X-Forwarded-For")
    return security.forwarded_client(remote, forwarded, current_web().proxies)


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


@bp.before_request
def guard() -> WerkzeugResponse | tuple[str, int] | None:
    """Every request to the console: local only without a password; CSRF on POST; signed
    in with a password."""
    g.nonce = security.new_nonce()
    admin = current_admin()
    if admin.local_only:
        proxied = "X-Forwarded-For" in request.headers or "Forwarded" in request.headers
        if proxied or not _loopback(request.remote_addr or ""):
            text = "The admin console without a password answers this machine only."
            return Response(text, status=403, mimetype="text/plain")
    if request.method not in SAFE_METHODS and not csrf_ok():
        return render_template("admin/expired.html", message=EXPIRED), 400
    if admin.local_only or request.endpoint in OPEN_ENDPOINTS or session.get("admin"):
        return None
    if request.method in SAFE_METHODS:
        return redirect(url_for("admin.login", next=request.full_path.rstrip("?")), code=303)
    return Response("Sign in first.", status=401, mimetype="text/plain")


def _next_page() -> str:
    """Where to go after signing in: a console page, never another site."""
    wanted = str(request.values.get("next", ""))
    parts = urlsplit(wanted)
    if parts.scheme or parts.netloc or not parts.path.startswith(bp.url_prefix or "/admin"):
        return url_for("admin.week")
    return wanted


def _login_page(error: str) -> str:
    lockout = current_admin().lockout
    return render_template(
        "admin/login.html",
        error=error,
        next=_next_page(),
        failures=lockout.failures,
        window=int(lockout.window // 60),
        locked=int(lockout.locked_for // 60),
    )


def _locked(until: float) -> tuple[str, int, dict[str, str]]:
    ends = dt.datetime.fromtimestamp(until, dt.UTC)
    seconds = max(1, int(until - current_admin().lockout.clock()))
    minutes = (seconds + 59) // 60
    message = (
        f"Too many failed sign-ins from your address: try again after {ends:%H:%M} UTC "
        f"(in {minutes} minute{'s' if minutes != 1 else ''})."
    )
    return _login_page(message), 429, {"Retry-After": str(seconds)}


@bp.route("/login", methods=["GET", "POST"])
def login() -> WerkzeugResponse | str | tuple[str, int] | tuple[str, int, dict[str, str]]:
    admin = current_admin()
    if admin.password_hash is None or (request.method == "GET" and session.get("admin")):
        return redirect(url_for("admin.week"), code=303)
    client = client_address()
    until = admin.lockout.locked_until(client)
    if until is not None:
        return _locked(until)
    if request.method == "GET":
        return _login_page("")
    given = str(request.form.get("password", ""))
    if not check_password_hash(admin.password_hash, given):
        until = admin.lockout.failed(client)
        if until is not None:
            return _locked(until)
        return _login_page("Wrong password."), 401
    admin.lockout.succeeded(client)
    session.clear()  # a new session: nothing from before signing in is carried over
    session.permanent = True
    session["admin"] = True
    csrf_token()
    return redirect(_next_page(), code=303)


@bp.post("/logout")
def logout() -> WerkzeugResponse:
    session.clear()
    if current_admin().password_hash is None:
        return redirect(url_for("admin.week"), code=303)
    return redirect(url_for("admin.login"), code=303)
