"""``digest subscribers`` as an admin uses it: what the commands print, what they store,
and the confirmation email as a real SMTP server on loopback receives it."""

from __future__ import annotations

import csv
import email
import email.policy
import hashlib
import io
import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from digest.cli.main import cli
from digest.config import STARTER_CONFIG
from subscribers import service
from subscribers.models import Confirmation, Subscriber
from tests.conftest import SmtpServer, add_categories, add_reader, free_port

TOKEN_IN_LINK = re.compile(r"https://example\.org/digest/confirm/([A-Za-z0-9_-]{43})")


def database_url(engine: Engine) -> str:
    """The test database as a URL (on PostgreSQL, with the test's own schema)."""
    url = engine.url
    if url.get_backend_name() == "postgresql":
        with engine.connect() as conn:
            schema = conn.execute(text("select current_schema()")).scalar_one()
        url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture
def admin(
    tmp_path: Path, engine: Engine, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A folder with digest.toml on the test database and three categories."""
    for name in [
        n for n in os.environ if n.startswith("DIGEST_") and n != "DIGEST_TEST_DATABASE_URL"
    ]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digest.toml").write_text(STARTER_CONFIG, encoding="utf-8")
    monkeypatch.setenv("DIGEST_DATABASE_URL", database_url(engine))
    add_categories(factory, "Pharmacology", "Neurology", "Rehabilitation")
    return tmp_path


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["subscribers", *args], input=input, catch_exceptions=False)


def test_add_sends_a_confirmation_email_the_smtp_server_receives(
    admin: Path, factory, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_TRANSPORT", "smtp")
    monkeypatch.setenv("DIGEST_SMTP_URL", smtp_server.url)
    result = run(
        "add",
        "Zoe@Example.org",
        "-c",
        "neurology",
        "-c",
        "Pharmacology",
        "--name",
        "Zoë Müller",
        "--timezone",
        "Europe/Paris",
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "Added Zoe@example.org (pending) to Neurology, Pharmacology.",
        "Sent 1 confirmation email via smtp; each stays pending until its link is used "
        "(valid 7 days).",
    ]
    (received,) = smtp_server.handler.messages
    assert received.recipients == ["Zoe@example.org"]
    assert received.sender == "digest@example.org"
    raw = received.data
    assert all(byte < 128 for byte in raw) and b"=?utf-8?" in raw  # the name, RFC 2047-encoded
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["To"].addresses[0].display_name == "Zoë Müller"
    assert msg["From"] == '"Spinal Cord Research Help (sample)" <digest@example.org>'  # one brand
    assert msg["Subject"].startswith("Please confirm your subscription")
    assert msg["Date"].endswith("+0000") and msg["Auto-Submitted"] == "auto-generated"
    assert re.fullmatch(r"<confirm\.[0-9a-f]{20}@example\.org>", msg["Message-ID"])
    assert msg["List-Unsubscribe"] is None
    plain, html = msg.iter_parts()
    assert (plain.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert plain["Content-Transfer-Encoding"] == "quoted-printable"
    body, page = plain.get_content(), html.get_content()
    token = TOKEN_IN_LINK.search(body)[1]  # type: ignore[index]
    assert f"https://example.org/digest/confirm/{token}" in page
    assert page.lower().startswith("<!doctype html>") and '<html lang="en"' in page
    for part in (" ".join(body.split()), " ".join(re.sub(r"<[^>]+>", " ", page).split())):
        assert "in Neurology and Pharmacology" in part
        assert "If this wasn't you, ignore this email" in part.replace("&#x27;", "'").replace(
            "&#39;", "'"
        )
        assert "Example Foundation, 1 Example Street" in part

    with factory() as session:  # only the hash of the token is kept
        zoe = service.find_by_email(session, "zoe@example.org")
        assert zoe is not None and zoe.timezone == "Europe/Paris"
        row = session.get(Confirmation, zoe.id)
        assert row is not None and row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert row.message_id == msg["Message-ID"]
    shown = run("show", "zoe@example.org").output
    assert "status:      pending: confirmation email sent" in shown
    assert token not in shown and zoe.token not in shown
    with factory.begin() as session:
        service.confirm_with_token(session, token, now=row.created_at)
    shown = run("show", "ZOE@example.org").output
    assert "status:      active since" in shown
    assert re.search(r"admin  neurology, pharmacology  text 2026-11  confirmed .* by link", shown)


def test_import_lists_bad_rows_then_imports_and_invites_the_rest(admin: Path, factory) -> None:
    add_reader(factory, "known@example.org", ["neurology"])
    (admin / "people.csv").write_text(
        "email;name;categories\n"
        'ada@example.org;Ada;"pharmacology;Neurology"\n'
        "bob@;Bob;neurology\n"
        "\n"
        "KNOWN@example.org;Kim;rehabilitation\n"
        "ada@EXAMPLE.org;;Rehabilitation\n"
        "cid@example.org;Cid;cardiology\n",
        encoding="utf-8",
    )
    refused = run("import", "people.csv")
    assert refused.exit_code == 1
    assert refused.output.splitlines() == [
        "people.csv: 5 rows: 1 new (1 pending); 1 merged into known subscribers; "
        "1 repeated in the file, merged; 2 invalid.",
        "line 3: 'bob@' is not a valid email address: There must be something after the @-sign.",
        "line 7: unknown categories 'cardiology'",
        "Unknown categories: 'cardiology' (1 row) (see `digest categories list`).",
        "Error: 2 invalid rows: nothing was imported (fix them, or use --skip-invalid to "
        "import the other rows)",
    ]
    with factory() as session:
        assert session.scalars(select(Subscriber.email)).all() == ["known@example.org"]

    assert (
        "Dry run: nothing was written or sent." in run("import", "people.csv", "--dry-run").output
    )
    dry = run("import", "people.csv", "--dry-run")  # `import --dry-run && import` stops here
    assert dry.exit_code == 1
    assert dry.output.splitlines()[-2:] == [
        "Dry run: nothing was written or sent.",
        "Error: 2 invalid rows: nothing would be imported (fix them, or use --skip-invalid to "
        "import the other rows)",
    ]
    assert run("import", "people.csv", "--dry-run", "--skip-invalid").exit_code == 0
    done = run("import", "people.csv", "--skip-invalid")
    assert done.exit_code == 0, done.output
    assert "Sent 1 confirmation email via file into" in done.output
    (eml,) = (admin / "outbox" / "confirmations").glob("*.eml")
    assert eml.name == "ada@example.org.eml"
    listed = run("list", "--category", "rehabilitation").output
    assert "ada@example.org" in listed and "known@example.org" in listed
    assert "Showing 2 of 2." in listed
    assert "Showing 1 of 1." in run("list", "--status", "pending", "--search", "ADA").output
    again = run("send-confirmations")
    assert again.output == "No pending subscriber is waiting for a confirmation email.\n"


def test_export_neutralises_formulas_and_reads_back(admin: Path, factory) -> None:
    add_reader(factory, "=cmd@example.org", ["neurology"], name="@Zoë Müller")
    add_reader(factory, "ada@example.org", ["pharmacology", "neurology"], name="Ada")
    exported = run("export")
    assert exported.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [(r["email"], r["name"], r["status"]) for r in rows] == [
        ("'=cmd@example.org", "'@Zoë Müller", "active"),
        ("ada@example.org", "Ada", "active"),
    ]
    assert "token" not in exported.stdout
    people = json.loads(run("export", "--format", "json", "--email", "ADA@example.org").stdout)
    assert [p["email"] for p in people] == ["ada@example.org"]
    assert people[0]["consents"][0]["categories"] == ["pharmacology", "neurology"]

    assert run("export", "--out", "all.csv").output == "Wrote 2 subscribers to all.csv.\n"
    assert (admin / "all.csv").read_bytes().startswith(b"\xef\xbb\xbfemail,name,status")
    back = run("import", "all.csv", "--confirmed")
    assert back.output.startswith("all.csv: 2 rows: 0 new; 2 already known, unchanged.")


def test_unsubscribe_rotate_and_erase(admin: Path, factory) -> None:
    add_reader(factory, "ada@example.org", ["pharmacology", "neurology"])
    with factory() as session:
        old_token = session.scalar(select(Subscriber.token))
    out = run("unsubscribe", "ada@example.org", "--category", "neurology").output
    assert out == "ada@example.org left neurology; still subscribed to Pharmacology.\n"
    assert run("unsubscribe", "Ada@example.org").output == (
        "Unsubscribed ada@example.org: no more digests.\n"
    )
    assert "unsubscribed since" in run("show", "ada@example.org").output
    assert run("rotate-token", "ada@example.org").output.startswith("New link issued")
    with factory() as session:
        assert session.scalar(select(Subscriber.token)) != old_token

    kept = run("erase", "ada@example.org", input="n\n")
    assert kept.exit_code == 1 and "Aborted" in kept.output
    erased = run("erase", "ada@example.org", "--yes")
    assert erased.output.startswith("Erased ada@example.org. 0 delivery records kept")
    gone = run("show", "ada@example.org")
    assert gone.exit_code == 1
    assert gone.output == "Error: no subscriber with the address ada@example.org\n"
    refused = run("add", "ada@example.org", "-c", "neurology", "--confirmed")
    assert refused.output.startswith(
        "Error: ada@example.org is on the suppression list (erased): only its owner"
    )


def test_every_subscribers_command_has_an_example_in_its_help() -> None:
    commands = [
        "add",
        "import",
        "export",
        "list",
        "show",
        "unsubscribe",
        "erase",
        "rotate-token",
        "send-confirmations",
    ]
    for name in commands:
        help_text = run(name, "--help").output
        assert re.search(r"Example:\n +digest subscribers " + name, help_text), name


def test_confirmations_owed_while_the_mail_server_is_down_are_sent_later(
    admin: Path, factory, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_TRANSPORT", "smtp")
    monkeypatch.setenv("DIGEST_SMTP_URL", f"smtp://127.0.0.1:{free_port()}?timeout=2")
    down = run("add", "ada@example.org", "-c", "neurology")
    assert down.exit_code == 1
    assert down.output.startswith("Added ada@example.org (pending) to Neurology.\nError: cannot")
    assert "run `digest subscribers send-confirmations` when the mail server is back" in (
        down.output
    )
    monkeypatch.setenv("DIGEST_SMTP_URL", smtp_server.url)
    later = run("send-confirmations")
    assert later.output.startswith("Sent 1 confirmation email via smtp")
    assert [m.recipients for m in smtp_server.handler.messages] == [["ada@example.org"]]
    assert run("send-confirmations").output.startswith("No pending subscriber is waiting")


@pytest.mark.parametrize(
    ("encoding", "said"),
    [
        ("cp1252", "latin.csv, read as Windows-1252 (guessed): 2 rows"),
        ("utf-16", "latin.csv: 2 rows"),  # Excel's "Unicode text", with its byte-order mark
        ("utf-8-sig", "latin.csv: 2 rows"),
    ],
)
def test_import_reads_what_spreadsheets_save(
    admin: Path, factory, encoding: str, said: str
) -> None:
    text = "email\tname\tcategories\nzoe@example.org\tZoë Müller\tneurology\n"
    text += "ada@example.org\tAda\tpharmacology\n"
    (admin / "latin.csv").write_bytes(text.encode(encoding))
    dry = run("import", "latin.csv", "--dry-run", "--confirmed")
    assert dry.exit_code == 0, dry.output
    assert dry.output.splitlines() == [
        f"{said}: 2 new (2 active).",
        "Dry run: nothing was written or sent.",
    ]
    done = run("import", "latin.csv", "--confirmed")
    assert done.exit_code == 0, done.output
    assert done.output == f"{said}: 2 new (2 active).\n"
    assert "Zoë Müller <zoe@example.org>" in run("show", "zoe@example.org").output


def test_a_file_that_is_not_a_csv_is_one_error_line(admin: Path) -> None:
    (admin / "photo.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x81")
    result = run("import", "photo.csv", "--dry-run")
    assert result.exit_code == 1
    assert result.output.startswith("Error: photo.csv: line 1: the header has no 'email' column")
    assert len(result.output.splitlines()) == 1


def test_a_nul_byte_in_a_name_is_one_clear_line_on_every_database(admin: Path, factory) -> None:
    """Issue 19: a NUL in a name ended in a psycopg.DataError traceback on PostgreSQL."""
    (admin / "nul.csv").write_text(
        "email;name;categories\nnul@example.org;A\x00B;neurology\n", encoding="utf-8"
    )
    refused = run("import", "nul.csv")
    assert refused.exit_code == 1
    assert "line 2: a name may not contain control characters (such as NUL)" in refused.output
    added = run("add", "nul@example.org", "-c", "neurology", "--name", "A\x00B")
    assert added.exit_code == 1
    assert added.output.strip().endswith("a name may not contain control characters (such as NUL)")
    with factory() as session:
        assert session.scalars(select(Subscriber.email)).all() == []
