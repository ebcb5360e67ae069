"""digest bounces process --imap against a real IMAP server: a private Dovecot
(tests/imap_support.py), messages put in by IMAP APPEND, the CLI as a user runs it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy.orm import Session, sessionmaker

from tests import test_bounces_process as file_tests
from tests.imap_support import Dovecot, ImapAccount, running_dovecot
from tests.test_bounces_process import READERS, digest, sample, status_of

# the fixtures of the file-based bounce tests: a config, and an edition sent to READERS
config = file_tests.config
bounce_settings = file_tests.bounce_settings
week = file_tests.week

Sent = dict[str, tuple[str, str]]


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


@pytest.fixture
def account(dovecot: Dovecot) -> Iterator[ImapAccount]:
    """A fresh user with an empty INBOX; Dovecot's log of the test shows when it fails."""
    start = dovecot.log_size()
    yield dovecot.add_account()
    print(f"--- {dovecot.log_path} during this test:\n{dovecot.log(start)}")


def one_error_line(result: Result) -> str:
    """The output of a command that failed as a user should see it: one line, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not a crash
    assert "Traceback" not in result.output
    lines = result.output.splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def test_unseen_bounces_and_complaints_are_processed_once_and_left_seen(
    week: Sent,
    config: Path,
    factory: sessionmaker[Session],
    tmp_path: Path,
    account: ImapAccount,
) -> None:
    ann, bob, cy, di = READERS
    account.append(sample(tmp_path, "postfix_hard.eml", week, ann).read_bytes())
    account.append(sample(tmp_path, "arf_complaint.eml", week, bob).read_bytes())
    # already read in a mail client: not digest's to process
    account.append(sample(tmp_path, "postfix_hard.eml", week, cy).read_bytes(), seen=True)

    result = digest(config, "bounces", "process", "--imap", account.url())
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"imap/1: hard bounce 5.1.1 for {ann}")
    assert "matched by VERP" in lines[0] and "suppressed (bounced)" in lines[0]
    assert lines[1].startswith(f"imap/2: complaint for {bob}")
    assert "suppressed (complained)" in lines[1]
    assert lines[2:] == ["2 message(s): 1 hard, 1 complaint"]
    assert [status_of(factory, r) for r in READERS] == [
        "bounced",
        "complained",
        "active",
        "active",
    ]
    # flagged \Seen, not moved or deleted
    assert account.uids("UNSEEN") == []
    assert account.uids("SEEN") == account.uids("ALL") == ["1", "2", "3"]

    again = digest(config, "bounces", "process", "--imap", account.url())
    assert again.exit_code == 0, again.output
    assert again.output == "0 message(s): nothing\n"

    account.append(sample(tmp_path, "postfix_hard.eml", week, di).read_bytes())
    later = digest(config, "bounces", "process", "--imap", account.url())
    assert later.exit_code == 0, later.output
    assert later.output.startswith(f"imap/4: hard bounce 5.1.1 for {di}")
    assert later.output.endswith("1 message(s): 1 hard\n")
    assert status_of(factory, di) == "bounced"
    assert account.uids("UNSEEN") == []


def test_a_wrong_password_is_one_line_naming_the_server(config: Path, account: ImapAccount) -> None:
    result = digest(config, "bounces", "process", "--imap", account.url(password="wrong"))
    line = one_error_line(result)
    assert line == "Error: IMAP 127.0.0.1: [AUTHENTICATIONFAILED] Authentication failed."


def test_a_user_name_and_password_beyond_ascii_log_in(
    week: Sent, config: Path, factory: sessionmaker[Session], tmp_path: Path, dovecot: Dovecot
) -> None:
    account = dovecot.add_account(non_ascii=True)  # such as jürgen9 and pässwört/...
    account.append(sample(tmp_path, "postfix_hard.eml", week, READERS[0]).read_bytes())
    result = digest(config, "bounces", "process", "--imap", account.url())
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"imap/1: hard bounce 5.1.1 for {READERS[0]}")
    assert status_of(factory, READERS[0]) == "bounced"
    assert account.uids("UNSEEN") == []

    wrong = digest(config, "bounces", "process", "--imap", account.url(password="wröng"))
    assert one_error_line(wrong).startswith("Error: IMAP 127.0.0.1: [AUTHENTICATIONFAILED]")


def test_a_missing_mailbox_is_named(config: Path, account: ImapAccount) -> None:
    result = digest(config, "bounces", "process", "--imap", account.url("Bounces"))
    assert one_error_line(result) == "Error: IMAP 127.0.0.1: no mailbox 'Bounces'"


def test_nobody_listening_is_one_line(config: Path, account: ImapAccount) -> None:
    from tests.conftest import free_port

    url = account.url().replace(f":{account.server.port}/", f":{free_port()}/")
    line = one_error_line(digest(config, "bounces", "process", "--imap", url))
    assert line.startswith("Error: IMAP 127.0.0.1: [Errno 111]"), line


def test_mailbox_names_with_spaces_and_accents(
    week: Sent,
    config: Path,
    factory: sessionmaker[Session],
    tmp_path: Path,
    account: ImapAccount,
) -> None:
    # as sent on the wire: "Rückläufer" in IMAP's modified UTF-7
    folders = {"Bounce reports": "Bounce reports", "Rückläufer": "R&APw-ckl&AOQ-ufer"}
    for wire, reader in zip(folders.values(), READERS[:2], strict=True):
        account.create(wire)
        account.append(sample(tmp_path, "postfix_hard.eml", week, reader).read_bytes(), wire)
    account.append(sample(tmp_path, "postfix_hard.eml", week, READERS[3]).read_bytes())
    for (name, wire), reader in zip(folders.items(), READERS[:2], strict=True):
        result = digest(config, "bounces", "process", "--imap", account.url(name))
        assert result.exit_code == 0, result.output
        assert result.output.startswith(f"imap/1: hard bounce 5.1.1 for {reader}")
        assert result.output.endswith("1 message(s): 1 hard\n")
        assert account.uids("UNSEEN", wire) == []
    assert [status_of(factory, r) for r in READERS] == ["bounced", "bounced", "active", "active"]
    assert account.uids("UNSEEN") == ["1"]  # INBOX untouched


def test_imaps_verifies_the_server_certificate(
    config: Path, account: ImapAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    if account.server.cert is None:
        pytest.skip("no openssl to make the test server's certificate")
    url = account.url(tls=True)
    untrusted = one_error_line(digest(config, "bounces", "process", "--imap", url))
    assert untrusted.startswith("Error: IMAP 127.0.0.1: [SSL: CERTIFICATE_VERIFY_FAILED]")
    assert "self-signed certificate" in untrusted
    monkeypatch.setenv("SSL_CERT_FILE", str(account.server.cert))  # trusted from now on
    trusted = digest(config, "bounces", "process", "--imap", url)
    assert trusted.exit_code == 0, trusted.output
    assert trusted.output == "0 message(s): nothing\n"
