"""The preview server: this week's digests in the browser, for admins, on 127.0.0.1 only.

``create_preview_app`` builds a Flask app that renders through the same code as a send, with
a fresh :class:`~digest.render.renderer.Renderer` per request (template edits show on reload). Pages
change nothing; the one POST sends a test message ("[TEST] " subject, no ledger row) and
needs the CSRF token of the page it came from.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from flask import Flask, Response, flash, g, redirect, render_template, request, session, url_for
from sqlalchemy import Engine
from werkzeug.wrappers import Response as WerkzeugResponse

from digest.clock import running_clock
from digest.config import Settings
from digest.delivery.transport import make_transport
from digest.edition.checks import WeekPlan, check_variants, plan_week
from digest.errors import DigestError
from digest.planning.selection import VariantKey
from digest.preview.reader import (
    Preview,
    preview_categories,
    preview_key,
    preview_subscriber,
    send_test,
)
from digest.render.renderer import builtin_templates_dir
from digest.store.db import make_engine
from digest.store.schema import open_database
from digest.web.server import run_until_interrupted

HOSTS = ["127.0.0.1", "localhost"]
PHONE_WIDTH, DESKTOP_WIDTH = 375, 680
PLAN_TTL = 60.0  # seconds a variant page reuses the index's plan
_PAGE_CSP = (
    "default-src 'none'; style-src 'nonce-{nonce}'; img-src 'self' data:; frame-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'self'"
)
#: The email itself: its own inline styles and remote images, never a script or a form.
_EMAIL_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; "
    "sandbox allow-popups allow-popups-to-escape-sandbox"
)


_FIELDS = ("variant", "subscriber", "categories", "since")


def variant_id(key: VariantKey) -> str:
    """A stable name for a variant in URLs (no ids of readers in it)."""
    return hashlib.sha256(repr(key).encode("ascii")).hexdigest()[:16]


@dataclass(frozen=True)
class Target:
    """Which digest a page shows: a variant of this week, a subscriber, or categories."""

    variant: str = ""
    subscriber: str = ""
    categories: str = ""
    since: str = ""

    @classmethod
    def from_values(cls, values: Mapping[str, str]) -> Target:
        got = {name: " ".join(str(values.get(name, "")).split())[:500] for name in _FIELDS}
        if got["subscriber"]:
            return cls(subscriber=got["subscriber"])
        if got["categories"]:
            return cls(categories=got["categories"], since=got["since"])
        return cls(variant=got["variant"])

    @property
    def query(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v}

    @property
    def title(self) -> str:
        if self.subscriber:
            return f"What {self.subscriber} gets"
        if self.categories:
            since = f" since {self.since}" if self.since else ""
            return f"A reader of {self.categories}{since}"
        return "A variant of this week's edition"


def create_preview_app(
    settings: Settings,
    engine: Engine | None = None,
    *,
    now: Callable[[], dt.datetime] | None = None,
) -> Flask:
    """The preview server's WSGI app (serve it on 127.0.0.1 only: see :func:`serve_preview`);
    its clock is ``now``, by default the real one or the one ``DIGEST_NOW`` starts."""
    now = now or running_clock()
    engine = engine or make_engine(settings.database_url)
    factory = open_database(settings, engine)
    app = Flask(__name__, template_folder=str(builtin_templates_dir() / "web"), static_folder=None)
    app.config.update(
        SECRET_KEY=secrets.token_bytes(32),
        TEMPLATES_AUTO_RELOAD=True,
        TRUSTED_HOSTS=HOSTS,
        SESSION_COOKIE_NAME="digest_preview",
        SESSION_COOKIE_SAMESITE="Strict",
    )

    def load(target: Target) -> Preview:
        moment = now()
        if target.subscriber:
            return preview_subscriber(settings, target.subscriber, now=moment, engine=engine)
        if target.categories:
            since = None
            if target.since:
                try:
                    day = dt.datetime.fromisoformat(target.since)
                except ValueError:
                    why = f"since {target.since!r} is not a date such as 2026-11-16"
                    raise DigestError(why) from None
                since = day.replace(tzinfo=day.tzinfo or settings.zone).astimezone(dt.UTC)
            labels = [label for label in target.categories.split(",") if label.strip()]
            return preview_categories(settings, labels, now=moment, since=since, engine=engine)
        for fresh in (False, True):  # the index's plan, then a new one if it changed since
            plan = week(moment, fresh=fresh)
            for key in plan.recipients:
                if variant_id(key) == target.variant:
                    with factory() as db:
                        return preview_key(
                            db, settings, key, now=moment, since=None, cutoff=plan.cutoff
                        )
        raise DigestError("that variant is not in this week's edition any more")

    plans: list[tuple[float, WeekPlan]] = []

    def week(moment: dt.datetime, *, fresh: bool) -> WeekPlan:
        """This week's plan; a page and its frames reuse the index's for a minute, since
        planning reads every reader."""
        if not fresh and plans and time.monotonic() - plans[-1][0] < PLAN_TTL:
            return plans[-1][1]
        plan = plan_week(factory, settings, moment)
        plans[:] = [(time.monotonic(), plan)]
        return plan

    @app.before_request
    def csrf_and_nonce() -> None:
        g.nonce = secrets.token_urlsafe(16)
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(32)

    @app.context_processor
    def page_values() -> dict[str, Any]:
        return {
            "csp_nonce": g.nonce,
            "csrf_token": session["csrf"],
            "site_name": settings.site_name,
            "phone_width": PHONE_WIDTH,
            "desktop_width": DESKTOP_WIDTH,
        }

    @app.after_request
    def security_headers(response: Response) -> Response:
        if request.endpoint == "email":
            response.headers["Content-Security-Policy"] = _EMAIL_CSP
        else:
            response.headers["Content-Security-Policy"] = _PAGE_CSP.format(nonce=g.nonce)
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/")
    def index() -> str:
        moment = now()
        plan = week(moment, fresh=True)
        with factory() as db:
            checked = check_variants(
                db, settings, plan.numbered(), date=moment, validate=False, edition=plan.key
            )
        rows = [
            {
                "number": v.number,
                "id": variant_id(v.key),
                "categories": v.categories,
                "summaries": len(v.key[1]),
                "recipients": plan.recipients[v.key],
                "subject": v.subject,
                "problems": v.problems,
            }
            for v in checked.variants
        ]
        return render_template("preview/index.html", plan=plan, rows=rows)

    @app.get("/view")
    def view() -> tuple[str, int]:
        target = Target.from_values(request.args)
        try:
            result = load(target)
        except DigestError as exc:
            return render_template("preview/error.html", target=target, error=str(exc)), 404
        return render_template("preview/view.html", target=target, preview=result), 200

    @app.get("/email")
    def email() -> Response:
        try:
            result = load(Target.from_values(request.args))
        except DigestError as exc:
            return Response(str(exc), status=404, mimetype="text/plain")
        return Response(result.html, mimetype="text/html")

    @app.post("/send-test")
    def send_test_message() -> WerkzeugResponse:
        sent = str(request.form.get("csrf_token", ""))
        if not hmac.compare_digest(sent.encode(), str(session["csrf"]).encode()):
            return Response(
                "This form has expired or came from another page: reload and try again.",
                status=400,
                mimetype="text/plain",
            )
        target = Target.from_values(request.form)
        address = str(request.form.get("address", "")).strip()
        try:
            result = load(target)
            transport = make_transport(settings)
            try:
                reply = send_test(settings, result, address, transport, now=now())
            finally:
                transport.close()
        except DigestError as exc:
            flash(f"Not sent: {exc}", "error")
        else:
            flash(f"Sent a test to {address} via {transport.name}: {reply}", "sent")
        return redirect(url_for("view", _external=False, **target.query), code=303)

    return app


def serve_preview(settings: Settings, *, port: int, echo: Callable[[str], None] = print) -> None:
    """Serve the preview app on 127.0.0.1 until Ctrl-C."""
    run_until_interrupted(
        create_preview_app(settings),
        "127.0.0.1",
        port,
        lambda url: echo(f"Preview server on {url} (Ctrl-C stops it)."),
    )
