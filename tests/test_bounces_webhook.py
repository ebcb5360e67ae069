"""The webhook blueprint: generic JSON (with its secret) and Amazon SES via SNS, with a
signature made by a locally generated key and certificate (openssl) and an injected fetcher."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digest.bounces.sns import canonical
from digest.bounces.webhook import make_blueprint
from digest.store.models import Delivery
from subscribers.models import Subscriber
from tests.conftest import add_categories, add_reader

CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem"
SECRET = "s3cret-webhook-token-0123456789"


@pytest.fixture(scope="module")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    folder = tmp_path_factory.mktemp("sns")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=sns.amazonaws.com"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return key, cert.read_bytes()


def sign(message: dict[str, str], key: Path, version: str = "2") -> dict[str, str]:
    digest = "-sha256" if version == "2" else "-sha1"
    signature = subprocess.run(
        ["openssl", "dgst", digest, "-sign", str(key)],
        input=canonical(message),
        check=True,
        capture_output=True,
    ).stdout
    return {
        **message,
        "SignatureVersion": version,
        "Signature": base64.b64encode(signature).decode(),
        "SigningCertURL": CERT_URL,
    }


@pytest.fixture
def client(factory: sessionmaker[Session], keypair: tuple[Path, bytes]):  # type: ignore[no-untyped-def]
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return keypair[1]

    app = Flask(__name__)
    app.register_blueprint(make_blueprint(factory, secret=SECRET, verp_secret=None, fetch=fetch))
    add_categories(factory, "Neurology")
    add_reader(factory, "jo@reader.example", ["neurology"])
    test_client = app.test_client()
    test_client.fetched = fetched  # type: ignore[attr-defined]
    return test_client


def status(factory: sessionmaker[Session]) -> str:
    with factory() as session:
        return session.scalars(select(Subscriber.status)).one()


def ses_notification(kind: str) -> dict[str, str]:
    body = (
        {
            "notificationType": "Bounce",
            "bounce": {
                "bounceType": "Permanent",
                "feedbackId": "0100018c-bounce",
                "bouncedRecipients": [
                    {"emailAddress": "jo@reader.example", "status": "5.1.1", "action": "failed"}
                ],
            },
        }
        if kind == "bounce"
        else {
            "notificationType": "Complaint",
            "complaint": {
                "feedbackId": "0100018c-complaint",
                "complainedRecipients": [{"emailAddress": "jo@reader.example"}],
            },
        }
    )
    body["mail"] = {"source": "digest@example.org", "commonHeaders": {"messageId": "<x@y>"}}
    return {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ses-bounces",
        "Message": json.dumps(body),
        "Timestamp": "2026-11-23T08:01:00.000Z",
    }


def test_generic_json_needs_the_secret_and_reports_unmatched(client, factory) -> None:  # type: ignore[no-untyped-def]
    payload = {"type": "bounce", "recipient": "jo@reader.example", "status": "5.1.1"}
    assert client.post("/bounces/json", json=payload).status_code == 403
    assert client.post("/bounces/json?secret=wrong", json=payload).status_code == 403
    reply = client.post("/bounces/json", json=payload, headers={"X-Digest-Secret": SECRET})
    assert reply.status_code == 200
    (result,) = reply.get_json()["results"]
    # nothing was sent to jo yet: no delivery to tie it to, so nothing is done
    assert result["counted"] == "unmatched"
    assert status(factory) == "active"
    bad = client.post("/bounces/json", json={"type": "x"}, headers={"X-Digest-Secret": SECRET})
    assert bad.status_code == 400


def test_ses_signed_notifications(client, factory, keypair) -> None:  # type: ignore[no-untyped-def]
    key = keypair[0]
    signed = sign(ses_notification("bounce"), key)
    reply = client.post("/bounces/ses", data=json.dumps(signed))
    assert reply.status_code == 200, reply.data
    assert reply.get_json()["results"][0]["counted"] == "unmatched"
    assert client.fetched == [CERT_URL]
    tampered = {**signed, "Message": signed["Message"].replace("5.1.1", "5.1.2")}
    assert client.post("/bounces/ses", data=json.dumps(tampered)).status_code == 400
    elsewhere = {**signed, "SigningCertURL": "https://evil.example/cert.pem"}
    refused = client.post("/bounces/ses", data=json.dumps(elsewhere))
    assert refused.status_code == 400 and b"amazonaws.com" in refused.data
    sha1 = sign(ses_notification("complaint"), key, version="1")
    assert client.post("/bounces/ses", data=json.dumps(sha1)).status_code == 200
    confirm = sign(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": "165545c9",
            "Token": "2336412f37",
            "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ses-bounces",
            "Message": "You have chosen to subscribe",
            "SubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription",
            "Timestamp": "2026-11-23T08:00:00.000Z",
        },
        key,
    )
    assert client.post("/bounces/ses", data=json.dumps(confirm)).get_json()["confirmed"]
    assert client.fetched[-1].endswith("ConfirmSubscription")
    with factory() as session:
        assert session.scalar(select(Delivery.id)) is None


def test_a_complaint_finds_a_reader_never_sent_a_digest(client, factory) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt

    from digest.store.db import transaction
    from subscribers import service

    headers = {"X-Digest-Secret": SECRET}
    complaint = {"type": "complaint", "recipient": "JO@reader.example", "id": "evt-2"}
    (result,) = client.post("/bounces/json", json=complaint, headers=headers).get_json()["results"]
    assert result["counted"] == "complaint"
    assert "no delivery, matched by recipient address" in result["line"]
    assert status(factory) == "complained"
    # a complaint about a confirmation email names it by its Message-ID alone
    now = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    with transaction(factory) as session:
        pending = service.add_subscriber(session, "new@reader.example", ["neurology"], now=now)
        service.open_confirmation(session, pending, now=now, message_id="<conf-1@example.org>")
    about = {"type": "complaint", "message_id": "<conf-1@example.org>", "id": "evt-3"}
    (result,) = client.post("/bounces/json", json=about, headers=headers).get_json()["results"]
    assert result["counted"] == "complaint" and "matched by Message-ID" in result["line"]
    with factory() as session:
        found = session.scalar(
            select(Subscriber.status).where(Subscriber.email == "new@reader.example")
        )
    assert found == "complained"
