"""Joining and finding one's links, Blueprint ``signup``: sign-up (``/subscribe``),
confirmation (``/confirm/<token>``) and "email me my links" (``/unsubscribe``).

Sign-up and link requests answer the same whether or not the address is known, are
limited per client, per address and for the whole site (:mod:`digest.web.limits`: over a
limit, a 429 page says when to retry and nothing is sent) and carry a signed time stamp
and a honeypot field.
Confirmation is a button: GET shows it, POST confirms (link scanners confirm nobody).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time

from flask import Blueprint, Response, make_response, render_template, request
from sqlalchemy.orm import Session

from digest.errors import DigestError, SubscriberError
from digest.notices.confirmation import send_confirmations
from digest.store.db import transaction
from digest.web import security
from digest.web.limits import Limit, count_hit
from digest.web.mailer import send_links
from digest.web.readers import (
    Page,
    client_address,
    form_text,
    known_topics,
    not_found,
    reader_of,
    topics,
)
from digest.web.state import WebApp, current_web
from subscribers import service
from subscribers.consent import CONSENT_TEXT_VERSION
from subscribers.models import SUPPRESSED, Status
from subscribers.preferences import LinkState, confirmation_state

log = logging.getLogger("digest.web")
blueprint = Blueprint("signup", __name__)

CONSENT_TEXT = (
    "I agree to receive an email digest of new research summaries in the topics I chose. "
    "You keep only my address, my name if I give it, and my topics, to send it; every "
    "digest has a link to change my topics or unsubscribe."
)
ENTER_ADDRESS = "Enter your email address, such as name@example.org."


# ---------------------------------------------------------------------- sign-up


def signup_form(session: Session, errors: list[str], values: dict[str, object]) -> str:
    return render_template(
        "site/subscribe.html",
        categories=topics(session),
        consent=CONSENT_TEXT,
        stamp=security.form_stamp(current_web().key, time.time()),
        errors=errors,
        values=values,
    )


@blueprint.get("/subscribe")
def subscribe_page() -> Page:
    with current_web().factory() as session:
        return signup_form(session, [], {"categories": []}), 200


def over_limits(web: WebApp, address: str, per_address: Limit) -> dt.datetime | None:
    """Count this request against the client's, the address's and the site's limits;
    the moment to retry when one of them is reached (then nothing was counted)."""
    limits = web.limits
    hits = [
        (limits.per_ip, security.address_key(web.key, client_address())),
        (per_address, security.address_key(web.key, address)),
        (limits.per_site, "site"),
    ]
    return count_hit(web.factory, hits, web.now())


def too_many(retry_at: dt.datetime) -> Response:
    """The 429 page: when to try again (also as ``Retry-After``)."""
    seconds = max(1, math.ceil((retry_at - current_web().now()).total_seconds()))
    minutes = math.ceil(seconds / 60)
    wait = f"{minutes} minutes" if minutes < 120 else f"{math.ceil(minutes / 60)} hours"
    page = render_template(
        "site/too_many.html", wait="1 minute" if minutes == 1 else wait, retry_at=retry_at
    )
    response = make_response(page, 429)
    response.headers["Retry-After"] = str(seconds)
    return response


@blueprint.post("/subscribe")
def subscribe() -> Page | Response:
    web = current_web()
    form = request.form
    email = form_text("email", 320)
    name = form_text("name", 200)
    chosen = form.getlist("categories")
    values: dict[str, object] = {"email": email, "name": name, "categories": chosen}
    if form.get("website"):  # the honeypot: people never see it
        return render_template("site/check_inbox.html"), 200
    if not security.stamp_ok(web.key, form.get("stamp", ""), time.time()):
        with web.factory() as session:
            errors = ["This form was open too long. Please check your choices and send again."]
            return signup_form(session, errors, values), 400
    errors = []
    try:
        address = service.normalize_email(email)
    except SubscriberError:
        errors.append(ENTER_ADDRESS)
    with web.factory() as session:
        chosen = known_topics(chosen, topics(session))
        if not chosen:
            errors.append("Choose at least one topic.")
        if errors:
            return signup_form(session, errors, values), 400
    if retry_at := over_limits(web, address, web.limits.per_address):
        return too_many(retry_at)
    sign_up(web, address, name or None, chosen)
    return render_template("site/check_inbox.html"), 200


def sign_up(web: WebApp, address: str, name: str | None, chosen: list[str]) -> None:
    """Pending subscriber + confirmation email; an active address gets its links
    instead. Failures are logged (without the address), never shown."""
    now = web.now()
    try:
        with transaction(web.factory) as session:
            existing = service.find_by_email(session, address)
            if existing is not None and existing.status == Status.ACTIVE:
                links = (existing.email, existing.name, existing.token)
                subscriber_id = None
            else:
                links = None
                subscriber = service.add_subscriber(
                    session,
                    address,
                    chosen,
                    now=now,
                    name=name,
                    source="form",
                    consent_version=CONSENT_TEXT_VERSION,
                )
                subscriber_id = subscriber.id
        transport = web.transport()
        try:
            if links is not None:
                to, their_name, token = links
                send_links(web.settings, transport, to=to, name=their_name, token=token, now=now)
            elif subscriber_id is not None:
                send_confirmations(
                    web.settings, web.factory, transport, now=now, subscriber_ids=[subscriber_id]
                )
        finally:
            transport.close()
    except DigestError as exc:
        log.error("sign-up: could not complete (%s)", type(exc).__name__)


# ---------------------------------------------------------------------- confirmation


def unusable_confirmation(token: str) -> Page | None:
    """The page for a confirmation link that is unknown, malformed or expired (one page, one
    status, one path: the answer says nothing of which); None if usable."""
    web = current_web()
    with web.factory() as session:
        state = confirmation_state(session, token, now=web.now())
    if state in (LinkState.UNKNOWN, LinkState.EXPIRED):
        return not_found()
    return None


@blueprint.get("/confirm/<token>")
def confirm_page(token: str) -> Page:
    unusable = unusable_confirmation(token)
    return unusable or (render_template("site/confirm.html", token=token), 200)


@blueprint.post("/confirm/<token>")
def confirm(token: str) -> Page:
    if unusable := unusable_confirmation(token):
        return unusable
    web = current_web()
    try:
        with transaction(web.factory) as session:
            subscriber = service.confirm_with_token(session, token, now=web.now())
            reader, own = reader_of(subscriber, web.settings, web.now()), subscriber.token
    except SubscriberError:  # used by a request that came in at the same moment
        return not_found()
    log.info("confirmed a subscriber")
    return render_template("site/confirmed.html", reader=reader, token=own), 200


# ---------------------------------------------------------------------- link request


def links_form(errors: list[str], status: int) -> Page:
    stamp = security.form_stamp(current_web().key, time.time())
    return render_template("site/request_links.html", stamp=stamp, errors=errors), status


@blueprint.get("/unsubscribe")
def request_links_page() -> Page:
    return links_form([], 200)


@blueprint.post("/unsubscribe")
def request_links() -> Page | Response:
    web = current_web()
    form = request.form
    if form.get("website"):
        return render_template("site/links_sent.html"), 200
    stamp_ok = security.stamp_ok(web.key, form.get("stamp", ""), time.time())
    try:
        address = service.normalize_email(form_text("email", 320))
    except SubscriberError:
        address = ""
    if not stamp_ok:
        return links_form(["This form was open too long. Please send it again."], 400)
    if not address:
        return links_form([ENTER_ADDRESS], 400)
    if retry_at := over_limits(web, address, web.limits.links_per_address):
        return too_many(retry_at)
    with web.factory() as session:
        found = service.find_by_email(session, address)
        person = (found.email, found.name, found.token) if found else None
        if found is not None and found.status in SUPPRESSED:
            person = None
    if person is not None:
        to, name, token = person
        try:
            transport = web.transport()
            try:
                send_links(web.settings, transport, to=to, name=name, token=token, now=web.now())
            finally:
                transport.close()
        except DigestError as exc:
            log.error("link request: could not send (%s)", type(exc).__name__)
    return render_template("site/links_sent.html"), 200
