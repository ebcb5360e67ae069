"""Erasure is complete: a reader signs up, confirms, gets a digest, changes topics, bounces
in every form we read (DSNs of several MTAs, the JSON webhook with and without an id, SES),
complains, is exported and erased; afterwards no column of any table, no file of the
outbox and no log line holds their address (either letter case), name or tokens. Only a
salted hash stays, on the suppression list."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import logging
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from sqlalchemy import Engine, Text, cast, select
from sqlalchemy.orm import Session, sessionmaker

from digest.bounces.webhook import make_blueprint
from digest.cli.main import cli
from digest.config import STARTER_CONFIG, Settings, load_settings
from digest.edition.run import run_edition
from digest.mail.transports.base import Envelope
from digest.mail.transports.file import FileTransport
from digest.store.db import Base, session_factory, transaction
from digest.web import create_app
from subscribers import service, suppression
from subscribers.models import Subscriber, Suppression
from tests.conftest import NOW, add_categories, add_summary
from tests.test_bounces_process import sample
from tests.test_bounces_webhook import keypair, ses_notification, sign  # noqa: F401 (fixture)

ADDRESS = "Ann.Quigley@Reader.example"
NAME = "Ann Quigley-Nakamura"
HOOK_SECRET = "webhook-secret-0123456789abcdef"
VERP_SECRET = "0123456789abcdef0123456789abcdef"
DAY = dt.timedelta(days=1)


class RecordingOutbox(FileTransport):
    """The file outbox, also keeping each envelope (the VERP sender is not in the file)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.envelopes: list[Envelope] = []

    def send(self, envelope: Envelope, message: bytes) -> str:
        self.envelopes.append(envelope)
        return super().send(envelope, message)


