"""Webhooks for bounces and complaints, as a Flask blueprint (mount it in any Flask app):

``POST /bounces/json``, with the secret in a header: ``Authorization: Bearer <secret>``,
``X-Digest-Secret: <secret>``, or ``X-Digest-Signature: sha256=<hex HMAC-SHA256 of the
body keyed with the secret>``; ``?secret=`` still works for providers that cannot set
headers (``digest serve`` keeps it out of its log)::

    {"type": "bounce", "recipient": "jo@example.com", "status": "5.1.1",
     "action": "failed", "diagnostic": "550 5.1.1 user unknown",
     "message_id": "<digest.2026-W48...@example.org>", "envelope": "bounces+12-...@...",
     "id": "provider-event-id"}

(``type`` "complaint" for a complaint.) ``POST /bounces/ses``: Amazon SES notifications
delivered by SNS, accepted only with a valid SNS signature; a SubscriptionConfirmation is
confirmed by fetching its (amazonaws.com) SubscribeURL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, abort, current_app, jsonify, request
from sqlalchemy.orm import Session, sessionmaker

from digest.bounces.parse import Recipient, Report
from digest.bounces.process import handle
from digest.bounces.sns import Fetch, check_aws_url, verify
from digest.errors import DataError
from digest.store.db import transaction, utcnow

#: The key of the webhooks' options in ``app.extensions``.
EXTENSION = "digest_bounces"
#: Characters PostgreSQL refuses (NUL) or nobody needs in a report's text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def fetch_url(url: str) -> bytes:
    try:
        with urllib.request.urlopen(check_aws_url(url), timeout=10) as reply:  # noqa: S310
            data: bytes = reply.read(100_000)
            return data
    except OSError as exc:  # URLError, HTTPError, timeouts
        raise DataError(f"cannot fetch {url[:200]} ({exc})") from None


@dataclass(frozen=True, slots=True)
class WebhookOptions:
    """What the webhook views need, kept in ``app.extensions`` by the blueprint."""

    factory: sessionmaker[Session]
    secret: str
    verp_secret: bytes | None
    fetch: Fetch
    now: Callable[[], dt.datetime] = utcnow


def make_blueprint(
    factory: sessionmaker[Session],
    *,
    secret: str,
    verp_secret: bytes | None,
    fetch: Fetch = fetch_url,
    now: Callable[[], dt.datetime] = utcnow,
) -> Blueprint:
    """The webhooks, for one app: ``app.register_blueprint(make_blueprint(...))``; ``now``
    is the app's clock (the time bounces are recorded at)."""
    if len(secret) < 16:
        raise DataError("the webhook secret must be at least 16 characters")
    options = WebhookOptions(factory, secret, verp_secret, fetch, now)
    blueprint = Blueprint("bounces", __name__, url_prefix="/bounces")
    blueprint.add_url_rule("/json", view_func=generic, methods=["POST"])
    blueprint.add_url_rule("/ses", view_func=ses, methods=["POST"])
    blueprint.record_once(lambda state: state.app.extensions.__setitem__(EXTENSION, options))
    return blueprint


def webhook_options() -> WebhookOptions:
    options = current_app.extensions[EXTENSION]
    assert isinstance(options, WebhookOptions), "make_blueprint() installs the options"
    return options


def run(report: Report) -> Response:
    options = webhook_options()
    with transaction(options.factory) as session:
        outcomes = handle(session, report, options.verp_secret, now=options.now())
    return jsonify(
        results=[{"counted": o.counted, "line": o.line, "warning": o.warning} for o in outcomes]
    )


def authorized(secret: str) -> bool:
    """Whether the request carries ``secret`` (see the module's docstring), compared in
    constant time."""
    expected = secret.encode()
    signature = request.headers.get("X-Digest-Signature", "")
    if signature:
        mac = hmac.new(expected, request.get_data(), hashlib.sha256).hexdigest()
        given = signature.removeprefix("sha256=").strip().lower()
        return hmac.compare_digest(mac.encode(), given.encode("utf-8", "replace"))
    bearer = request.headers.get("Authorization", "")
    scheme, _, credential = bearer.partition(" ")
    given = (
        (credential.strip() if scheme.lower() == "bearer" else "")
        or request.headers.get("X-Digest-Secret")
        or request.args.get("secret", "")
    )
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected)


def generic() -> Response:
    """``POST /bounces/json``: one bounce or complaint; the secret is required."""
    if not authorized(webhook_options().secret):
        abort(403)
    payload = json_body(request.get_data(as_text=True)) if request.is_json else None
    if not isinstance(payload, dict):
        abort(400)
    try:
        return run(json_report(payload))
    except DataError as exc:
        return Response(str(exc), status=400, mimetype="text/plain")


