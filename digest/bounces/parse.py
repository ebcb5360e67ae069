"""Read one incoming report: a DSN (RFC 3464), a complaint (ARF, RFC 5965), an auto-reply, or
a bounce in an older free-text style. Pure: bytes in, a :class:`Report` out, no I/O.

Anything that is not mail at all raises :class:`~digest.errors.DataError`; anything that is
mail but not a report we understand comes back as ``Report(kind="unknown")``, so a caller can
say so and go on with the next message.
"""

from __future__ import annotations

import contextlib
import email
import email.errors
import email.policy
import hashlib
import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses

from digest.errors import DataError

#: Longest report read: a DSN with the whole original attached is far smaller.
MAX_BYTES = 10 * 1024 * 1024
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE = re.compile(r"\b([245]\d\d)[ -]")
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_MESSAGE_ID = re.compile(r"<[^<>\s@]+@[^<>\s]+>")
_BOUNCE_FROM = re.compile(r"mailer-daemon|postmaster|mail delivery|mail-daemon", re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery (status notification|failure|has failed)|failure notice|"
    r"returned mail|mail delivery failed|could not be delivered|non.?delivery",
    re.IGNORECASE,
)
_AUTO_SUBJECT = re.compile(
    r"out of (the )?office|automatic reply|auto.?reply|autoresponse|auto.?response|"
    r"away from (my|the) (desk|office)|on (vacation|holiday|leave)|abwesenheit|"
    r"r[ée]ponse automatique|respuesta autom[aá]tica|risposta automatica",
    re.IGNORECASE,
)
#: Free-text bounces (qmail, old Exim, Gmail's plain notices) list recipients after one of these.
_FAILED_LIST = re.compile(
    r"following (address|recipient)\(?e?s\)? failed|could not be delivered to|"
    r"delivery to the following recipient|wasn't delivered to|couldn't be delivered to|"
    r"unable to deliver your message to|permanent error",
    re.IGNORECASE,
)

#: Where the copy of the original begins in a free-text bounce: no recipients past it.
_ORIGINAL_START = re.compile(
    r"(?im)^\s*(?:-{3}|return-path:|received:|message-id:|from:|to:|subject:)"
)


@dataclass(frozen=True)
class Recipient:
    """One per-recipient block of a DSN (or what a free-text bounce says about one address)."""

    address: str  # Final-Recipient (or Original-Recipient), lower case, no "rfc822;"
    action: str  # failed, delayed, delivered, relayed, expanded ("failed" when unstated)
    status: str  # enhanced status code, e.g. "5.1.1" ("" when none was given)
    diagnostic: str = ""
    original: str = ""  # Original-Recipient, when it differs


@dataclass(frozen=True)
class Report:
    """What one incoming message says."""

    kind: str  # "dsn", "complaint", "autoreply" or "unknown"
    reference: str  # its own Message-ID, or sha256 of its bytes
    subject: str = ""
    recipients: tuple[Recipient, ...] = ()
    #: Message-IDs of the original message (from attached headers, In-Reply-To, References).
    message_ids: tuple[str, ...] = ()
    #: Addresses the report was sent to: where our VERP address turns up.
    envelope: tuple[str, ...] = ()
    #: Complaints: Feedback-Type (abuse, fraud...) and the complained-about recipient.
    feedback_type: str = ""
    why: str = ""  # for "unknown": why it was not understood
    extra: dict[str, str] = field(default_factory=dict)


def parse_message(raw: bytes, *, envelope_to: str | None = None) -> Report:
    """Parse one message. ``envelope_to`` is the SMTP recipient when the MTA passes it (an
    MTA pipe's ``$RECIPIENT`` / ``$ORIGINAL_RECIPIENT``). Raises only :class:`DataError`."""
    if not isinstance(raw, bytes | bytearray):
        raise DataError("a report must be bytes")
    if len(raw) > MAX_BYTES:
        raise DataError(f"message of {len(raw)} bytes is larger than {MAX_BYTES}")
    if not raw.strip():
        raise DataError("empty message")
    head = bytes(raw[:2048]).lstrip()
    if b":" not in head.split(b"\n", 1)[0] and not head.startswith(b"From "):
        raise DataError("not an email message (no header on its first line)")
    try:
        msg = email.message_from_bytes(bytes(raw), policy=email.policy.compat32)
        return _report(msg, bytes(raw), envelope_to)
    except (
        email.errors.MessageError,
        LookupError,
        ValueError,
        TypeError,
        AttributeError,
        UnicodeError,
        RecursionError,
    ) as exc:  # the stdlib parser is lenient; what it still chokes on is bad input
        raise DataError(f"cannot read the message: {type(exc).__name__}: {exc}") from None


def header(msg: Message, name: str) -> str:
    """A header as text (RFC 2047 words decoded); "" when absent or undecodable."""
    value = msg.get(name)
    if value is None:
        return ""
    text = str(value)
    with contextlib.suppress(email.errors.HeaderParseError, LookupError, UnicodeError, ValueError):
        text = str(make_header(decode_header(text)))
    return " ".join(text.split())


