"""The console's Blueprint, ``admin`` at ``/admin``, and what every one of its requests goes
through, nested Blueprints' too (``admin.people``, ``admin.health``): the sign-in and CSRF
check (:mod:`~digest.web.admin.auth`) and the security headers of the subscriber pages,
stricter where the console needs it (never cached, never indexed; the email previews framed
by the console's own pages only)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, request, session
from flask.sansio.blueprints import BlueprintSetupState

from digest.web import security

bp = Blueprint("admin", __name__, url_prefix="/admin")

#: The email itself, in a frame of a preview page: its own inline styles and remote images,
#: never a script or a form, framed by the console only.
EMAIL_CSP = security.EMAIL_CSP.replace("frame-ancestors 'none'", "frame-ancestors 'self'")
#: The console's pages: the subscriber pages' policy, plus frames of the console's own
#: email previews.
PAGE_CSP = security.PAGE_CSP + "; frame-src 'self'"
#: Endpoints that answer with a digest's HTML, shown in a frame.
EMAIL_ENDPOINTS = frozenset({"admin.email"})


@bp.after_request
def security_headers(response: Response) -> Response:
    headers = security.headers_for(request.path, g.get("nonce", ""))
    if request.endpoint in EMAIL_ENDPOINTS and response.status_code == 200:
        headers["Content-Security-Policy"] = EMAIL_CSP
        headers["X-Frame-Options"] = "SAMEORIGIN"
    else:
        headers["Content-Security-Policy"] = PAGE_CSP.format(nonce=g.get("nonce", ""))
    headers["Cache-Control"] = "no-store"
    headers["X-Robots-Tag"] = "noindex, nofollow"
    response.headers.update(headers)
    return response


@bp.context_processor
def page_values() -> dict[str, Any]:
    from digest.web.admin.state import current_admin
    from digest.web.state import current_web

    return {
        "csp_nonce": g.get("nonce", ""),
        "site": current_web().settings,
        "signed_in": bool(session.get("admin")) and not current_admin().local_only,
    }


@bp.record_once
def template_helpers(state: BlueprintSetupState) -> None:
    """``csrf_token()`` and ``csrf_field()`` in every template of the app (the forms of
    nested Blueprints use them too)."""
    from digest.web.admin.auth import csrf_field, csrf_token

    state.app.jinja_env.globals.update(csrf_token=csrf_token, csrf_field=csrf_field)