def ses() -> Response:
    """``POST /bounces/ses``: an SNS message, refused unless its signature verifies."""
    fetch = webhook_options().fetch
    try:
        envelope = json_body(request.get_data(as_text=True))
        if not isinstance(envelope, dict):
            raise DataError("not a JSON object")
        verify(envelope, fetch)
        if envelope.get("Type") == "SubscriptionConfirmation":
            fetch(str(envelope.get("SubscribeURL", "")))
            return jsonify(results=[], confirmed=True)
        if envelope.get("Type") != "Notification":
            return jsonify(results=[])
        return run(ses_report(json_body(str(envelope.get("Message", "")))))
    except (DataError, ValueError) as exc:
        return Response(f"refused: {exc}", status=400, mimetype="text/plain")


def json_body(text: str) -> Any:
    """The JSON value in ``text``, or None when it is not JSON (or nested too deep)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _text(payload: Mapping[str, Any], key: str, limit: int = 500) -> str:
    """``payload[key]`` when it is a string, as text a database takes (no NUL, no lone
    surrogate), at most ``limit`` characters; otherwise ""."""
    value = payload.get(key)
    if not isinstance(value, str):
        return ""
    return _CONTROL.sub("", value[: limit * 2].encode("utf-8", "replace").decode())[:limit]


def json_report(payload: Mapping[str, Any]) -> Report:
    """The generic JSON payload as a Report."""
    kind = _text(payload, "type")
    if kind not in ("bounce", "complaint"):
        raise DataError('"type" must be "bounce" or "complaint"')
    address = _text(payload, "recipient", 320).strip().lower()
    # without a provider id, a hash of the payload tells repeats apart; the payload itself
    # names the recipient and is never stored
    reference = (
        _text(payload, "id", 200)
        or "json:sha256:"
        + hashlib.sha256(
            json.dumps(payload, sort_keys=True, default=str).encode("utf-8", "replace")
        ).hexdigest()
    )
    message_id = _text(payload, "message_id", 255)
    envelope = _text(payload, "envelope", 320)
    recipient = Recipient(
        address,
        _text(payload, "action") or ("complained" if kind == "complaint" else "failed"),
        _text(payload, "status", 20),
        _text(payload, "diagnostic"),
    )
    return Report(
        "complaint" if kind == "complaint" else "dsn",
        reference,
        recipients=(recipient,) if address or kind == "bounce" else (),
        message_ids=(message_id,) if message_id else (),
        envelope=(envelope,) if envelope else (),
        feedback_type=_text(payload, "feedback_type", 40) or "abuse",
    )


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _array(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def ses_report(notification: Any) -> Report:
    """An SES Bounce or Complaint notification as a Report."""
    if not isinstance(notification, dict):
        raise DataError("the SES notification is not a JSON object")
    kind = notification.get("notificationType") or notification.get("eventType")
    mail = notification.get("mail") or {}
    common = mail.get("commonHeaders") or {} if isinstance(mail, dict) else {}
    message_id = common.get("messageId") if isinstance(common, dict) else None
    ids = (message_id,) if isinstance(message_id, str) else ()
    source = mail.get("source") if isinstance(mail, dict) else None
    envelope = (source,) if isinstance(source, str) else ()
    if kind == "Bounce":
        bounce = _object(notification.get("bounce"))
        transient = bounce.get("bounceType") != "Permanent"
        recipients = tuple(
            Recipient(
                str(r.get("emailAddress", "")).lower(),
                str(r.get("action") or ("delayed" if transient else "failed")),
                str(r.get("status") or ("4.0.0" if transient else "5.1.1"))[:20],
                str(r.get("diagnosticCode", ""))[:500],
            )
            for r in _array(bounce.get("bouncedRecipients"))
            if isinstance(r, dict)
        )
        reference = "ses:" + str(bounce.get("feedbackId", ""))[:200]
        return Report("dsn", reference, recipients=recipients, message_ids=ids, envelope=envelope)
    if kind == "Complaint":
        complaint = _object(notification.get("complaint"))
        recipients = tuple(
            Recipient(str(r.get("emailAddress", "")).lower(), "complained", "")
            for r in _array(complaint.get("complainedRecipients"))
            if isinstance(r, dict)
        )[:1]
        return Report(
            "complaint",
            "ses:" + str(complaint.get("feedbackId", ""))[:200],
            recipients=recipients,
            message_ids=ids,
            envelope=envelope,
            feedback_type=str(complaint.get("complaintFeedbackType") or "abuse")[:40],
        )
    return Report("unknown", "ses", why=f"SES notification type {kind!r} is not handled")