def _report(msg: Message, raw: bytes, envelope_to: str | None) -> Report:
    own_id = _MESSAGE_ID.search(header(msg, "Message-ID"))
    reference = own_id[0] if own_id else "sha256:" + hashlib.sha256(raw).hexdigest()
    subject = header(msg, "Subject")
    envelope = _envelope(msg, envelope_to)
    content_type = msg.get_content_type()
    report_type = str(msg.get_param("report-type", "") or "").lower()
    if content_type == "multipart/report" and report_type == "feedback-report":
        return _complaint(msg, reference, subject, envelope)
    if content_type == "multipart/report" and report_type == "delivery-status":
        return _dsn(msg, reference, subject, envelope)
    if _find_part(msg, "message/feedback-report") is not None:
        return _complaint(msg, reference, subject, envelope)
    if _find_part(msg, "message/delivery-status") is not None:
        return _dsn(msg, reference, subject, envelope)
    if _is_autoreply(msg, subject):
        return Report("autoreply", reference, subject, envelope=envelope)
    if _looks_like_bounce(msg, subject):
        return _free_text_bounce(msg, reference, subject, envelope)
    return Report("unknown", reference, subject, envelope=envelope, why="not a bounce or complaint")


def _envelope(msg: Message, envelope_to: str | None) -> tuple[str, ...]:
    found: list[str] = [envelope_to] if envelope_to else []
    for name in ("X-Original-To", "Delivered-To", "Envelope-To", "X-Envelope-To", "To"):
        for value in msg.get_all(name) or []:
            found.extend(addr for _, addr in getaddresses([str(value)]) if "@" in addr)
    return tuple(dict.fromkeys(a.strip().lower() for a in found if a.strip()))


def _is_autoreply(msg: Message, subject: str) -> bool:
    auto = header(msg, "Auto-Submitted").lower()
    if auto and not auto.startswith("no"):
        return True
    if msg.get("X-Autoreply") is not None or msg.get("X-Autorespond") is not None:
        return True
    precedence = header(msg, "Precedence").lower()
    if precedence in ("auto_reply", "auto-reply"):
        return True
    if header(msg, "X-Auto-Response-Suppress") and _AUTO_SUBJECT.search(subject):
        return True
    return bool(_AUTO_SUBJECT.search(subject))


def _looks_like_bounce(msg: Message, subject: str) -> bool:
    sender = header(msg, "From")
    return bool(
        _BOUNCE_FROM.search(sender)
        or _BOUNCE_SUBJECT.search(subject)
        or msg.get("X-Failed-Recipients") is not None
    )


def _find_part(msg: Message, content_type: str) -> Message | None:
    for part in _walk(msg):
        if part.get_content_type() == content_type:
            return part
    return None


def _walk(msg: Message, depth: int = 0) -> list[Message]:
    """Every part, depth first, not descending into attached messages past a few levels."""
    parts = [msg]
    if depth > 8:
        return parts
    payload = msg.get_payload()
    if isinstance(payload, list):
        for sub in payload:
            if isinstance(sub, Message):
                parts.extend(_walk(sub, depth + 1))
    return parts


def _text(part: Message) -> str:
    """A non-multipart part's payload as text (transfer encoding undone)."""
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, errors="replace")
        except LookupError:
            return payload.decode("utf-8", errors="replace")
    raw = part.get_payload()
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list):  # stdlib parsed it into sub-messages already
        return "\n\n".join(sub.as_string() for sub in raw if isinstance(sub, Message))
    return ""


def _field_blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list) and all(isinstance(p, Message) for p in payload):
        return list(payload)
    text = _text(part).replace("\r\n", "\n")
    parser = HeaderParser(policy=email.policy.compat32)
    return [parser.parsestr(block.strip() + "\n") for block in re.split(r"\n\s*\n", text)]


def _attached_ids(msg: Message) -> tuple[str, ...]:
    """Message-IDs of the original: from message/rfc822 or text/rfc822-headers parts,
    and from In-Reply-To / References of the report itself."""
    found: list[str] = []
    for part in _walk(msg)[1:]:
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                found.extend(_MESSAGE_ID.findall(header(inner[0], "Message-ID")))
            elif isinstance(inner, str):
                found.extend(_ids_in_headers(inner))
        elif kind in ("text/rfc822-headers", "message/rfc822-headers", "text/rfc822-header"):
            found.extend(_ids_in_headers(_text(part)))
    for name in ("In-Reply-To", "References"):
        found.extend(_MESSAGE_ID.findall(header(msg, name)))
    return tuple(dict.fromkeys(found))


def _ids_in_headers(text: str) -> list[str]:
    headers = HeaderParser(policy=email.policy.compat32).parsestr(text, headersonly=True)
    return _MESSAGE_ID.findall(header(headers, "Message-ID"))


def _original_envelope(msg: Message) -> list[str]:
    """Return-Path of attached original headers: our VERP address, when the MTA kept it."""
    found: list[str] = []
    for part in _walk(msg)[1:]:
        kind = part.get_content_type()
        inner: Message | None = None
        if kind in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                inner = payload[0]
        elif kind in ("text/rfc822-headers", "message/rfc822-headers"):
            inner = HeaderParser(policy=email.policy.compat32).parsestr(_text(part))
        if inner is not None:
            for name in ("Return-Path", "X-Envelope-From"):
                found.extend(a.lower() for _, a in getaddresses([header(inner, name)]) if a)
    return found


