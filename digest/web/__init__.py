"""The subscriber pages: unsubscribe (RFC 8058 one-click), preferences, sign-up and
confirmation, the web version of each sent digest, the public archive and Atom feeds.

``create_app()`` is the WSGI app factory (``digest serve`` runs it with werkzeug; any WSGI
server can: ``gunicorn 'digest.web:create_app()'``). Without arguments it loads the settings
as the CLI does. Pages work without JavaScript and set no cookie: the token in the URL is
the credential, and forms carry signed values instead of a session (see
:mod:`digest.web.security`). Behind a reverse proxy, wrap the app in werkzeug's
``ProxyFix`` so the rate limits see the client's address.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, request
from sqlalchemy import Engine

from digest.config import Settings, load_settings
from digest.edition.transport import make_transport
from digest.mail.transports.base import Transport
from digest.render.renderer import Palette, builtin_templates_dir
from digest.store.db import make_engine, utcnow
from digest.store.schema import open_database
from digest.web import pages, public, security
from digest.web.state import WebApp

__all__ = ["WebApp", "create_app"]

log = logging.getLogger("digest.web")


def create_app(
    settings: Settings | None = None,
    engine: Engine | None = None,
    *,
    now: Callable[[], dt.datetime] = utcnow,
    transport: Callable[[], Transport] | None = None,
) -> Flask:
    """The subscriber pages as a WSGI app."""
    settings = settings or load_settings()
    engine = engine or make_engine(settings.database_url)
    web = WebApp(
        settings=settings,
        factory=open_database(settings, engine),
        now=now,
        transport=transport or (lambda: make_transport(settings)),
    )
    web.key  # noqa: B018 - the form key, read (or made) before any request holds a session
    templates = settings.templates_dir or builtin_templates_dir()
    app = Flask(__name__, template_folder=str(templates / "web"), static_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=64 * 1024, JSON_AS_ASCII=False)
    app.extensions["digest_web"] = web
    security.install_redaction(app.logger, logging.getLogger("werkzeug"), log)

    @app.before_request
    def nonce() -> None:
        g.nonce = security.new_nonce()

    @app.context_processor
    def page_values() -> dict[str, Any]:
        return {
            "csp_nonce": g.get("nonce", ""),
            "site": settings,
            "palette": Palette(brand=settings.brand_color),
        }

    @app.after_request
    def headers(response: Response) -> Response:
        email = request.endpoint == "web_version" and response.status_code == 200
        for name, value in security.headers_for(
            request.path, g.get("nonce", ""), email=email
        ).items():
            response.headers[name] = value
        return response

    pages.register(app, web)
    public.register(app, web)
    if settings.bounce_webhook_secret:
        from digest.bounces.webhook import make_blueprint

        verp = settings.verp_secret.encode() if settings.verp_secret else None
        app.register_blueprint(
            make_blueprint(web.factory, secret=settings.bounce_webhook_secret, verp_secret=verp)
        )
    return app
