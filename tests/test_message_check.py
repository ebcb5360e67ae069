"""The check every template gets (``check_template``) reads the built message directly
instead of through Python's MIME parser: it must find exactly what the parser-based
``message_problems`` finds, in the same words, on good messages and on broken ones."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from digest.config import Settings
from digest.mail.message import (
    Recipient,
    build_template,
    built_message_problems,
    message_problems,
    new_placeholder,
)
from digest.render.renderer import Rendered
from subscribers.tokens import new_token

DATE = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)


def personalised(settings: Settings) -> tuple[bytes, str]:
    placeholder = new_placeholder()
    link = f"{settings.base_url}/u/{placeholder}"
    rendered = Rendered(
        "3 new summaries in Pharmacology",
        f'<!doctype html><html lang="en"><p>café ü</p><a href="{link}">Unsubscribe</a></html>',
        f"Hello ü\n.a line opening with a dot\nUnsubscribe: {link}\n",
    )
    template = build_template(settings, rendered, placeholder=placeholder, date=DATE)
    token = new_token()
    recipient = Recipient("ada@example.org", "Ada Lovelace", token, "<m.1@example.org>")
    return template.personalize(recipient), token


def _swap_parts(raw: bytes) -> bytes:
    return (
        raw.replace(b"text/plain", b"text/TEMP")
        .replace(b"text/html", b"text/plain")
        .replace(b"text/TEMP", b"text/html")
    )


def _one_part(raw: bytes) -> bytes:
    head, _, _ = raw.partition(b"\r\n\r\n")
    head = head.replace(b"multipart/alternative", b"text/plain")
    return head + b"\r\n\r\nno parts at all\r\n"


BREAKAGES: dict[str, Callable[[bytes, str], bytes]] = {
    "as built": lambda raw, token: raw,
    "token gone from the html part": lambda raw, token: raw[::-1].replace(
        token.encode()[::-1], b"x" * len(token), 1
    )[::-1],
    "token gone from both parts": lambda raw, token: raw.replace(
        f"/u/{token}\r\n".encode(), b"/u/gone\r\n"
    ).replace(f'/u/{token}"'.encode(), b'/u/gone"'),
    "two To headers": lambda raw, token: raw.replace(b"To: ", b"To: a@b.c\r\nTo: ", 1),
    "no Date": lambda raw, token: raw.replace(b"Date: ", b"X-Date: ", 1),
    "bad Message-ID": lambda raw, token: raw.replace(b"<m.1@example.org>", b"m.1", 1),
    "no one-click": lambda raw, token: raw.replace(b"=One-Click", b"=Two-Clicks", 1),
    "8-bit octet": lambda raw, token: raw.replace(b"Hello", "Hellö".encode(), 1),
    "bare LF": lambda raw, token: raw.replace(b"Hello", b"Hel\nlo", 1),
    "long line": lambda raw, token: raw.replace(b"Hello", b"H" * 1200, 1),
    "parts swapped": lambda raw, token: _swap_parts(raw),
    "8bit part": lambda raw, token: raw.replace(b"quoted-printable", b"8bit", 1),
    "not multipart": lambda raw, token: _one_part(raw),
    "epilogue after the parts": lambda raw, token: raw + b"trailing words\r\n",
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_the_direct_check_finds_what_the_mime_parser_finds(
    settings: Settings, breakage: str
) -> None:
    raw, token = personalised(settings)
    broken = BREAKAGES[breakage](raw, token)
    expected = message_problems(broken, token=token, base_url=settings.base_url)
    found = built_message_problems(broken, token=token, base_url=settings.base_url)
    assert found == expected
    assert (found == []) == (breakage in ("as built", "epilogue after the parts"))
