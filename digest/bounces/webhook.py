"""Webhooks for bounces and complaints, as a Flask blueprint (mount it in any Flask app):

``POST /bounces/json`` (secret in ``X-Digest-Secret`` or ``?secret=``)::

    {"type": "bounce", "recipient": "jo@example.com", "status": "5.1.1",
     "action": "failed", "diagnostic": "550 5.1.1 user unknown",
     "message_id": "<digest.2026-W48...@example.org>", "envelope": "bounces+12-...@...",
     "id": "provider-event-id"}

(``type`` "complaint" for a complaint.) ``POST /bounces/ses``: Amazon SES notifications
delivered by SNS, accepted only with a valid SNS signature; a SubscriptionConfirmation is
confirmed by fetching its (amazonaws.com) SubscribeURL.
"""

from __future__ import annotations

import hmac
import json
import urllib.request
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, abort, jsonify, request
from sqlalchemy.orm import Session, sessionmaker

from digest.bounces.parse import Recipient, Report
from digest.bounces.process import handle
from digest.bounces.sns import Fetch, check_aws_url, verify
from digest.errors import DataError
from digest.store.db import transaction, utcnow


def fetch_url(url: str) -> bytes:
    with urllib.request.urlopen(check_aws_url(url), timeout=10) as reply:  # noqa: S310
        data: bytes = reply.read(100_000)
        return data


def make_blueprint(
    factory: sessionmaker[Session],
    *,
    secret: str,
    verp_secret: bytes | None,
    fetch: Fetch = fetch_url,
) -> Blueprint:
    if len(secret) < 16:
        raise DataError("the webhook secret must be at least 16 characters")
    blueprint = Blueprint("bounces", __name__, url_prefix="/bounces")

    def run(report: Report) -> Response:
        with transaction(factory) as session:
            outcomes = handle(session, report, verp_secret, now=utcnow())
        return jsonify(
            results=[{"counted": o.counted, "line": o.line, "warning": o.warning} for o in outcomes]
        )

    @blueprint.post("/json")
    def generic() -> Response:
        given = request.headers.get("X-Digest-Secret") or request.args.get("secret", "")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            abort(403)
        payload = request.get_json(silent=True)
        if not isinstance(payload, dict):
            abort(400)
        try:
            return run(json_report(payload))
        except DataError as exc:
            return Response(str(exc), status=400)

    @blueprint.post("/ses")
    def ses() -> Response:
        try:
            envelope = json.loads(request.get_data(as_text=True))
            if not isinstance(envelope, dict):
                raise DataError("not a JSON object")
            verify(envelope, fetch)
            if envelope.get("Type") == "SubscriptionConfirmation":
                fetch(str(envelope.get("SubscribeURL", "")))
                return jsonify(results=[], confirmed=True)
            if envelope.get("Type") != "Notification":
                return jsonify(results=[])
            return run(ses_report(json.loads(str(envelope.get("Message", "")))))
        except (DataError, ValueError) as exc:
            return Response(f"refused: {exc}", status=400)

    return blueprint


def _text(payload: Mapping[str, Any], key: str, limit: int = 500) -> str:
    value = payload.get(key)
    return value[:limit] if isinstance(value, str) else ""


def json_report(payload: Mapping[str, Any]) -> Report:
    """The generic JSON payload as a Report."""
    kind = _text(payload, "type")
    if kind not in ("bounce", "complaint"):
        raise DataError('"type" must be "bounce" or "complaint"')
    address = _text(payload, "recipient", 320).strip().lower()
    reference = _text(payload, "id", 200) or "json:" + json.dumps(payload, sort_keys=True)[:180]
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
        bounce = notification.get("bounce") or {}
        transient = bounce.get("bounceType") != "Permanent"
        recipients = tuple(
            Recipient(
                str(r.get("emailAddress", "")).lower(),
                str(r.get("action") or ("delayed" if transient else "failed")),
                str(r.get("status") or ("4.0.0" if transient else "5.1.1"))[:20],
                str(r.get("diagnosticCode", ""))[:500],
            )
            for r in bounce.get("bouncedRecipients") or []
            if isinstance(r, dict)
        )
        reference = "ses:" + str(bounce.get("feedbackId", ""))[:200]
        return Report("dsn", reference, recipients=recipients, message_ids=ids, envelope=envelope)
    if kind == "Complaint":
        complaint = notification.get("complaint") or {}
        recipients = tuple(
            Recipient(str(r.get("emailAddress", "")).lower(), "complained", "")
            for r in complaint.get("complainedRecipients") or []
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
