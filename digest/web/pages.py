"""The pages a subscriber uses: unsubscribe (``/u/<token>``, RFC 8058 one-click at the same
URL), preferences (``/p/<token>``), sign-up (``/subscribe``), confirmation
(``/confirm/<token>``) and "email me my links" (``/unsubscribe``).

GET never changes anything (mail scanners follow links); POST does. Unknown and malformed
tokens get the same 404 page. Sign-up and link requests answer the same whether or not the
address is known.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from flask import Flask, redirect, render_template, request, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as WerkzeugResponse

from digest.edition.plan import ordered_categories
from digest.errors import DigestError, SubscriberError
from digest.notices.confirmation import send_confirmations
from digest.store.db import transaction
from digest.web import security
from digest.web.mailer import send_links
from digest.web.state import WebApp
from subscribers import service
from subscribers.consent import CONSENT_TEXT_VERSION
from subscribers.models import SUPPRESSED, Frequency, Status, Subscriber
from subscribers.preferences import PAUSE_WEEKS, LinkState, confirmation_state, is_paused, pause

log = logging.getLogger("digest.web")
Page = tuple[str, int]

CONSENT_TEXT = (
    "I agree to receive an email digest of new research summaries in the topics I chose. "
    "You keep only my address, my name if I give it, and my topics, to send it; every "
    "digest has a link to change my topics or unsubscribe."
)


@dataclass(frozen=True, slots=True)
class Reader:
    """What a token page shows about its reader (never the token's owner's full address)."""

    masked_email: str
    name: str | None
    status: str
    categories: tuple[str, ...]  # slugs
    category_names: tuple[str, ...]
    frequency: str
    paused_until: str | None  # a date, when paused

    @property
    def subscribed(self) -> bool:
        return self.status == Status.ACTIVE


def mask(address: str) -> str:
    """``zoe@example.org`` -> ``z••@example.org``: enough to recognise, not to harvest."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}{'•' * min(max(len(local) - 1, 2), 6)}@{domain}"