@pytest.fixture
def config(tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [n for n in __import__("os").environ if n.startswith("DIGEST_")]:
        monkeypatch.delenv(name)
    env = {
        "DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "BOUNCE_ADDRESS": "bounces@example.org",
        "VERP_SECRET": VERP_SECRET,
        "BOUNCE_WEBHOOK_SECRET": HOOK_SECRET,
        "TRANSPORT": "file",
        "OUTBOX_DIR": str(tmp_path / "outbox"),
    }
    for key, value in env.items():
        monkeypatch.setenv(f"DIGEST_{key}", value)
    path = tmp_path / "digest.toml"
    path.write_text(STARTER_CONFIG, encoding="utf-8")
    return path


def digest(config: Path, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["--config", str(config), *args])
    assert result.exit_code == 0, result.output
    return result


def sign_up(settings: Settings, engine: Engine) -> str:
    """Sign up on the web form and confirm with the emailed link; returns the
    confirmation token."""
    client = create_app(settings, engine, now=lambda: NOW).test_client(use_cookies=False)
    form = client.get("/subscribe").get_data(as_text=True)
    stamp = re.search(r'name="stamp" value="([^"]+)"', form)
    assert stamp is not None
    data = {"email": ADDRESS, "name": NAME, "categories": ["neurology"], "stamp": stamp[1]}
    assert b"Check your inbox" in client.post("/subscribe", data=data).data
    (mail,) = (settings.outbox_dir / "confirmations").glob("*.eml")
    text = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
    body = text.get_body(("plain",))
    assert body is not None
    link = re.search(r"/confirm/([A-Za-z0-9_-]{43})", body.get_content())
    assert link is not None
    assert b"You are subscribed" in client.post(f"/confirm/{link[1]}").data
    return link[1]


def webhooks(factory: sessionmaker[Session], keys: tuple[Path, bytes], message_id: str) -> None:
    """Every webhook form: JSON with and without an id, a complaint naming only the
    recipient, one that matches nobody but names the reader, and SES (signed)."""
    app = Flask(__name__)
    app.register_blueprint(
        make_blueprint(factory, secret=HOOK_SECRET, verp_secret=None, fetch=lambda _: keys[1])
    )
    client = app.test_client()
    lower = ADDRESS.lower()
    payloads = [
        {"type": "bounce", "recipient": lower, "status": "5.1.1",
         "diagnostic": f"550 5.1.1 <{ADDRESS}>: user unknown"},
        {"type": "bounce", "recipient": ADDRESS, "status": "4.2.2", "action": "delayed",
         "diagnostic": f"452 4.2.2 {lower} mailbox full", "id": "evt-1",
         "message_id": message_id},
        {"type": "complaint", "recipient": lower, "id": "evt-2"},
        {"type": "bounce", "recipient": "stranger@nowhere.example", "status": "5.1.1",
         "diagnostic": f"550 5.1.1 forwarded from {ADDRESS} ({NAME}): no such user"},
        {"type": "complaint", "message_id": "<unknown@elsewhere.example>",
         "diagnostic": f"complaint about {lower}"},
    ]  # fmt: skip
    counted = []
    for payload in payloads:
        reply = client.post("/bounces/json", json=payload, headers={"X-Digest-Secret": HOOK_SECRET})
        assert reply.status_code == 200, reply.data
        counted += [result["counted"] for result in reply.get_json()["results"]]
    assert counted == ["hard", "soft", "complaint", "unmatched", "unmatched"]
    for kind in ("bounce", "complaint"):
        body = json.loads(ses_notification(kind)["Message"])
        text = json.dumps(body).replace("jo@reader.example", ADDRESS)
        signed = sign({**ses_notification(kind), "Message": text}, keys[0])
        assert client.post("/bounces/ses", data=json.dumps(signed)).status_code == 200


def leftovers(engine: Engine, outbox: Path, needles: list[str]) -> list[str]:
    """Where any needle (case-insensitive) is still found: table.column, or a file."""
    wanted = [n.lower() for n in needles]
    found = []
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for column in table.columns:
                for (value,) in conn.execute(select(cast(column, Text))):
                    if value and any(n in value.lower() for n in wanted):
                        found.append(f"{table.name}.{column.name}: {value[:120]}")
    for path in sorted(p for p in outbox.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        texts = [raw.decode("utf-8", "replace")]
        if path.suffix == ".eml":
            message = email.message_from_bytes(raw, policy=email.policy.default)
            texts += [str(part.get_payload(decode=True) or b"", "utf-8") for part in message.walk()]
            texts += [str(message["To"])]
        if any(n in t.lower() for t in texts for n in wanted):
            found.append(str(path.relative_to(outbox)))
    return found


def test_erase_leaves_only_a_salted_hash(
    config: Path, engine: Engine, keypair: tuple[Path, bytes],  # noqa: F811
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    settings = load_settings(config)
    factory = session_factory(engine)
    add_categories(factory, "Neurology", "Rehabilitation")
    add_summary(factory, "Nerve transfers for hand function", ["neurology"], NOW - DAY)
    confirmation_token = sign_up(settings, engine)

    outbox = RecordingOutbox(settings.outbox_dir)
    report = run_edition(settings, outbox, now=NOW + DAY, engine=engine)
    assert report.sent == 1
    (envelope,) = outbox.envelopes
    (sent_file,) = (settings.outbox_dir / "2026-W48").glob("*.eml")
    message_id = str(email.message_from_bytes(sent_file.read_bytes())["Message-ID"])
    with transaction(factory) as session:
        reader = session.scalars(select(Subscriber)).one()
        token = reader.token
        service.set_categories(session, reader, ["neurology", "rehabilitation"], now=NOW + DAY)

    sent = {ADDRESS: (envelope.sender, message_id), ADDRESS.lower(): (envelope.sender, message_id)}
    said = ""
    for number, name in enumerate(
        ["postfix_hard.eml", "exchange_hard.eml", "gmail_hard.eml", "qmail_plain.eml",
         "exim_soft.eml", "policy_blocklist.eml", "arf_complaint.eml", "out_of_office.eml",
         "vacation_plain.eml", "malformed_report.eml"]
    ):  # fmt: skip
        rcpt = ADDRESS if number % 2 else ADDRESS.lower()
        said += digest(config, "bounces", "process", str(sample(tmp_path, name, sent, rcpt))).output
    assert "hard bounce 5.1.1 for" in said and "matched by VERP" in said
    assert "matched by Message-ID" in said and "suppressed (complained)" in said
    webhooks(factory, keypair, message_id)
    assert "complained" in digest(config, "subscribers", "show", ADDRESS).output
    exported = digest(config, "subscribers", "export", "--email", ADDRESS).output
    assert NAME in exported

    needles = [ADDRESS, ADDRESS.lower(), NAME, token, confirmation_token]
    assert leftovers(engine, settings.outbox_dir, needles)  # the search finds them before
    erased = digest(config, "subscribers", "erase", ADDRESS, "--yes")
    assert "deleted from the outbox" in erased.output

    assert leftovers(engine, settings.outbox_dir, needles) == []
    logged = [record.getMessage() for record in caplog.records]
    assert [line for line in logged if any(n.lower() in line.lower() for n in needles)] == []
    with factory() as session:
        salt = suppression.email_salt(session)
        listed = session.scalars(select(Suppression)).one()
        assert listed.email_hash == suppression.email_hash(salt, ADDRESS)
    unmatched = digest(config, "bounces", "unmatched", "--format", "csv").output
    assert "[address]" in unmatched and "stranger@" not in unmatched
