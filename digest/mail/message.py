"""Message building: one pre-encoded MIME template per variant, personalised in microseconds.

The expensive part of a message (rendering, MIME encoding) happens once per variant.
Bodies are quoted-printable encoded by :func:`qp_encode`, which never splits the token
placeholder across a soft line break; since a real token has the placeholder's length and
only QP-safe characters, splicing it into the encoded bytes gives exactly the bytes a full
encoding would. Header lines are written by :mod:`digest.mail.headers`. Every template is
checked once by parsing a personalised sample back.

Pure: the list's :class:`~digest.render.identity.ListIdentity`, the date and the placeholder
come in as values, Message-IDs from an injected :class:`MessageIds` (clock and random source
given by the caller), and the check's sample reader is fixed, so the same input always
gives the same verdict.
"""

from __future__ import annotations

import binascii
import bisect
import datetime as dt
import email
import email.message
import email.parser
import email.policy
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.utils import format_datetime, formataddr
from typing import NamedTuple

from digest.errors import MessageError
from digest.mail.headers import header_line, subject_header, to_header
from digest.render.identity import IdentitySource, ListIdentity
from digest.render.renderer import Rendered
from subscribers.tokens import TOKEN_LENGTH

MAX_LINE = 998
#: Octets quoted-printable writes as they are: printable ASCII but "=", and the space
#: (RFC 2045 §6.7 rule 3), which :func:`qp_encode` escapes only at the end of a line.
_QP_SAFE = frozenset(range(32, 127)) - {ord("=")}
_QP_ESCAPES = {b: f"={b:02X}" for b in range(256) if b not in _QP_SAFE}
_MESSAGE_ID = re.compile(r"<[^@\s<>]+@[^@\s<>]+>")


class Recipient(NamedTuple):
    """The per-recipient values spliced into a template (one per message sent)."""

    address: str
    name: str | None
    token: str
    message_id: str


def new_placeholder() -> str:
    """A random stand-in for the token: same length, only QP-safe characters."""
    return ("zq" + secrets.token_hex(TOKEN_LENGTH))[:TOKEN_LENGTH]


#: The reader a template is checked with: a token of a real one's length and alphabet
#: (``-`` and ``_`` included), never equal to a placeholder (those start with "zq").
SAMPLE = Recipient(
    address="sample.reader@example.org",
    name="Sample Reader",
    token=("Sample-Token_" * 4)[:TOKEN_LENGTH],
    message_id="<digest.check.sample@example.org>",
)


class MessageIds:
    """Unique, unguessable Message-IDs that sort by creation time: the ledger's unique
    index on them then grows at one end, as ids do, instead of taking each new row at a
    random page (at a million rows that doubled the cost of planning on SQLite).

    ``clock_ns`` (nanoseconds, such as :func:`time.time_ns`) orders them; ids from one
    source increase even if the clock stands still or steps back. ``noise(n)`` gives
    ``2 n`` hex digits of randomness (80 bits per id)."""

    def __init__(
        self, clock_ns: Callable[[], int], noise: Callable[[int], str] = secrets.token_hex
    ) -> None:
        self._clock_ns = clock_ns
        self._noise = noise
        self._last = 0

    def new(self, edition_key: str, domain: str, count: int) -> list[str]:
        """``count`` Message-IDs in increasing order, their random bits from one call."""
        first = max(self._clock_ns(), self._last + 1)
        self._last = first + count - 1
        noise = self._noise(10 * count)
        head, tail = f"<digest.{edition_key}.", f"@{domain}>"
        return [f"{head}{first + i:016x}.{noise[20 * i : 20 * i + 20]}{tail}" for i in range(count)]

    def one(self, edition_key: str, domain: str) -> str:
        return self.new(edition_key, domain, 1)[0]