def register(app: Flask, web: WebApp) -> None:
    settings = web.settings

    def reader_of(subscriber: Subscriber) -> Reader:
        until = None
        if is_paused(subscriber, web.now()):
            assert subscriber.paused_until is not None
            until = f"{subscriber.paused_until.astimezone(settings.zone):%d %B %Y}".lstrip("0")
        return Reader(
            masked_email=mask(subscriber.email),
            name=subscriber.name,
            status=subscriber.status,
            categories=tuple(c.slug for c in subscriber.categories),
            category_names=tuple(c.name for c in subscriber.categories),
            frequency=subscriber.frequency,
            paused_until=until,
        )

    def not_found() -> Page:
        return render_template("site/not_found.html"), 404

    def categories(session: Session) -> list[tuple[str, str]]:
        return [(c.slug, c.name) for c in ordered_categories(session)]

    def client() -> str:
        return request.remote_addr or "unknown"

    # ------------------------------------------------------------------ unsubscribe

    @app.get("/u/<token>")
    def unsubscribe_page(token: str) -> Page:
        with web.factory() as session:
            subscriber = service.find_by_token(session, token)
            if subscriber is None:
                return not_found()
            reader = reader_of(subscriber)
        return render_template("site/unsubscribe.html", reader=reader, token=token), 200

    @app.post("/u/<token>")
    def unsubscribe(token: str) -> Page:
        """The button on the page and RFC 8058 one-click (``List-Unsubscribe=One-Click``,
        no cookie, no CSRF value: the token is the credential). Always 200, never a
        redirect; a repeat changes nothing."""
        with transaction(web.factory) as session:
            subscriber = service.find_by_token(session, token)
            if subscriber is None:
                return not_found()
            changed = service.unsubscribe(session, subscriber, now=web.now())
            reader = reader_of(subscriber)
        if changed:
            log.info("unsubscribed a reader (%s)", _how())
        return render_template("site/unsubscribed.html", reader=reader, token=token), 200

    # ------------------------------------------------------------------ preferences

    def preferences_page(
        token: str, subscriber: Subscriber, session: Session, errors: list[str], status: int
    ) -> Page:
        return (
            render_template(
                "site/preferences.html",
                reader=reader_of(subscriber),
                token=token,
                categories=categories(session),
                frequencies=[f.value for f in Frequency],
                pauses=PAUSE_WEEKS,
                csrf=security.csrf_value(web.key, token),
                errors=errors,
                saved=request.args.get("saved") == "1",
                suppressed=subscriber.status in SUPPRESSED,
            ),
            status,
        )

    @app.get("/p/<token>")
    def preferences(token: str) -> Page:
        with web.factory() as session:
            subscriber = service.find_by_token(session, token)
            if subscriber is None:
                return not_found()
            return preferences_page(token, subscriber, session, [], 200)

    @app.post("/p/<token>")
    def save_preferences(token: str) -> Page | WerkzeugResponse:
        with transaction(web.factory) as session:
            subscriber = service.find_by_token(session, token)
            if subscriber is None:
                return not_found()
            if not security.csrf_ok(web.key, token, request.form.get("csrf", "")):
                return render_template("site/expired_form.html", token=token), 400
            now = web.now()
            if request.form.get("action") == "unsubscribe":
                service.unsubscribe(session, subscriber, now=now)
                return render_template(
                    "site/unsubscribed.html", reader=reader_of(subscriber), token=token
                ), 200
            errors = _apply(session, subscriber, request.form.getlist("categories"))
            if errors:
                session.rollback()
                return preferences_page(token, subscriber, session, errors, 400)
        log.info("saved a reader's preferences")
        return redirect(url_for("preferences", token=token, saved=1), code=303)

    def _apply(session: Session, subscriber: Subscriber, chosen: list[str]) -> list[str]:
        now = web.now()
        form = request.form
        known = {slug for slug, _ in categories(session)}
        chosen = [slug for slug in dict.fromkeys(chosen) if slug in known]
        if not chosen:
            return ["Choose at least one topic, or unsubscribe from all below."]
        try:
            if subscriber.status != Status.ACTIVE and subscriber.status != Status.PENDING:
                service.resubscribe(session, subscriber, now=now, categories=chosen)
            elif set(chosen) != {c.slug for c in subscriber.categories}:
                service.set_categories(session, subscriber, chosen, now=now)
            service.set_preferences(subscriber, frequency=form.get("frequency") or None)
            weeks = form.get("pause", "keep")
            if weeks != "keep":
                pause(subscriber, int(weeks) if weeks.isdigit() else -1, now=now)
        except SubscriberError as exc:
            return [str(exc)]
        return []

    # ------------------------------------------------------------------ sign-up

    def signup_form(session: Session, errors: list[str], values: dict[str, object]) -> str:
        return render_template(
            "site/subscribe.html",
            categories=categories(session),
            consent=CONSENT_TEXT,
            stamp=security.form_stamp(web.key, time.time()),
            errors=errors,
            values=values,
        )

    @app.get("/subscribe")
    def subscribe_page() -> Page:
        with web.factory() as session:
            return signup_form(session, [], {"categories": []}), 200

    @app.post("/subscribe")
    def subscribe() -> Page:
        form = request.form
        email = form.get("email", "").strip()[:320]
        name = form.get("name", "").strip()[:200]
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
            errors.append("Enter your email address, such as name@example.org.")
        with web.factory() as session:
            known = {slug for slug, _ in categories(session)}
            chosen = [slug for slug in dict.fromkeys(chosen) if slug in known]
            if not chosen:
                errors.append("Choose at least one topic.")
            if errors:
                return signup_form(session, errors, values), 400
        if not web.per_ip.hit(client()):
            return render_template("site/too_many.html"), 429
        if web.per_address.hit(security.address_key(web.key, address)):
            _sign_up(address, name or None, chosen)
        return render_template("site/check_inbox.html"), 200

    def _sign_up(address: str, name: str | None, chosen: list[str]) -> None:
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
                    send_links(
                        settings, transport, to=links[0], name=links[1], token=links[2], now=now
                    )
                elif subscriber_id is not None:
                    send_confirmations(
                        settings, web.factory, transport, now=now, subscriber_ids=[subscriber_id]
                    )
            finally:
                transport.close()
        except DigestError as exc:
            log.error("sign-up: could not complete (%s)", type(exc).__name__)

    # ------------------------------------------------------------------ confirmation

    def unusable_confirmation(token: str) -> Page | None:
        """The page for a confirmation link that is unknown or expired; None if usable."""
        with web.factory() as session:
            state = confirmation_state(session, token, now=web.now())
        if state == LinkState.UNKNOWN:
            return not_found()
        if state == LinkState.EXPIRED:
            return render_template("site/confirm_expired.html"), 410
        return None

    @app.get("/confirm/<token>")
    def confirm_page(token: str) -> Page:
        unusable = unusable_confirmation(token)
        return unusable or (render_template("site/confirm.html", token=token), 200)

    @app.post("/confirm/<token>")
    def confirm(token: str) -> Page:
        if unusable := unusable_confirmation(token):
            return unusable
        with transaction(web.factory) as session:
            subscriber = service.confirm_with_token(session, token, now=web.now())
            reader, own = reader_of(subscriber), subscriber.token
        log.info("confirmed a subscriber")
        return render_template("site/confirmed.html", reader=reader, token=own), 200

    # ------------------------------------------------------------------ link request

    @app.get("/unsubscribe")
    def request_links_page() -> Page:
        stamp = security.form_stamp(web.key, time.time())
        return render_template("site/request_links.html", stamp=stamp, errors=[]), 200

    @app.post("/unsubscribe")
    def request_links() -> Page:
        form = request.form
        if form.get("website"):
            return render_template("site/links_sent.html"), 200
        stamp_ok = security.stamp_ok(web.key, form.get("stamp", ""), time.time())
        try:
            address = service.normalize_email(form.get("email", "")[:320])
        except SubscriberError:
            address = ""
        if not stamp_ok or not address:
            errors = ["Enter your email address, such as name@example.org."]
            if not stamp_ok:
                errors = ["This form was open too long. Please send it again."]
            stamp = security.form_stamp(web.key, time.time())
            return render_template("site/request_links.html", stamp=stamp, errors=errors), 400
        if not web.per_ip.hit(client()):
            return render_template("site/too_many.html"), 429
        if web.per_address.hit(security.address_key(web.key, address)):
            with web.factory() as session:
                found = service.find_by_email(session, address)
                person = (found.email, found.name, found.token) if found else None
                if found is not None and found.status in SUPPRESSED:
                    person = None
            if person is not None:
                try:
                    transport = web.transport()
                    try:
                        send_links(
                            settings,
                            transport,
                            to=person[0],
                            name=person[1],
                            token=person[2],
                            now=web.now(),
                        )
                    finally:
                        transport.close()
                except DigestError as exc:
                    log.error("link request: could not send (%s)", type(exc).__name__)
        return render_template("site/links_sent.html"), 200


def _how() -> str:
    return "one-click" if request.form.get("List-Unsubscribe") == "One-Click" else "page"
