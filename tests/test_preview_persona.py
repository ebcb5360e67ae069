"""Persona preview: exactly what one reader gets this week, without touching the ledger."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from digest.cli.main import cli
from digest.config import Settings
from digest.edition.run import run_edition
from digest.mail.transports import MemoryTransport
from digest.preview.reader import PREVIEW_TOKEN, preview_categories, preview_subscriber
from digest.render.renderer import builtin_templates_dir
from digest.store.db import make_engine, session_factory, utcnow
from digest.store.models import Delivery, Variant
from subscribers.models import Subscriber
from tests.conftest import NOW, add_categories, add_reader, add_summary

DAY = dt.timedelta(days=1)


def a_week(factory: sessionmaker[Session], now: dt.datetime) -> None:
    add_categories(factory, "Pharmacology", "Neurology", "Rehabilitation")
    add_summary(factory, "Riluzole after acute injury", ["pharmacology"], now - 1 * DAY)
    add_summary(
        factory, "Minocycline and inflammation", ["pharmacology", "neurology"], now - 2 * DAY
    )
    add_summary(factory, "Nerve transfers for hand function", ["neurology"], now - 3 * DAY)
    add_summary(factory, "Robotic gait training at home", ["rehabilitation"], now - 4 * DAY)
    add_summary(factory, "An old study", ["pharmacology"], now - 40 * DAY)
    add_reader(
        factory,
        "zoe@example.org",
        ["pharmacology", "neurology"],
        name="Zoë Müller",
        joined=now - DAY,
    )
    add_reader(factory, "rehab@example.org", ["rehabilitation"], joined=now - DAY)


def token_of(factory: sessionmaker[Session], address: str) -> str:
    with factory() as session:
        token = session.scalar(select(Subscriber.token).where(Subscriber.email == address))
        assert token is not None
        return token


def normalised(raw: bytes, token: str) -> bytes:
    """The message with per-recipient values (Date, Message-ID, token, boundary) blanked."""
    raw = raw.replace(token.encode(), b"T" * len(token))
    raw = re.sub(rb"(?m)^Date: [^\r\n]*", b"Date: -", raw)
    raw = re.sub(rb"(?m)^Message-ID: [^\r\n]*", b"Message-ID: -", raw)
    raw = re.sub(rb"(?m)^To: [^\r\n]*(\r\n[ \t][^\r\n]*)*", b"To: -", raw)
    return re.sub(rb"=_digest_[0-9a-f]+", b"=_digest_B", raw)


def deliveries(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(Delivery)) or 0


def test_persona_preview_is_the_message_send_hands_over(
    db_settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    a_week(factory, NOW)
    before = preview_subscriber(db_settings, "ZOE@example.org", now=NOW, engine=engine)
    assert deliveries(factory) == 0  # a preview touches no ledger row
    assert before.subject == "3 new summaries in Neurology and Pharmacology"
    assert before.since == NOW - DAY - dt.timedelta(days=db_settings.lookback_days)

    memory = MemoryTransport()
    run_edition(db_settings, memory, now=NOW, engine=engine)
    sent = {envelope.recipient: raw for envelope, raw in memory.outbox}["zoe@example.org"]
    after = preview_subscriber(db_settings, "zoe@example.org", now=NOW + DAY, engine=engine)
    assert after.reason.startswith("ledger row of edition 2026-W48: sent at")

    real = token_of(factory, "zoe@example.org")
    expected = normalised(sent, real)
    assert normalised(before.eml, PREVIEW_TOKEN) == expected
    assert normalised(after.eml, PREVIEW_TOKEN) == expected
    assert real.encode() not in before.eml  # a preview never carries a working token
    msg = email.message_from_bytes(before.eml, policy=email.policy.default)
    assert msg["To"].addresses[0].display_name == "Zoë Müller"


def test_a_week_planned_before_web_ids_changed_shape_is_previewed_with_its_own(
    db_settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    """A variant keeps the web id it was planned with (earlier versions made 32 characters
    of base64url); the preview links to that page, as the send does, not to a new id."""
    a_week(factory, NOW)
    run_edition(db_settings, MemoryTransport(), now=NOW, engine=engine)
    earlier = "Ab3-kQ_9xY2mN7pR4sT6vW8zC1dF5gH0"
    with factory.begin() as session:
        (zoes,) = [v for v in session.scalars(select(Variant)) if len(v.category_ids) == 2]
        zoes.web_id = earlier
    preview = preview_subscriber(db_settings, "zoe@example.org", now=NOW + DAY, engine=engine)
    assert f"/v/{earlier}" in preview.text and f"/v/{earlier}" in preview.html
    assert not re.search(r"/v/[a-z2-7]{39}\b", preview.text)


def test_persona_says_why_a_reader_gets_nothing(
    db_settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    a_week(factory, NOW)
    add_reader(factory, "late@example.org", ["pharmacology"], joined=NOW + DAY)
    add_reader(factory, "new@example.org", ["pharmacology"], confirmed=False)
    with factory.begin() as session:
        rehab = session.scalar(select(Subscriber).where(Subscriber.email == "rehab@example.org"))
        assert rehab is not None
        rehab.paused_until = NOW + 10 * DAY
    reasons = {
        address: preview_subscriber(db_settings, address, now=NOW, engine=engine).reason
        for address in ("late@example.org", "new@example.org", "rehab@example.org")
    }
    assert reasons == {
        "late@example.org": "became active after this edition's cutoff: from next week on",
        "new@example.org": "pending: only active subscribers get the digest",
        "rehab@example.org": f"paused until {NOW + 10 * DAY:%Y-%m-%d}",
    }
    nothing = preview_categories(db_settings, ["rehabilitation"], now=NOW + 30 * DAY, engine=engine)
    assert nothing.summaries == 0 and "no email this week" in nothing.reason


# ---------------------------------------------------------------- the command line


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("DIGEST_")]:
        monkeypatch.delenv(name)
    assert run("init").exit_code == 0
    a_week(session_factory(make_engine(f"sqlite:///{tmp_path / 'digest.sqlite3'}")), utcnow())
    return tmp_path


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_preview_subscriber_writes_html_text_and_eml_and_opens_the_browser(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = folder / "opened.txt"
    monkeypatch.setenv("BROWSER", f"sh -c 'echo %s > {opened}'")
    result = run("preview", "--subscriber", "zoe@example.org", "--out", "look", "--open")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "3 new summaries in Neurology and Pharmacology"
    assert lines[1].startswith("Wrote look/zoe@example.org.html, .txt and .eml (3 summaries")
    look = folder / "look"
    assert sorted(p.name for p in look.iterdir()) == [
        "zoe@example.org.eml",
        "zoe@example.org.html",
        "zoe@example.org.txt",
    ]
    msg = email.message_from_bytes(
        (look / "zoe@example.org.eml").read_bytes(), policy=email.policy.default
    )
    assert msg["To"].addresses[0].addr_spec == "zoe@example.org"
    html = msg.get_body(("html",)).get_content().replace("\r\n", "\n")
    assert html == (look / "zoe@example.org.html").read_text()
    assert "Riluzole after acute injury" in (look / "zoe@example.org.txt").read_text()
    for _ in range(50):  # the browser command runs in the background
        if opened.exists() and opened.read_text().strip():
            break
        time.sleep(0.05)
    assert opened.read_text().strip() == (look / "zoe@example.org.html").resolve().as_uri()
    factory = session_factory(make_engine(f"sqlite:///{folder / 'digest.sqlite3'}"))
    assert deliveries(factory) == 0


def test_preview_needs_exactly_one_reader_and_a_loopback_server(folder: Path) -> None:
    assert run("preview").output.strip() == (
        "Error: name a reader: --subscriber EMAIL or --categories A,B"
    )
    unknown = run("preview", "--subscriber", "nobody@example.org")
    assert unknown.exit_code == 1
    assert unknown.output.strip() == "Error: no subscriber has the address 'nobody@example.org'"
    exposed = run("preview", "--serve", "--host", "0.0.0.0")  # noqa: S104 (refused)
    assert exposed.exit_code == 1
    assert exposed.output.startswith(
        "Error: the admin console listens on '0.0.0.0' only with a password"
    )
    quiet = run("preview", "--subscriber", "rehab@example.org", "--out", "x")
    assert quiet.exit_code == 0
    assert quiet.output.splitlines()[0] == "1 new summary in Rehabilitation"


def test_templates_copy_starts_an_own_copy_and_refuses_to_overwrite(folder: Path) -> None:
    result = run("templates", "copy", "mine")
    assert result.exit_code == 0, result.output
    builtin = sorted(p.name for p in (builtin_templates_dir() / "email").iterdir())
    assert sorted(p.name for p in (folder / "mine" / "email").iterdir()) == builtin
    assert "digest.mjml.j2" in builtin
    own = folder / "mine" / "email" / "subject.txt.j2"
    own.write_text("Your research week: {{ digest.total }} new\n")

    again = run("templates", "copy", "mine")
    assert again.exit_code == 1
    assert re.fullmatch(
        r"Error: mine/email/\S+\.j2 and \d+ more files already exist \(use --force to overwrite\)",
        again.output.strip(),
    )
    assert own.read_text().startswith("Your research week")

    with (folder / "digest.toml").open("a") as config:
        config.write('templates_dir = "mine"\n')
    own_preview = run("preview", "--subscriber", "zoe@example.org")
    assert own_preview.output.splitlines()[0] == "Your research week: 3 new"
    assert run("templates", "copy", "mine", "--force").exit_code == 0
    assert run("preview", "--subscriber", "zoe@example.org").output.startswith("3 new summaries")
