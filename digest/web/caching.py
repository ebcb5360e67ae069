"""Conditional responses of the public pages and feeds: an ``ETag`` (a hash of the bytes
sent), a ``Last-Modified`` when the page has a date, ``Cache-Control: public`` and
``304 Not Modified`` to a matching ``If-None-Match`` or ``If-Modified-Since``.

A cached page must be byte for byte what a new request builds, so these pages carry a
stable style nonce (keyed by the site's secret and the path) instead of a new one per
request: the ``Content-Security-Policy`` sent with a 304 then still fits the copy the
browser kept. They hold no personal data and no form.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from typing import Any

from flask import Response, g, render_template, request

from digest.web.state import current_web

#: How long browsers and proxies may keep a public page or feed without asking again.
MAX_AGE = 3600


def stable_nonce(key: bytes, path: str) -> str:
    """The style nonce of the cacheable page at ``path``: unguessable without ``key``."""
    mac = hmac.new(key, f"nonce:{path}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:16]).decode().rstrip("=")


def conditional(
    body: str | bytes, mimetype: str, *, last_modified: dt.datetime | None = None
) -> Response:
    """``body`` as a cacheable response, or ``304 Not Modified`` when the client's copy is
    still current."""
    response = Response(body, mimetype=mimetype)
    response.cache_control.public = True
    response.cache_control.max_age = MAX_AGE
    response.add_etag()
    if last_modified is not None:
        response.last_modified = last_modified.astimezone(dt.UTC).replace(microsecond=0)
    response.make_conditional(request)
    return response


def cached_page(
    template: str, *, last_modified: dt.datetime | None = None, **context: Any
) -> Response:
    """A public page rendered with its stable nonce, as a :func:`conditional` response."""
    g.nonce = stable_nonce(current_web().key, request.path)
    html = render_template(template, **context)
    return conditional(html, "text/html", last_modified=last_modified)