def qp_encode(text: str, protected: str = "") -> bytes:
    """Quoted-printable (RFC 2045 §6.7) with CRLF line ends, lines of at most 76 octets,
    and ``protected`` never split by a soft line break.

    Each line is escaped in one ``str.translate`` call (bytes as Latin-1 characters), then
    cut into soft lines: never inside an ``=XX`` escape nor inside ``protected``. Spaces stay
    as they are except the last one of a line (rule 3: no white space before a line break).
    A dot opening an encoded line is escaped (safe from SMTP dot-stuffing mistakes), and so
    is the F of a "From " opening one (safe from mbox ``>From`` quoting)."""
    out: list[str] = []
    width = len(protected)
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        data = line.encode("utf-8").decode("latin-1").translate(_QP_ESCAPES)
        if data.endswith(" "):
            data = data[:-1] + "=20"
        end = len(data)
        if end <= 75 and not data.startswith((".", "From ")):
            out.append(data)
            continue
        tokens = _starts(data, protected) if width and protected in data else ()
        pos = 0
        while True:
            prefix, start = _line_start(data, pos)
            cut = start + 75 - len(prefix)
            if cut >= end:
                out.append(prefix + data[start:])
                break
            if data[cut - 1] == "=":
                cut -= 1
            elif data[cut - 2] == "=":
                cut -= 2
            if tokens:  # the last token starting before the cut must not straddle it
                index = bisect.bisect_left(tokens, cut) - 1
                if index >= 0 and start < tokens[index] and cut < tokens[index] + width:
                    cut = tokens[index]
            out.append(prefix + data[start:cut] + "=")
            pos = cut
    return "\r\n".join(out).encode("ascii")


def _line_start(data: str, pos: int) -> tuple[str, int]:
    """How an encoded line starting at ``pos`` opens: the escape of a first octet that
    must not appear as it is (a dot, the F of "From "), and where the rest begins."""
    if data.startswith(".", pos):
        return "=2E", pos + 1
    if data.startswith("From ", pos):
        return "=46", pos + 1
    return "", pos


def _starts(data: str, needle: str) -> list[int]:
    """Every index where ``needle`` starts in ``data``."""
    found, at = [], data.find(needle)
    while at != -1:
        found.append(at)
        at = data.find(needle, at + 1)
    return found


def opens_a_line_with_a_dot(data: bytes) -> bool:
    """Whether a line of ``data`` starts with ``.`` (what SMTP must dot-stuff, RFC 5321
    §4.5.2), counting its very start as a line start."""
    return data.startswith(b".") or b"\r\n." in data or b"\n." in data


@dataclass(frozen=True)
class MessageTemplate:
    """A message with three holes: the To line, the Message-ID and the token.

    ``plain`` is decided once, here: no fixed part opens a line with a dot. The spliced
    values cannot either (a To line starts with "To:" and folds with a space, a Message-ID
    starts with "<", a token is letters, digits, "-" and "_"; tests/test_message_stuffing.py
    proves it over arbitrary names and addresses), so when ``plain`` holds every
    personalised message needs no dot-stuffing, and SMTP never scans the bytes for one."""

    parts: tuple[bytes, ...]
    slots: tuple[str, ...]  # between parts: "to", "message_id" or "token"
    placeholder: str
    plain: bool = field(init=False, compare=False)

    def __post_init__(self) -> None:
        plain = not any(opens_a_line_with_a_dot(part) for part in self.parts)
        object.__setattr__(self, "plain", plain)

    def personalize(self, recipient: Recipient) -> bytes:
        """The whole message for ``recipient``."""
        return b"".join(self.pieces(recipient))

    def pieces(self, recipient: Recipient) -> list[bytes]:
        """The message for ``recipient`` as the pieces that make it up, in order, not
        joined: a transport writes them one after another (SMTP: one ``sendmsg``). Joining
        copies the whole message (75 KB on average): the largest single cost of a
        personalised message."""
        if len(recipient.token) != len(self.placeholder):
            raise MessageError("a token has the wrong length for this template")
        values = {
            "to": to_header(recipient.address, recipient.name),
            "message_id": recipient.message_id.encode("ascii"),
            "token": recipient.token.encode("ascii"),
        }
        chunks = [self.parts[0]]
        for slot, part in zip(self.slots, self.parts[1:], strict=True):
            chunks.append(values[slot])
            chunks.append(part)
        return chunks


_SLOT_TO = "\x00to\x00"
_SLOT_MID = "\x00message_id\x00"


