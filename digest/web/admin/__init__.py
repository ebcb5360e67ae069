"""The admin console: this week's edition, previews and test sends (what ``digest preview
--serve`` was), and, nested in it, the list and its health (Blueprints ``admin.people`` at
``/admin/list`` and ``admin.health`` at ``/admin/health``).

``create_admin_app()`` is the WSGI factory (``digest admin`` runs it with werkzeug on
127.0.0.1; any WSGI server can: ``gunicorn 'digest.web.admin:create_admin_app()'``, then
with ``admin_password`` set and behind HTTPS). It installs the state the subscriber pages'
views read (:func:`digest.web.state.current_web`: settings, sessions, clock, transport)
and the console's own (:func:`~digest.web.admin.state.current_admin`), and registers
:data:`bp`. The console is never part of ``digest serve``'s app (:func:`digest.web.create_app`).
Who may use it: :mod:`~digest.web.admin.auth`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
from collections.abc import Callable
from functools import partial

import jinja2
from flask import Flask, redirect
from sqlalchemy import Engine
from werkzeug.wrappers import Response as WerkzeugResponse

from digest.clock import running_clock
from digest.config import Settings, load_settings
from digest.delivery.transport import make_transport
from digest.mail.transports.base import Transport
from digest.render.renderer import builtin_templates_dir, long_date
from digest.store.db import make_engine
from digest.store.schema import open_database
from digest.web import security
from digest.web.admin import health, people, previews, week  # noqa: F401  (views join bp)
from digest.web.admin.auth import SESSION_HOURS, csrf_field, password_hash
from digest.web.admin.blueprint import bp, security_headers
from digest.web.admin.state import EXTENSION, AdminState, current_admin
from digest.web.limits import limits_for
from digest.web.state import WebApp, current_web, ensure_form_key

__all__ = ["bp", "create_admin_app", "csrf_field", "current_admin", "current_web"]

#: Host names the console answers to without a password (against DNS rebinding).
LOCAL_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
MAX_FORM_BYTES = 64 * 1024

# The list and its health, nested once at import: Flask refuses to change a Blueprint after
# an app has registered it. Their requests go through bp's sign-in, CSRF and headers.
bp.register_blueprint(people.bp, url_prefix="/list")
bp.register_blueprint(health.bp, url_prefix="/health")


def create_admin_app(
    settings: Settings | None = None,
    engine: Engine | None = None,
    *,
    now: Callable[[], dt.datetime] | None = None,
    transport: Callable[[], Transport] | None = None,
) -> Flask:
    """The console as a WSGI app. Without arguments it loads the settings as the CLI does;
    its clock is ``now`` (by default the real one, or the one ``DIGEST_NOW`` starts)."""
    now = now or running_clock()
    settings = settings or load_settings()
    engine = engine or make_engine(settings.database_url)
    factory = open_database(settings, engine)
    web = WebApp(
        settings=settings,
        factory=factory,
        now=now,
        transport=transport or partial(make_transport, settings),
        key=ensure_form_key(factory),
        limits=limits_for(settings),
        proxies=security.networks(settings.trusted_proxies),
    )
    admin = AdminState(engine=engine, password_hash=password_hash(settings.admin_password))
    app = Flask(__name__, static_folder=None)
    app.jinja_loader = jinja2.FileSystemLoader(str(builtin_templates_dir() / "web"))
    app.jinja_env.filters.update(long_date=long_date)
    # sessions signed with a key only this database and this password give
    signing = (admin.password_hash or "local").encode()
    app.config.update(
        SECRET_KEY=hmac.new(web.key, b"admin-session:" + signing, hashlib.sha256).digest(),
        SESSION_COOKIE_NAME="digest_admin",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_PATH="/",
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=SESSION_HOURS),
        MAX_CONTENT_LENGTH=MAX_FORM_BYTES,
        TEMPLATES_AUTO_RELOAD=True,
    )
    if admin.local_only:
        app.config["TRUSTED_HOSTS"] = LOCAL_HOSTS
    web.install(app)
    app.extensions[EXTENSION] = admin
    security.install_redaction(app.logger, logging.getLogger("werkzeug"))
    app.register_blueprint(bp)
    app.after_request(security_headers)  # also on answers outside the Blueprint (404s)
    app.add_url_rule("/", "root", to_console)
    return app


def to_console() -> WerkzeugResponse:
    return redirect("/admin/", code=303)
