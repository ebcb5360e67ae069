"""The token pages of a reader, Blueprint ``pages``: unsubscribe (``/u/<token>``, RFC 8058
one-click at the same URL) and preferences (``/p/<token>``).

GET never changes anything (mail scanners follow links); POST does. Unknown and malformed
tokens get the same 404 page. A preferences form is checked whole before anything changes:
a refused form is shown again with its errors (status 400) and the reader stays as they were.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from flask import Blueprint, redirect, render_template, request, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as WerkzeugResponse

from digest.errors import SubscriberError
from digest.store.db import transaction
from digest.web import security
from digest.web.readers import Page, known_topics, not_found, reader_of, topics
from digest.web.state import current_web
from subscribers import service
from subscribers.lookup import validate_frequency
from subscribers.models import SUPPRESSED, Frequency, Status, Subscriber
from subscribers.preferences import PAUSE_WEEKS, pause

log = logging.getLogger("digest.web")
blueprint = Blueprint("pages", __name__)

NO_TOPIC = "Choose at least one topic, or unsubscribe from all below."
KEEP = "keep"
#: The pause choices of the form: weeks by value ("0" resumes at once).
PAUSES = {str(weeks): weeks for weeks in (0, *PAUSE_WEEKS)}


@dataclass(frozen=True, slots=True)
class Choices:
    """A preferences form that passed every check."""

    categories: tuple[str, ...]
    frequency: str | None  # None: unchanged
    pause_weeks: int | None  # None: unchanged; 0: resume now


def read_choices(
    form: Mapping[str, str], chosen: list[str], offered: list[tuple[str, str]]
) -> Choices | list[str]:
    """The reader's choices, or the errors to show with the form again. Pure."""
    errors: list[str] = []
    categories = known_topics(chosen, offered)
    if not categories:
        errors.append(NO_TOPIC)
    frequency = form.get("frequency") or None
    if frequency is not None:
        try:
            frequency = validate_frequency(frequency[:40])
        except SubscriberError:
            errors.append("Choose every week or once a month.")
    weeks_text = form.get("pause", KEEP)
    weeks = None if weeks_text == KEEP else PAUSES.get(weeks_text, -1)
    if weeks == -1:
        errors.append("Choose no break, or a pause of 2, 4 or 8 weeks.")
    if errors:
        return errors
    return Choices(tuple(categories), frequency, weeks)


def apply_choices(
    session: Session, subscriber: Subscriber, choices: Choices, *, now: dt.datetime
) -> None:
    """Save checked choices: a reader who had left joins again with them."""
    chosen = list(choices.categories)
    if subscriber.status != Status.ACTIVE and subscriber.status != Status.PENDING:
        service.resubscribe(session, subscriber, now=now, categories=chosen)
    elif set(chosen) != {c.slug for c in subscriber.categories}:
        service.set_categories(session, subscriber, chosen, now=now)
    service.set_preferences(subscriber, frequency=choices.frequency)
    if choices.pause_weeks is not None:
        pause(subscriber, choices.pause_weeks, now=now)


def preferences_form(
    token: str, subscriber: Subscriber, session: Session, errors: list[str], status: int
) -> Page:
    web = current_web()
    return (
        render_template(
            "site/preferences.html",
            reader=reader_of(subscriber, web.settings, web.now()),
            token=token,
            categories=topics(session),
            frequencies=[f.value for f in Frequency],
            pauses=PAUSE_WEEKS,
            csrf=security.csrf_value(web.key, token),
            errors=errors,
            saved=request.args.get("saved") == "1",
            suppressed=subscriber.status in SUPPRESSED,
        ),
        status,
    )


# ---------------------------------------------------------------------- unsubscribe


@blueprint.get("/u/<token>")
def unsubscribe_page(token: str) -> Page:
    web = current_web()
    with web.factory() as session:
        subscriber = service.find_by_token(session, token)
        if subscriber is None:
            return not_found()
        reader = reader_of(subscriber, web.settings, web.now())
    return render_template("site/unsubscribe.html", reader=reader, token=token), 200


@blueprint.post("/u/<token>")
def unsubscribe(token: str) -> Page:
    """The button on the page and RFC 8058 one-click (``List-Unsubscribe=One-Click``,
    no cookie, no CSRF value: the token is the credential). Always 200, never a
    redirect; a repeat changes nothing."""
    web = current_web()
    # the form is read first: a body too large is refused (413) before anything changes
    how = "one-click" if request.form.get("List-Unsubscribe") == "One-Click" else "page"
    with transaction(web.factory) as session:
        subscriber = service.find_by_token(session, token)
        if subscriber is None:
            return not_found()
        changed = service.unsubscribe(session, subscriber, now=web.now())
        reader = reader_of(subscriber, web.settings, web.now())
    if changed:
        log.info("unsubscribed a reader (%s)", how)
    return render_template("site/unsubscribed.html", reader=reader, token=token), 200


# ---------------------------------------------------------------------- preferences


@blueprint.get("/p/<token>")
def preferences(token: str) -> Page:
    with current_web().factory() as session:
        subscriber = service.find_by_token(session, token)
        if subscriber is None:
            return not_found()
        return preferences_form(token, subscriber, session, [], 200)


@blueprint.post("/p/<token>")
def save_preferences(token: str) -> Page | WerkzeugResponse:
    web = current_web()
    with transaction(web.factory) as session:
        subscriber = service.find_by_token(session, token)
        if subscriber is None:
            return not_found()
        if not security.csrf_ok(web.key, token, request.form.get("csrf", "")):
            return render_template("site/expired_form.html", token=token), 400
        now = web.now()
        if request.form.get("action") == "unsubscribe":
            service.unsubscribe(session, subscriber, now=now)
            reader = reader_of(subscriber, web.settings, now)
            return render_template("site/unsubscribed.html", reader=reader, token=token), 200
        choices = read_choices(request.form, request.form.getlist("categories"), topics(session))
        if isinstance(choices, list):  # nothing was changed
            return preferences_form(token, subscriber, session, choices, 400)
        apply_choices(session, subscriber, choices, now=now)
    log.info("saved a reader's preferences")
    return redirect(url_for("pages.preferences", token=token, saved=1), code=303)