def build_template(
    identity: ListIdentity | IdentitySource,
    rendered: Rendered,
    *,
    placeholder: str,
    date: dt.datetime,
    subject_prefix: str = "",
) -> MessageTemplate:
    """Encode ``rendered`` into a message template, then check a personalised sample."""
    identity = ListIdentity.of(identity)
    unsubscribe = f"<{identity.base_url}/u/{placeholder}>"
    if identity.unsubscribe_mailto:
        mailto = f"mailto:{identity.unsubscribe_mailto}?subject=unsubscribe%20{placeholder}"
        unsubscribe += f",\r\n <{mailto}>"
    boundary = f"=_digest_{secrets.token_hex(12)}"
    head = b"".join(
        [
            f"Date: {format_datetime(date.astimezone(dt.UTC))}\r\n".encode("ascii"),
            header_line("From", Address(identity.sender_name, addr_spec=identity.sender_address)),
            _SLOT_TO.encode("ascii"),
            subject_header(subject_prefix + rendered.subject),
            b"Message-ID: " + _SLOT_MID.encode("ascii") + b"\r\n",
            header_line("Reply-To", identity.reply_to) if identity.reply_to else b"",
            header_line("List-Id", formataddr((identity.site_name, identity.list_id), "utf-8")),
            f"List-Unsubscribe: {unsubscribe}\r\n".encode("ascii"),
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
            b"Auto-Submitted: auto-generated\r\n",
            b"Precedence: bulk\r\n",
            b"MIME-Version: 1.0\r\n",
            f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n'.encode("ascii"),
            b"\r\n",
        ]
    )
    body = alternative_body(rendered, placeholder, boundary)
    names = {
        _SLOT_TO.encode(): "to",
        _SLOT_MID.encode(): "message_id",
        placeholder.encode(): "token",
    }
    pattern = re.compile(b"(" + b"|".join(re.escape(name) for name in names) + b")")
    pieces = pattern.split(head + body)
    template = MessageTemplate(
        parts=tuple(pieces[0::2]),
        slots=tuple(names[p] for p in pieces[1::2]),
        placeholder=placeholder,
    )
    check_template(template, identity.base_url, rendered)
    return template


def alternative_body(rendered: Rendered, placeholder: str, boundary: str) -> bytes:
    """The multipart/alternative body: text first, HTML last, both quoted-printable with
    ``placeholder`` never split across a line."""
    return b"".join(
        [
            f"--{boundary}\r\n".encode("ascii"),
            b'Content-Type: text/plain; charset="utf-8"\r\n',
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
            qp_encode(rendered.text, placeholder),
            f"\r\n--{boundary}\r\n".encode("ascii"),
            b'Content-Type: text/html; charset="utf-8"\r\n',
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
            qp_encode(rendered.html, placeholder),
            f"\r\n--{boundary}--\r\n".encode("ascii"),
        ]
    )


def check_template(template: MessageTemplate, base_url: str, rendered: Rendered) -> None:
    """Personalise :data:`SAMPLE` and check it against every standard we promise, once per
    variant (``base_url``: where the unsubscribe links must point). The built template's
    own shape is read directly (:func:`built_message_problems`), not by the general MIME
    parser: that parse-back was about a tenth of the CPU before SMTP."""
    if template.slots.count("to") != 1 or template.slots.count("message_id") != 1:
        raise MessageError("message template must have exactly one To and one Message-ID")
    raw = template.personalize(SAMPLE)
    problems = built_message_problems(raw, token=SAMPLE.token, base_url=base_url)
    if template.placeholder.encode() in raw:
        problems.append("a token placeholder survived personalisation")
    if problems:
        raise MessageError(f"message for {rendered.subject!r}: " + "; ".join(problems))


def message_problems(raw: bytes, *, token: str, base_url: str) -> list[str]:
    """What is wrong with ``raw`` against email-standards.md sections 1-5 (empty if nothing),
    read by Python's general MIME parser."""
    problems = _octet_problems(raw)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    problems += _header_problems(msg, token=token, base_url=base_url)
    found = list(msg.iter_parts())
    parts = [(part.get_content_type(), "", "") for part in found]
    if _shape_ok(msg, [content_type for content_type, _, _ in parts]):  # texts: decode them
        parts = [
            (part.get_content_type(), part.get("Content-Transfer-Encoding", ""), part.get_content())
            for part in found
        ]
    return problems + _part_problems(msg, parts, token)


