"""Dot-stuffing is decided once per template: the values spliced into a message (its To
line, Message-ID and token) can never open a line with a dot, so a template whose fixed
parts open none needs no stuffing for any reader, and SMTP never scans the bytes for one."""

from __future__ import annotations

import datetime as dt
import string
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from digest.config import parse_smtp_url
from digest.mail.headers import to_header
from digest.mail.message import (
    MessageIds,
    MessageTemplate,
    Recipient,
    build_template,
    new_placeholder,
    opens_a_line_with_a_dot,
)
from digest.mail.transports import SmtpTransport
from digest.mail.transports.base import Envelope
from digest.render.renderer import Rendered
from subscribers.tokens import TOKEN_LENGTH, new_token
from tests.conftest import make_settings

DATE = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
SETTINGS = make_settings(Path(tempfile.mkdtemp(prefix="digest-stuffing-")))
TOKEN_ALPHABET = string.ascii_letters + string.digits + "-_"

names = st.one_of(st.none(), st.text(max_size=200))
addresses = st.emails().filter(str.isascii)
tokens = st.text(TOKEN_ALPHABET, min_size=TOKEN_LENGTH, max_size=TOKEN_LENGTH)
keys = st.from_regex(r"\A[0-9]{4}-W[0-9]{2}\Z")


@st.composite
def message_ids(draw: st.DrawFn) -> str:
    clock = draw(st.integers(min_value=0, max_value=2**63))
    noise = draw(st.text("0123456789abcdef", min_size=20, max_size=20))
    ids = MessageIds(lambda: clock, lambda n: (noise * n)[: 2 * n])
    domain = draw(addresses).rsplit("@", 1)[1]
    return ids.one(draw(keys), domain)


@given(names, addresses, tokens, message_ids())
def test_spliced_values_never_open_a_line_with_a_dot(
    name: str | None, address: str, token: str, message_id: str
) -> None:
    to_line = to_header(address, name)
    for value in (to_line, message_id.encode("ascii"), token.encode("ascii")):
        assert not opens_a_line_with_a_dot(value)
        # and glued after a line end (a fixed part ending in CRLF), still no dot opens it
        assert not opens_a_line_with_a_dot(b"X\r\n" + value)


@st.composite
def dotted_text(draw: st.DrawFn) -> str:
    """Text full of lines that start with dots (as a list of references might)."""
    lines = draw(st.lists(st.text(max_size=90), min_size=1, max_size=20))
    return "\n".join("." + line if i % 2 == 0 else line for i, line in enumerate(lines))


@settings(deadline=None)  # building a template parses it back: slow on a loaded machine
@given(dotted_text(), names, addresses, tokens, message_ids())
def test_a_plain_template_stays_plain_for_every_reader(
    text: str, name: str | None, address: str, token: str, message_id: str
) -> None:
    config = SETTINGS
    placeholder = new_placeholder()
    body = f"{text}\nUnsubscribe: {config.base_url}/u/{placeholder}\n"
    html = f'<p>{text}</p><a href="{config.base_url}/u/{placeholder}">Unsubscribe</a>'
    template = build_template(
        config, Rendered(".Dotted subject", html, body), placeholder=placeholder, date=DATE
    )
    assert template.plain  # quoted-printable escapes a leading dot: nothing to stuff
    raw = template.personalize(Recipient(address, name, token, message_id))
    assert not opens_a_line_with_a_dot(raw)


def test_a_template_that_needs_stuffing_says_so_and_arrives_intact(smtp_server) -> None:  # type: ignore[no-untyped-def]
    token = new_token()
    template = MessageTemplate(
        parts=(
            b"",
            b"Subject: dots\r\nMessage-ID: ",
            b"\r\n\r\n.a line opening with a dot\r\n..and two\r\n",
            b"\r\n.\r\n",
        ),
        slots=("to", "message_id", "token"),
        placeholder="x" * TOKEN_LENGTH,
    )
    plain = MessageTemplate(
        parts=(b"", b"Subject: plain\r\nMessage-ID: ", b"\r\n\r\nno dots\r\n", b"\r\n"),
        slots=("to", "message_id", "token"),
        placeholder="x" * TOKEN_LENGTH,
    )
    assert not template.plain and plain.plain
    transport = SmtpTransport(parse_smtp_url(smtp_server.url))
    sent = []
    for each in (template, plain):
        raw = each.personalize(Recipient("reader@example.org", None, token, "<a.b@example.org>"))
        transport.send(Envelope("digest@example.org", "reader@example.org"), raw)
        sent.append(raw)
    transport.close()
    assert [m.data for m in smtp_server.handler.messages] == sent


def test_a_plain_template_whose_fixed_part_would_open_a_line_with_a_dot_is_not_plain() -> None:
    for parts in ((b".x", b""), (b"", b".after a slot"), (b"a\r\n.b", b"")):
        template = MessageTemplate(parts=parts, slots=("token",), placeholder="x")
        assert not template.plain
