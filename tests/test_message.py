"""Message building: quoted-printable with protected tokens, splicing, header safety."""

from __future__ import annotations

import datetime as dt
import email
import email.header
import email.policy
import quopri
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from digest.config import Settings
from digest.errors import MessageError
from digest.mail.message import (
    MessageIds,
    Recipient,
    build_template,
    message_problems,
    new_placeholder,
    qp_encode,
    to_header,
)
from digest.render.renderer import Rendered
from subscribers.tokens import new_token

DATE = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
IDS = MessageIds(time.time_ns)


PLACEHOLDER = new_placeholder()


@given(
    st.lists(
        st.one_of(st.text(), st.just(PLACEHOLDER), st.sampled_from([".", "=", " ", "\n."])),
        min_size=1,
        max_size=12,
    )
)
def test_qp_round_trips_and_never_splits_the_placeholder(pieces: list[str]) -> None:
    text = "".join([*pieces, PLACEHOLDER])
    encoded = qp_encode(text, PLACEHOLDER)
    lines = encoded.split(b"\r\n")
    assert all(len(line) <= 76 for line in lines)
    assert not any(line.startswith(b".") for line in lines)
    assert encoded.count(PLACEHOLDER.encode()) == text.count(PLACEHOLDER)
    token = new_token()
    spliced = encoded.replace(PLACEHOLDER.encode(), token.encode())
    decoded = quopri.decodestring(spliced.replace(b"\r\n", b"\n")).decode("utf-8")
    normalised = text.replace("\r\n", "\n").replace("\r", "\n").replace(PLACEHOLDER, token)
    assert decoded == normalised


def rendered(subject: str = "3 new summaries in Pharmacology", text: str = "", html: str = ""):
    def fill(body: str, placeholder: str) -> str:
        return body.replace("TOKEN", placeholder)

    return (
        subject,
        fill,
        text or "Hello\nUnsubscribe: https://example.org/digest/u/TOKEN\n",
        (
            html
            or '<!doctype html><html lang="en"><a href="https://example.org/digest/u/TOKEN">'
            "Unsubscribe</a></html>"
        ),
    )


def build(
    settings: Settings, subject: str = "3 new summaries in Pharmacology", text: str | None = None
):
    placeholder = new_placeholder()
    text = text or f"Hello ü\nUnsubscribe: {settings.base_url}/u/{placeholder}\n"
    html = (
        f'<!doctype html><html lang="en"><a href="{settings.base_url}/u/{placeholder}">'
        "Unsubscribe</a> café</html>"
    )
    return build_template(
        settings, Rendered(subject, html, text), placeholder=placeholder, date=DATE
    )


def test_personalised_bytes_parse_back_with_every_value(settings: Settings) -> None:
    template = build(settings)
    token = new_token()
    mid = IDS.one("2026-W48", settings.sender_domain)
    raw = template.personalize(Recipient("ada@example.org", "Ada Lovelace", token, mid))
    assert message_problems(raw, token=token, base_url=settings.base_url) == []
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["To"] == "Ada Lovelace <ada@example.org>"
    assert msg["Message-ID"] == mid
    assert msg["Date"] == "Mon, 23 Nov 2026 08:00:00 +0000"
    assert msg["List-Unsubscribe"] == f"<{settings.base_url}/u/{token}>"
    text, html = (p.get_content() for p in msg.iter_parts())
    assert f"{settings.base_url}/u/{token}" in text and "ü" in text
    assert f'href="{settings.base_url}/u/{token}"' in html and "café" in html


def test_two_recipients_get_different_message_ids_and_tokens(settings: Settings) -> None:
    template = build(settings)
    a = template.personalize(
        Recipient("a@example.org", None, new_token(), IDS.one("k", "example.org"))
    )
    b = template.personalize(
        Recipient("b@example.org", None, new_token(), IDS.one("k", "example.org"))
    )
    ma, mb = (email.message_from_bytes(x, policy=email.policy.default) for x in (a, b))
    assert ma["Message-ID"] != mb["Message-ID"]
    assert ma["List-Unsubscribe"] != mb["List-Unsubscribe"]


def _parsed_to(line: bytes) -> tuple[str, str]:
    """The display name as RFC 2047 §6.2 reads it (white space between adjacent
    encoded-words ignored; Python's header parser keeps it, so it is not used for the name)
    and the address as Python's parser reads it."""
    msg = email.message_from_bytes(line + b"Subject: x\r\n\r\n", policy=email.policy.default)
    assert msg["Bcc"] is None
    (address,) = msg["To"].addresses
    value = line.decode("ascii").removeprefix("To: ").replace("\r\n ", " ").strip()
    phrase, _, _ = value.rpartition(" <")
    if phrase.startswith('"'):  # a quoted-string: a plain name as it is
        return phrase[1:-1], address.addr_spec
    return str(email.header.make_header(email.header.decode_header(phrase))), address.addr_spec


