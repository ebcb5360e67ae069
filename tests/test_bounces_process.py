"""digest bounces process / resume and digest deliverability, end to end: a real edition
sent through MemoryTransport, hand-written DSNs in the styles of several MTAs, the CLI."""

from __future__ import annotations

import datetime as dt
import email
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from digest.cli.main import cli
from digest.config import STARTER_CONFIG, Settings
from digest.edition.run import run_edition
from digest.mail.transports import MemoryTransport
from digest.store.models import BounceEvent, Delivery, Edition
from subscribers.models import Subscriber, Suppression
from tests.conftest import NOW, add_categories, add_reader, add_summary

DATA = Path(__file__).parent / "data" / "bounces"
SECRET = "0123456789abcdef0123456789abcdef"
DAY = dt.timedelta(days=1)
READERS = ("ann@reader.example", "bob@reader.example", "cy@reader.example", "di@reader.example")


@pytest.fixture
def config(tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [n for n in __import__("os").environ if n.startswith("DIGEST_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DIGEST_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("DIGEST_BOUNCE_ADDRESS", "bounces@example.org")
    monkeypatch.setenv("DIGEST_VERP_SECRET", SECRET)
    path = tmp_path / "digest.toml"
    path.write_text(STARTER_CONFIG, encoding="utf-8")
    return path


@pytest.fixture
def bounce_settings(config: Path) -> Settings:
    from digest.config import load_settings

    return load_settings(config)


def send_week(
    settings: Settings, engine: Engine, factory: sessionmaker[Session], now: dt.datetime
) -> dict[str, tuple[str, str]]:
    """Send the edition of ``now``; returns address -> (envelope sender, Message-ID)."""
    transport = MemoryTransport()
    run_edition(settings, transport, now=now, engine=engine)
    sent = {}
    for envelope, raw in transport.outbox:
        msg = email.message_from_bytes(raw)
        sent[envelope.recipient] = (envelope.sender, str(msg["Message-ID"]))
    return sent


@pytest.fixture
def week(
    bounce_settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> dict[str, tuple[str, str]]:
    add_categories(factory, "Neurology")
    add_summary(factory, "Nerve transfers for hand function", ["neurology"], NOW - DAY)
    for address in READERS:
        add_reader(factory, address, ["neurology"])
    return send_week(bounce_settings, engine, factory, NOW)


def sample(tmp_path: Path, name: str, sent: dict[str, tuple[str, str]], rcpt: str) -> Path:
    verp, message_id = sent.get(rcpt, ("bounces@example.org", "<none@example.org>"))
    text = (DATA / name).read_text(encoding="utf-8")
    text = text.replace("{verp}", verp).replace("{rcpt}", rcpt)
    path = tmp_path / f"{name}.{rcpt}"
    path.write_text(text.replace("{message_id}", message_id), encoding="utf-8")
    return path


def digest(config: Path, *args: str, stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args], input=stdin)


def status_of(factory: sessionmaker[Session], address: str) -> str:
    with factory() as session:
        found = session.scalar(select(Subscriber.status).where(Subscriber.email == address))
        assert found is not None
        return found


def test_verp_is_used_and_a_postfix_hard_bounce_suppresses_the_reader(
    week: dict[str, tuple[str, str]], config: Path, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    assert week["ann@reader.example"][0].startswith("bounces+")
    path = sample(tmp_path, "postfix_hard.eml", week, "ann@reader.example")
    result = digest(config, "bounces", "process", str(path))
    assert result.exit_code == 0, result.output
    assert "hard bounce 5.1.1 for ann@reader.example" in result.output
    assert "matched by VERP" in result.output and "suppressed (bounced)" in result.output
    assert "1 message(s): 1 hard" in result.output
    assert status_of(factory, "ann@reader.example") == "bounced"
    assert status_of(factory, "bob@reader.example") == "active"
    with factory() as session:
        assert session.scalar(select(Suppression.reason)) == "bounced"
        detail = session.scalar(
            select(Delivery.detail)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Subscriber.email == "ann@reader.example")
        )
        assert detail is not None and "then hard bounce 5.1.1" in detail
    again = digest(config, "bounces", "process", str(path))
    assert "already processed" in again.output and "1 duplicate" in again.output


@pytest.mark.parametrize(
    ("name", "how"),
    [
        ("exchange_hard.eml", "matched by Message-ID"),  # Message-ID in rfc822-headers
        ("gmail_hard.eml", "matched by recipient address"),  # 5.0.0 + "550-5.1.1" diagnostic
        ("qmail_plain.eml", "matched by VERP"),  # free text, no report part
    ],
)
def test_hard_bounces_of_other_mtas(
    week: dict[str, tuple[str, str]],
    config: Path,
    factory: sessionmaker[Session],
    tmp_path: Path,
    name: str,
    how: str,
) -> None:
    result = digest(config, "bounces", "process", str(sample(tmp_path, name, week, READERS[1])))
    assert result.exit_code == 0, result.output
    assert f"for {READERS[1]}" in result.output and how in result.output
    assert "1 message(s): 1 hard" in result.output
    assert status_of(factory, READERS[1]) == "bounced"


def test_soft_bounces_suppress_after_three_over_two_editions(
    week: dict[str, tuple[str, str]],
    bounce_settings: Settings,
    config: Path,
    engine: Engine,
    factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    reader = READERS[2]
    first = sample(tmp_path, "exim_soft.eml", week, reader)
    second = tmp_path / "second.eml"
    second.write_text(
        first.read_text().replace("E1tE5Zq-0003Xx-2m@", "E1tE5Zq-second@"), encoding="utf-8"
    )
    out = digest(config, "bounces", "process", str(first)).output
    out += digest(config, "bounces", "process", str(second)).output
    assert "soft bounce 2 of 3 over 1 edition(s)" in out
    assert status_of(factory, reader) == "active"  # three needed, across two editions
    add_summary(factory, "Robotic gait training", ["neurology"], NOW + 6 * DAY)
    next_week = send_week(bounce_settings, engine, factory, NOW + 7 * DAY)
    third = sample(tmp_path, "exim_soft.eml", next_week, reader)
    third.write_text(third.read_text().replace("0003Xx-2m@", "third@"), encoding="utf-8")
    result = digest(config, "bounces", "process", str(third))
    assert "soft bounce 3 of 3 over 2 edition(s): suppressed (bounced)" in result.output
    assert "edition 2026-W49" in result.output
    assert status_of(factory, reader) == "bounced"


def test_policy_block_pauses_the_edition_and_suppresses_nobody(
    week: dict[str, tuple[str, str]],
    bounce_settings: Settings,
    config: Path,
    engine: Engine,
    factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    with factory.begin() as session:  # the edition is still going out
        session.execute(Edition.__table__.update().values(status="open"))
    path = sample(tmp_path, "policy_blocklist.eml", week, READERS[3])
    result = digest(config, "bounces", "process", str(path))
    assert result.exit_code == 0, result.output
    assert "policy block 5.7.1" in result.output
    assert "edition 2026-W48 paused; reader not suppressed" in result.output
    assert "WARNING" in result.output and "digest bounces resume 2026-W48" in result.output
    assert status_of(factory, READERS[3]) == "active"
    send = digest(config, "send", "--edition", "2026-W48")
    assert send.exit_code == 1 and "is paused" in send.output
    resumed = digest(config, "bounces", "resume", "2026-W48")
    assert resumed.exit_code == 0 and "open again" in resumed.output
    with factory() as session:
        assert session.scalar(select(Edition.status)) == "open"
    again = digest(config, "bounces", "resume", "2026-W48")
    assert again.exit_code == 1 and again.output.startswith("Error: edition 2026-W48 is open")


def test_arf_complaint_suppresses_like_an_unsubscribe(
    week: dict[str, tuple[str, str]], config: Path, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    path = sample(tmp_path, "arf_complaint.eml", week, READERS[0])
    result = digest(config, "bounces", "process", str(path))
    assert result.exit_code == 0, result.output
    assert f"complaint for {READERS[0]}" in result.output
    assert "suppressed (complained)" in result.output
    assert status_of(factory, READERS[0]) == "complained"
    report = digest(config, "deliverability", "--edition", "2026-W48")
    assert report.exit_code == 0, report.output
    assert "sent          4" in report.output
    assert "complained    1  25.000%  OVER the 0.30% limit" in report.output
    assert "_dmarc.example.org. IN TXT" in report.output and "v=spf1" in report.output


def test_auto_replies_unknown_and_malformed_messages_are_reported_never_acted_on(
    week: dict[str, tuple[str, str]], config: Path, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    mbox = tmp_path / "bounces.mbox"
    parts = []
    for name in ("out_of_office.eml", "vacation_plain.eml", "unknown_message.eml"):
        text = sample(tmp_path, name, week, READERS[0]).read_bytes()
        parts.append(b"From MAILER-DAEMON Mon Nov 23 08:00:00 2026\n" + text + b"\n")
    parts.append(b"From nobody Mon Nov 23 08:00:00 2026\nthis is not a message at all\n")
    mbox.write_bytes(b"".join(parts))
    result = digest(config, "bounces", "process", str(mbox))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("bounces.mbox#1: auto-reply ignored")
    assert lines[1].startswith("bounces.mbox#2: auto-reply ignored")
    assert "stranger@nowhere.example: hard bounce 5.1.1: matches no delivery" in lines[2]
    assert lines[3].startswith("bounces.mbox#4: malformed:")
    assert "4 message(s): 1 autoreply" not in result.output
    assert "2 autoreply, 1 unmatched, 1 malformed" in result.output
    with factory() as session:
        assert {s for (s,) in session.execute(select(Subscriber.status))} == {"active"}
        events = session.scalars(select(BounceEvent)).all()
        assert [(e.kind, e.delivery_id) for e in events] == [("hard", None)]


def test_maildir_and_stdin_and_bad_sources(
    week: dict[str, tuple[str, str]], config: Path, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    raw = sample(tmp_path, "malformed_report.eml", week, READERS[0]).read_bytes()
    (maildir / "new" / "1763884872.M1P1.host").write_bytes(raw)
    (maildir / "new" / "1763884873.M2P1.host").write_bytes((DATA / "garbage.bin").read_bytes())
    result = digest(config, "bounces", "process", str(maildir))
    assert result.exit_code == 0, result.output
    assert "not processed: a bounce naming no recipient" in result.output
    assert "malformed: not an email message" in result.output
    piped = sample(tmp_path, "postfix_hard.eml", week, READERS[1]).read_bytes()
    result = digest(config, "bounces", "process", "-", stdin=piped)
    assert result.output.startswith(f"stdin: hard bounce 5.1.1 for {READERS[1]}")
    assert status_of(factory, READERS[1]) == "bounced"
    missing = digest(config, "bounces", "process", str(tmp_path / "nope"))
    assert missing.exit_code == 1 and missing.output.startswith("Error: cannot read")
    plain_dir = tmp_path / "plain"
    plain_dir.mkdir()
    not_maildir = digest(config, "bounces", "process", str(plain_dir))
    assert not_maildir.exit_code == 1 and "not a Maildir" in not_maildir.output
    assert digest(config, "bounces", "process").output.startswith("Error: give a SOURCE")


def test_forged_verp_is_not_trusted(
    week: dict[str, tuple[str, str]], config: Path, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    verp, _ = week[READERS[0]]
    forged = verp.split("-")[0] + "-00000000@example.org"
    path = sample(tmp_path, "policy_blocklist.eml", week, "someone@else.example")
    path.write_text(path.read_text().replace("bounces@example.org", forged), encoding="utf-8")
    result = digest(config, "bounces", "process", str(path))
    assert "matches no delivery" in result.output
    with factory() as session:
        assert session.scalar(select(Edition.status)) == "complete"


def test_a_complaint_naming_only_its_recipient_finds_them(
    week: dict[str, tuple[str, str]], config: Path, factory: sessionmaker[Session]
) -> None:
    from flask import Flask

    from digest.bounces.webhook import make_blueprint

    app = Flask(__name__)
    hook = "s3cret-webhook-token-0123456789"
    app.register_blueprint(make_blueprint(factory, secret=hook, verp_secret=None))
    client = app.test_client()
    complaint = {"type": "complaint", "recipient": READERS[2].upper(), "id": "evt-2"}
    reply = client.post("/bounces/json", json=complaint, headers={"X-Digest-Secret": hook})
    (result,) = reply.get_json()["results"]
    assert result["counted"] == "complaint", result
    assert "matched by recipient address" in result["line"]
    assert status_of(factory, READERS[2]) == "complained"
    stranger = {"type": "bounce", "recipient": "nobody@else.example", "status": "5.1.1",
                "diagnostic": "550 5.1.1 <nobody@else.example>: no such user"}  # fmt: skip
    reply = client.post("/bounces/json", json=stranger, headers={"X-Digest-Secret": hook})
    assert reply.get_json()["results"][0]["counted"] == "unmatched"
    with factory() as session:
        references = session.scalars(select(BounceEvent.reference)).all()
    assert "evt-2" in references
    assert next(r for r in references if r.startswith("json:")).startswith("json:sha256:")
    listed = digest(config, "bounces", "unmatched")
    assert listed.exit_code == 0, listed.output
    assert "550 5.1.1 <[address]>: no such user" in listed.output
    assert "nobody@else.example" not in listed.output and READERS[2] not in listed.output


def test_no_unmatched_events(config: Path, factory: sessionmaker[Session]) -> None:
    listed = digest(config, "bounces", "unmatched")
    assert listed.exit_code == 0 and "No unmatched bounces or complaints." in listed.output
    as_json = digest(config, "bounces", "unmatched", "--format", "json")
    assert as_json.output.strip() == "[]"
