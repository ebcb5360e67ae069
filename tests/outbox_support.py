"""Every kind of email digest sends, written by the product itself into a file outbox: the
demo's digests (one per reader), a double opt-in confirmation and a "your links" email."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import os
from pathlib import Path

from click.testing import CliRunner

from digest.cli.main import cli
from digest.config import load_settings
from digest.mail.transports import FileTransport
from digest.web.mailer import send_links

TRANSACTIONAL = ("confirmations", "links")


def write_every_email(folder: Path) -> list[Path]:
    """Run the demo and a sign-up in ``folder``; the .eml files they wrote, sorted."""
    here = Path.cwd()
    os.chdir(folder)
    try:
        runner = CliRunner()
        for args in (
            ["demo"],
            ["subscribers", "add", "new.reader@example.net", "-c", "neurology", "--name", "Zoë"],
        ):
            result = runner.invoke(cli, args, catch_exceptions=False)
            assert result.exit_code == 0, result.output
    finally:
        os.chdir(here)
    settings = load_settings(folder / "digest.toml")
    settings = dataclasses.replace(settings, outbox_dir=folder / "outbox")
    send_links(
        settings,
        FileTransport(settings.outbox_dir),
        to="reader@example.net",
        name="Ada",
        token="t" * 43,
        now=dt.datetime.now(dt.UTC),
    )
    messages = sorted(settings.outbox_dir.glob("*/*.eml"))
    folders = {path.parent.name for path in messages}
    assert set(TRANSACTIONAL) <= folders and len(folders) == 3, folders
    return messages


def is_digest(path: Path) -> bool:
    return path.parent.name not in TRANSACTIONAL


def html_part(path: Path) -> str:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    body = message.get_body(preferencelist=("html",))  # type: ignore[attr-defined]
    assert body is not None, path
    return str(body.get_content())
