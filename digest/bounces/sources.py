"""Where reports come from: a file (one message or an mbox), a Maildir, stdin, or IMAP.

Each source yields ``(label, bytes)``; labels name the message in the processing report.
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import mailbox
import re
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from digest.config import is_loopback
from digest.errors import DataError

_MBOX_SPLIT = re.compile(rb"(?:^|\r?\n)(?=From [^\r\n]*\r?\n)")


def read_source(source: str) -> Iterator[tuple[str, bytes]]:
    """Messages from ``source``: ``-`` (stdin), a Maildir directory, an mbox or one message."""
    if source == "-":
        yield from split_mbox(sys.stdin.buffer.read(), "stdin")
        return
    path = Path(source)
    if path.is_dir():
        if not all((path / sub).is_dir() for sub in ("cur", "new", "tmp")):
            raise DataError(f"{path} is a directory but not a Maildir (no cur/new/tmp)")
        box = mailbox.Maildir(path, factory=None, create=False)
        for key in sorted(box.keys()):
            with box.get_file(key) as handle:
                yield f"{path.name}/{key}", handle.read()
        return
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    yield from split_mbox(data, path.name)


def split_mbox(data: bytes, label: str) -> Iterator[tuple[str, bytes]]:
    """An mbox (messages after ``From `` lines; ``>From`` unquoted) or a single message."""
    if not data.startswith(b"From "):
        yield label, data
        return
    chunks = [c for c in _MBOX_SPLIT.split(data) if c.strip()]
    for number, chunk in enumerate(chunks, 1):
        body = chunk.split(b"\n", 1)[1] if b"\n" in chunk else b""
        body = re.sub(rb"(?m)^>(>*From )", rb"\1", body)
        yield f"{label}#{number}", body


class ImapSource:
    """Unseen messages of one IMAP mailbox (``imaps://user:pass@host[:port]/INBOX``); each is
    flagged \\Seen after it was processed, so the next poll skips it. Certificates are
    verified; ``imap://`` requires STARTTLS except to a loopback address (as ``smtp_url``)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("imap", "imaps") or not parts.hostname:
            raise DataError(f"{url!r} is not an imap:// or imaps:// URL")
        if not parts.username or parts.password is None:
            raise DataError("the IMAP URL needs user:password@")
        self.scheme, self.host = parts.scheme, parts.hostname
        self.port = parts.port or (993 if parts.scheme == "imaps" else 143)
        self.user, self.password = unquote(parts.username), unquote(parts.password)
        self.mailbox = unquote(parts.path.lstrip("/")) or "INBOX"
        self.client: imaplib.IMAP4 | None = None

    def __enter__(self) -> ImapSource:
        context = ssl.create_default_context()
        client: imaplib.IMAP4 | None = None
        try:
            if self.scheme == "imaps":
                client = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=context, timeout=60)
            else:
                client = imaplib.IMAP4(self.host, self.port, timeout=60)
                if not is_loopback(self.host):
                    client.starttls(ssl_context=context)
            _login(client, self.user, self.password)
            status, _ = client.select(_quoted(self.mailbox))
        except (OSError, imaplib.IMAP4.error) as exc:
            _logout(client)
            raise DataError(f"IMAP {self.host}: {_why(exc)}") from None
        if status != "OK":
            _logout(client)
            raise DataError(f"IMAP {self.host}: no mailbox {self.mailbox!r}")
        self.client = client
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                self.client.close()
            _logout(self.client)

    def messages(self) -> Iterator[tuple[str, bytes]]:
        assert self.client is not None
        try:
            _, found = self.client.uid("SEARCH", "UNSEEN")
            for number in (found[0] or b"").split():
                uid = number.decode("ascii")
                _, data = self.client.uid("FETCH", uid, "(BODY.PEEK[])")
                raw = next((item[1] for item in data if isinstance(item, tuple)), b"")
                yield f"imap/{uid}", raw
                self.client.uid("STORE", uid, "+FLAGS", "(\\Seen)")
        except (OSError, imaplib.IMAP4.error) as exc:
            raise DataError(f"IMAP {self.host}: {_why(exc)}") from None


def _login(client: imaplib.IMAP4, user: str, password: str) -> None:
    """LOGIN for ASCII credentials; otherwise AUTHENTICATE PLAIN, whose user name and
    password are UTF-8 (RFC 4616): imaplib sends LOGIN's arguments only in ASCII."""
    if user.isascii() and password.isascii():
        client.login(user, password)
        return
    if "AUTH=PLAIN" not in client.capabilities:
        raise imaplib.IMAP4.error(
            "the user name or password is not ASCII, which IMAP LOGIN cannot carry, and "
            "the server does not offer AUTHENTICATE PLAIN"
        )
    credentials = f"\0{user}\0{password}".encode()
    client.authenticate("PLAIN", lambda _challenge: credentials)


def _quoted(mailbox: str) -> str:
    """A mailbox name as an IMAP quoted string in modified UTF-7 (RFC 3501 5.1.3); imaplib
    sends arguments as they are, and only in ASCII."""
    encoded = _NON_ASCII.sub(_utf7_run, mailbox.replace("&", "&-"))
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


_NON_ASCII = re.compile(r"[^\x20-\x7e]+")


def _utf7_run(run: re.Match[str]) -> str:
    encoded = base64.b64encode(run.group().encode("utf-16-be")).decode("ascii")
    return "&" + encoded.rstrip("=").replace("/", ",") + "-"


def _why(exc: Exception) -> str:
    """imaplib puts the server's reply in its errors as bytes: show it as text."""
    reply = exc.args[0] if len(exc.args) == 1 else exc
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace")
    return str(reply)


def _logout(client: imaplib.IMAP4 | None) -> None:
    if client is not None:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            client.logout()