def built_message_problems(raw: bytes, *, token: str, base_url: str) -> list[str]:
    """:func:`message_problems` for a message shaped as :func:`build_template` builds them:
    the same checks and sentences, but only the header blocks are parsed; the two parts are
    cut at their boundary and decoded directly (quoted-printable by ``binascii``). A message
    of any other shape goes to the general parser."""
    head, blank, body = raw.partition(b"\r\n\r\n")
    msg = _HEADERS.parsebytes(head + blank)
    boundary = msg.get_boundary()
    found = _cut_parts(body, boundary) if boundary else None
    if msg.get_content_type() != "multipart/alternative" or found is None:
        return message_problems(raw, token=token, base_url=base_url)
    parts = []
    for part in found:
        part_head, part_blank, content = part.partition(b"\r\n\r\n")
        headers = _HEADERS.parsebytes(part_head + part_blank)
        encoding = headers.get("Content-Transfer-Encoding", "")
        if headers.get_content_maintype() != "text" or not part_blank:
            return message_problems(raw, token=token, base_url=base_url)
        decoded = _decode(content, encoding.lower())
        text = decoded.decode(headers.get_content_charset() or "us-ascii", "replace")
        parts.append((headers.get_content_type(), encoding, text))
    problems = _octet_problems(raw) + _header_problems(msg, token=token, base_url=base_url)
    return problems + _part_problems(msg, parts, token)


_HEADERS = email.parser.BytesHeaderParser(policy=email.policy.default)


def _cut_parts(body: bytes, boundary: str) -> list[bytes] | None:
    """The parts of a multipart body with no preamble or epilogue, or None."""
    delimiter = b"\r\n--" + boundary.encode("ascii", "replace")
    chunks = (b"\r\n" + body).split(delimiter)
    if chunks[0] or chunks[-1] != b"--\r\n" or len(chunks) < 3:
        return None
    if not all(chunk.startswith(b"\r\n") for chunk in chunks[1:-1]):
        return None
    return [chunk[2:] for chunk in chunks[1:-1]]


def _decode(content: bytes, encoding: str) -> bytes:
    if encoding == "quoted-printable":
        return binascii.a2b_qp(content)
    if encoding == "base64":
        return binascii.a2b_base64(content)
    return content


def _octet_problems(raw: bytes) -> list[str]:
    problems: list[str] = []
    if not raw.isascii():
        problems.append("message is not 7-bit clean")
    lines = raw.split(b"\r\n")
    if max(len(line) for line in lines) > MAX_LINE:
        problems.append(f"a line is longer than {MAX_LINE} octets")
    if b"\n" in raw.replace(b"\r\n", b"") or b"\r" in raw.replace(b"\r\n", b""):
        problems.append("bare CR or LF")
    return problems


def _header_problems(msg: email.message.Message, *, token: str, base_url: str) -> list[str]:
    problems: list[str] = []
    for name in (
        "Date",
        "From",
        "To",
        "Subject",
        "Message-ID",
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "MIME-Version",
    ):
        count = len(msg.get_all(name) or [])
        if count != 1:
            problems.append(f"{count} {name} headers instead of one")
    if not _MESSAGE_ID.fullmatch(str(msg.get("Message-ID", ""))):
        problems.append("Message-ID is malformed")
    unsubscribe_url = f"{base_url}/u/{token}"
    if f"<{unsubscribe_url}>" not in str(msg.get("List-Unsubscribe", "")):
        problems.append("List-Unsubscribe does not carry the reader's https link")
    if msg.get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click":
        problems.append("List-Unsubscribe-Post is not List-Unsubscribe=One-Click")
    return problems


def _part_problems(
    msg: email.message.Message, parts: list[tuple[str, str, str]], token: str
) -> list[str]:
    """Checks of the parts: (content type, transfer encoding, decoded text) of each."""
    types = [content_type for content_type, _, _ in parts]
    if not _shape_ok(msg, types):
        return [f"structure is {msg.get_content_type()} {types}, not text then html"]
    problems: list[str] = []
    for content_type, encoding, body in parts:
        if token not in body:
            problems.append(f"{content_type} part lacks the reader's unsubscribe token")
        if encoding.lower() not in ("7bit", "quoted-printable", "base64"):
            problems.append(f"{content_type} part is not 7-bit encoded")
    return problems


def _shape_ok(msg: email.message.Message, types: list[str]) -> bool:
    return msg.get_content_type() == "multipart/alternative" and types == [
        "text/plain",
        "text/html",
    ]
