"""The report parser and classifier on their own: pure, and never raising anything but
DataError (a hypothesis property)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.bounces.classify import classify
from digest.bounces.parse import parse_message
from digest.errors import DataError

DATA = Path(__file__).parent / "data" / "bounces"


def load(name: str) -> bytes:
    text = (DATA / name).read_text(encoding="utf-8")
    text = text.replace("{verp}", "bounces+7-0badc0de@example.org")
    text = text.replace("{rcpt}", "Jo@Reader.example").replace("{message_id}", "<d.1@example.org>")
    return text.encode("utf-8")


@pytest.mark.parametrize(
    ("name", "kind", "status", "classified"),
    [
        ("postfix_hard.eml", "dsn", "5.1.1", "hard"),
        ("exim_soft.eml", "dsn", "4.2.2", "soft"),
        ("gmail_hard.eml", "dsn", "5.1.1", "hard"),  # Status 5.0.0, real code in diagnostic
        ("exchange_hard.eml", "dsn", "5.1.10", "hard"),
        ("policy_blocklist.eml", "dsn", "5.7.1", "policy"),
        ("qmail_plain.eml", "dsn", "5.1.1", "hard"),
    ],
)
def test_mta_styles(name: str, kind: str, status: str, classified: str) -> None:
    report = parse_message(load(name))
    assert report.kind == kind
    assert [r.address for r in report.recipients] == ["jo@reader.example"]
    (recipient,) = report.recipients
    assert recipient.status == status
    assert classify(recipient.action, recipient.status, recipient.diagnostic) == classified


def test_complaint_and_auto_replies() -> None:
    arf = parse_message(load("arf_complaint.eml"))
    assert (arf.kind, arf.feedback_type) == ("complaint", "abuse")
    assert arf.message_ids == ("<d.1@example.org>",)
    assert "bounces+7-0badc0de@example.org" in arf.envelope
    assert parse_message(load("out_of_office.eml")).kind == "autoreply"
    assert parse_message(load("vacation_plain.eml")).kind == "autoreply"


@pytest.mark.parametrize(
    ("action", "status", "diagnostic", "kind"),
    [
        ("failed", "5.1.1", "", "hard"),
        ("failed", "5.1.6", "", "hard"),
        ("failed", "5.1.7", "bad sender address", "policy"),
        ("failed", "5.7.26", "unauthenticated email", "policy"),
        ("delayed", "4.7.0", "", "policy"),
        ("failed", "4.4.7", "", "soft"),  # the MTA gave up on a temporary failure
        ("delayed", "4.2.2", "", "soft"),
        ("failed", "5.2.2", "mailbox full", "soft"),
        ("failed", "5.0.0", "550 Sorry, no such user", "hard"),
        ("failed", "5.0.0", "554 rejected: listed at Spamhaus", "policy"),
        ("failed", "", "", "soft"),
        ("delivered", "2.0.0", "", "ignored"),
        ("relayed", "", "", "ignored"),
    ],
)
def test_classification(action: str, status: str, diagnostic: str, kind: str) -> None:
    assert classify(action, status, diagnostic) == kind


@pytest.mark.parametrize(
    "raw", [b"", b"   \n", b"\x00\x01garbage", (DATA / "garbage.bin").read_bytes()]
)
def test_not_mail_is_a_data_error(raw: bytes) -> None:
    with pytest.raises(DataError):
        parse_message(raw)


_HEADERISH = st.sampled_from(
    [
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\n",
        b"Content-Type: multipart/report; report-type=feedback-report; boundary=b\n",
        b"Content-Type: message/delivery-status\n",
        b"Content-Transfer-Encoding: base64\n",
        b"Subject: =?utf-8?b?////?=\n",
        b"From: MAILER-DAEMON@x\n",
        b"X-Failed-Recipients: a@b.c, \xff\n",
        b"Final-Recipient: rfc822;\n",
        b"Status: 5.1.1\n",
        b"Auto-Submitted: auto-replied\n",
        b"--b\n",
        b"--b--\n",
        b"\n",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_HEADERISH, st.binary(max_size=40)), max_size=30))
def test_parser_never_raises_anything_but_data_error(chunks: list[bytes]) -> None:
    raw = b"From: x@y.z\n" + b"".join(chunks)
    with contextlib.suppress(DataError):
        parse_message(raw)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(raw: bytes) -> None:
    with contextlib.suppress(DataError):
        parse_message(raw)