def _address(value: str) -> str:
    """``rfc822; Jo@Example.org`` -> ``jo@example.org`` ("" when it holds no address)."""
    _, _, text = value.rpartition(";")
    match = _ADDRESS.search(text or value)
    return match[0].lower() if match else ""


def best_status(status: str, diagnostic: str) -> str:
    """The enhanced status code to classify by: the Status field, unless it is a generic
    ``X.0.0`` and the remote server's diagnostic names a more precise one."""
    field_match = _STATUS.search(status)
    diag_match = _STATUS.search(diagnostic)
    if field_match and not (field_match[0].endswith(".0.0") and diag_match):
        return field_match[0]
    if diag_match and (not field_match or diag_match[1] == field_match[1]):
        return diag_match[0]
    return field_match[0] if field_match else ""


def _dsn(msg: Message, reference: str, subject: str, envelope: tuple[str, ...]) -> Report:
    part = _find_part(msg, "message/delivery-status")
    recipients: list[Recipient] = []
    if part is not None:
        blocks = _field_blocks(part)
        for block in blocks[1:] if len(blocks) > 1 else blocks:
            final = _address(header(block, "Final-Recipient"))
            original = _address(header(block, "Original-Recipient"))
            if not final and not original:
                continue
            diagnostic = header(block, "Diagnostic-Code")
            recipients.append(
                Recipient(
                    address=final or original,
                    action=header(block, "Action").lower() or "failed",
                    status=best_status(header(block, "Status"), diagnostic),
                    diagnostic=diagnostic[:500],
                    original=original if original != final else "",
                )
            )
    if not recipients:  # a report part with no usable recipient block: fall back to the text
        return _free_text_bounce(msg, reference, subject, envelope)
    ids = _attached_ids(msg)
    return Report(
        "dsn",
        reference,
        subject,
        recipients=tuple(recipients),
        message_ids=ids,
        envelope=tuple(dict.fromkeys([*envelope, *_original_envelope(msg)])),
    )


def _complaint(msg: Message, reference: str, subject: str, envelope: tuple[str, ...]) -> Report:
    part = _find_part(msg, "message/feedback-report")
    fields: dict[str, str] = {}
    if part is not None:
        for block in _field_blocks(part):
            for name in ("Feedback-Type", "Original-Rcpt-To", "Removal-Recipient", "User-Agent"):
                value = header(block, name)
                if value and name not in fields:
                    fields[name] = value
    rcpt = _address(fields.get("Original-Rcpt-To", "") or fields.get("Removal-Recipient", ""))
    recipients = (Recipient(rcpt, "complained", ""),) if rcpt else ()
    return Report(
        "complaint",
        reference,
        subject,
        recipients=recipients,
        message_ids=_attached_ids(msg),
        envelope=tuple(dict.fromkeys([*envelope, *_original_envelope(msg)])),
        feedback_type=fields.get("Feedback-Type", "abuse").lower()[:40] or "abuse",
    )


def _free_text_bounce(
    msg: Message, reference: str, subject: str, envelope: tuple[str, ...]
) -> Report:
    """A bounce without a machine-readable report: the recipients from X-Failed-Recipients or
    the lines after "the following address(es) failed", the first status code in the text."""
    body = "\n".join(
        _text(part)
        for part in _walk(msg)
        if part.get_content_maintype() == "text" and part.get_content_subtype() == "plain"
    )[:200_000]
    addresses = [_address(a) for a in header(msg, "X-Failed-Recipients").split(",")]
    listed = _FAILED_LIST.search(body)
    if not any(addresses) and listed:
        window = body[listed.end() : listed.end() + 2000]
        window = _ORIGINAL_START.split(window, maxsplit=1)[0]
        addresses = [a.lower() for a in _ADDRESS.findall(window)[:5]]
    addresses = [a for a in dict.fromkeys(addresses) if a and a not in envelope]
    if not addresses:
        return Report(
            "unknown", reference, subject, envelope=envelope, why="a bounce naming no recipient"
        )
    status_match = _STATUS.search(body)
    status = status_match[0] if status_match else _status_from_smtp(body)
    line = next((ln.strip() for ln in body.splitlines() if status and status in ln), "")
    recipients = tuple(
        Recipient(a, "delayed" if status.startswith("4") else "failed", status, line[:500])
        for a in addresses
    )
    return Report(
        "dsn",
        reference,
        subject,
        recipients=recipients,
        message_ids=_attached_ids(msg),
        envelope=tuple(dict.fromkeys([*envelope, *_original_envelope(msg)])),
    )


def _status_from_smtp(text: str) -> str:
    """``550 ...`` -> ``5.0.0``, for replies that carry no enhanced code."""
    match = _SMTP_CODE.search(text)
    return f"{match[1][0]}.0.0" if match else ""
