"""The subscriber pages: unsubscribe (RFC 8058 one-click), preferences, sign-up and
confirmation, the web version of each sent digest, the public archive and Atom feeds.

``create_app()`` is the WSGI app factory (``digest serve`` runs it with werkzeug; any WSGI
server can: ``gunicorn 'digest.web:create_app()'``): it builds the shared state
(:mod:`digest.web.state`) and registers the Blueprints, whose views are module-level
functions: the token pages (:mod:`~digest.web.pages`), sign-up and links
(:mod:`~digest.web.signup`), the public pages (:mod:`~digest.web.public`), the edition
pages (:mod:`~digest.web.editions`) and, with a
secret, the bounce webhooks (:mod:`digest.bounces.webhook`). Without arguments it loads the settings
as the CLI does. Pages work without JavaScript and set no cookie: the token in the URL is
the credential, and forms carry signed values instead of a session (see
:mod:`digest.web.security`). Behind a reverse proxy, list it in ``trusted_proxies``
so the abuse limits see the client's address (from ``X-Forwarded-For``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import jinja2
from flask import Flask, Response, current_app, g, render_template, request, url_for
from sqlalchemy import Engine
from werkzeug.exceptions import RequestEntityTooLarge

from digest.clock import running_clock
from digest.config import Settings, load_settings
from digest.delivery.transport import make_transport
from digest.mail.transports.base import Transport
from digest.planning.when import first_day
from digest.render.renderer import Palette, builtin_templates_dir, long_date
from digest.store.db import make_engine
from digest.store.schema import open_database
from digest.web import editions, inputs, pages, public, security, signup
from digest.web.limits import limits_for
from digest.web.readers import Page
from digest.web.state import WebApp, current_web, ensure_form_key

__all__ = ["WebApp", "create_app", "current_web"]

log = logging.getLogger("digest.web")
#: Larger form posts get the "too large" page (status 413).
MAX_FORM_BYTES = 64 * 1024


def create_app(
    settings: Settings | None = None,
    engine: Engine | None = None,
    *,
    now: Callable[[], dt.datetime] | None = None,
    transport: Callable[[], Transport] | None = None,
) -> Flask:
    """The subscriber pages as a WSGI app. Its clock is ``now``: by default the real one,
    or, with ``DIGEST_NOW``, one that starts there and runs on (consent times, confirmation
    expiry, the archive's weeks); the sign-up rate limits and form stamps keep real time."""
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
    app = Flask(__name__, static_folder=None)
    app.jinja_loader = page_templates(settings)
    app.jinja_env.filters.update(
        long_date=long_date,
        week_start=first_day,
        local_day=lambda moment: moment.astimezone(settings.zone).date(),
    )
    app.config.update(MAX_CONTENT_LENGTH=MAX_FORM_BYTES, JSON_AS_ASCII=False)
    web.install(app)
    security.install_redaction(app.logger, logging.getLogger("werkzeug"), log)
    app.before_request(new_nonce)
    app.before_request(inputs.refuse_control_characters)
    app.context_processor(page_values)
    app.after_request(security_headers)
    app.register_error_handler(RequestEntityTooLarge, too_large)
    app.url_build_error_handlers.append(unqualified_endpoint)
    for blueprint in (pages.blueprint, signup.blueprint, public.blueprint, editions.blueprint):
        app.register_blueprint(blueprint)
    if settings.bounce_webhook_secret:
        from digest.bounces.webhook import make_blueprint

        verp = settings.verp_secret.encode() if settings.verp_secret else None
        app.register_blueprint(
            make_blueprint(
                factory, secret=settings.bounce_webhook_secret, verp_secret=verp, now=now
            )
        )
    return app


def page_templates(settings: Settings) -> jinja2.BaseLoader:
    """The pages' templates: ``templates_dir/web/`` first when there is one (a copy made
    by ``digest templates copy`` holds only ``email/``), then the built-in ones."""
    folders = [builtin_templates_dir() / "web"]
    if settings.templates_dir is not None:
        folders.insert(0, settings.templates_dir / "web")
    return jinja2.FileSystemLoader([str(folder) for folder in folders])


def new_nonce() -> None:
    g.nonce = security.new_nonce()


def page_values() -> dict[str, Any]:
    settings = current_web().settings
    return {
        "csp_nonce": g.get("nonce", ""),
        "site": settings,
        "palette": Palette(brand=settings.brand_color),
    }


def security_headers(response: Response) -> Response:
    # a 304 refreshes the headers of the kept copy: it needs the same policy as the page
    email = request.endpoint == "public.web_version" and response.status_code in (200, 304)
    for name, value in security.headers_for(request.path, g.get("nonce", ""), email=email).items():
        response.headers[name] = value
    return response


def too_large(_: RequestEntityTooLarge) -> Page:
    return render_template("site/too_large.html"), 413


def unqualified_endpoint(error: Exception, endpoint: str, values: dict[str, Any]) -> str:
    """``url_for('preferences')`` in page templates copied before the views moved into
    Blueprints: the one Blueprint endpoint of that name (``pages.preferences``)."""
    if "." in endpoint:
        raise error
    rules = current_app.url_map.iter_rules()
    found = {rule.endpoint for rule in rules if rule.endpoint.endswith("." + endpoint)}
    if len(found) != 1:
        raise error
    return url_for(found.pop(), **values)