def test_message_ids_sort_by_creation_and_cannot_be_guessed() -> None:
    ids = [IDS.one("2026-W48", "example.org") for _ in range(1000)]
    ids += IDS.new("2026-W48", "example.org", 1000)  # a batch, as planning makes
    ids.append(IDS.one("2026-W48", "example.org"))
    assert ids == sorted(ids)  # the ledger's unique index grows at one end
    assert len(set(ids)) == len(ids)
    random_parts = {mid.split(".")[-2].split("@")[0] for mid in ids}
    assert len(random_parts) == len(ids) and all(len(p) == 20 for p in random_parts)


def test_message_ids_increase_when_the_injected_clock_stands_still_or_steps_back() -> None:
    readings = iter([5_000, 5_000, 4_000])
    ids = MessageIds(lambda: next(readings), noise=lambda n: "ab" * n)
    made = [ids.one("2026-W48", "example.org"), *ids.new("2026-W48", "example.org", 2)]
    made.append(ids.one("2026-W48", "example.org"))
    stamps = [int(mid.split(".")[2], 16) for mid in made]
    assert stamps == [5_000, 5_001, 5_002, 5_003]
    assert made[0] == "<digest.2026-W48.0000000000001388.abababababababababab@example.org>"


@pytest.mark.parametrize(
    "name",
    ["Evil\r\nBcc: victim@example.org", "Zoë Müller-Łukasiewicz", 'Quote " and \\ back', "x" * 150],
)
def test_display_names_never_inject_headers(name: str) -> None:
    line = to_header("reader@example.org", name)
    assert line.endswith(b"\r\n")
    assert all(len(physical) <= 78 for physical in line.split(b"\r\n"))
    assert b"\n" not in line[:-2].replace(b"\r\n ", b"")
    assert _parsed_to(line) == (" ".join(name.split()), "reader@example.org")


@given(st.text(max_size=200))
def test_any_display_name_reads_back_exactly(name: str) -> None:
    line = to_header("reader@example.org", name)
    assert all(len(physical) <= 78 for physical in line.split(b"\r\n"))
    assert line.endswith(b"\r\n") and b"\n" not in line[:-2].replace(b"\r\n ", b"")
    assert _parsed_to(line) == (" ".join(name.split()), "reader@example.org")


def test_non_ascii_names_become_encoded_words() -> None:
    line = to_header("zoe@example.org", "Zoë Fischer")
    assert line == b"To: =?utf-8?q?Zo=C3=AB_Fischer?= <zoe@example.org>\r\n"
    assert _parsed_to(line) == ("Zoë Fischer", "zoe@example.org")


def test_crlf_in_subject_never_reaches_the_header_raw(settings: Settings) -> None:
    template = build(settings, subject="Week\r\nBcc: victim@example.org")
    raw = template.personalize(Recipient("a@example.org", None, new_token(), "<a@b.c>"))
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Bcc"] is None
    assert "victim" in str(msg["Subject"])


def test_a_template_without_the_token_in_a_body_is_refused(settings: Settings) -> None:
    placeholder = new_placeholder()
    with pytest.raises(MessageError, match="text/plain part lacks"):
        build_template(
            settings,
            Rendered("s", f'<a href="{settings.base_url}/u/{placeholder}">u</a>', "no link"),
            placeholder=placeholder,
            date=DATE,
        )


def test_non_ascii_subject_and_sender_are_encoded_words_only_in_phrases(
    settings: Settings,
) -> None:
    from dataclasses import replace

    settings = replace(settings, sender_name="Récherche Digest – Übersicht")
    template = build(settings, subject="3 nouvelles synthèses en Pharmacologie ≥ α")
    raw = template.personalize(Recipient("a@example.org", None, new_token(), "<a@b.c>"))
    head = raw.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        assert len(line) <= 78 or line.startswith(b"List-Unsubscribe:")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(msg["Subject"]) == "3 nouvelles synthèses en Pharmacologie ≥ α"
    assert msg["From"].addresses[0].display_name == "Récherche Digest – Übersicht"
    assert msg["From"].addresses[0].addr_spec == settings.sender_address
    assert b"=?" not in b"".join(h for h in head.split(b"\r\n") if h.startswith(b"List-Unsub"))
