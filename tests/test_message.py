"""Message building: quoted-printable with protected tokens, splicing, header safety."""

from __future__ import annotations

import datetime as dt
import email
import email.header
import email.policy
import email.quoprimime
import quopri
import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from digest.config import Settings
from digest.errors import MessageError
from digest.mail.headers import subject_header, to_header
from digest.mail.message import (
    MessageIds,
    Recipient,
    build_template,
    message_problems,
    new_placeholder,
    qp_encode,
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


def reference_qp(text: str, protected: str = "") -> bytes:
    """Quoted-printable written out rule by rule, slowly: what :func:`qp_encode` must give,
    byte for byte. Units (an octet as it is or escaped, or a whole ``protected``) are packed
    into lines of at most 75 characters, a soft break ``=`` after each but the last."""
    lines = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        units: list[str] = []
        i = 0
        while i < len(line):
            if protected and line.startswith(protected, i):
                units.append(protected)
                i += len(protected)
                continue
            for octet in line[i].encode("utf-8"):
                plain = 32 <= octet <= 126 and octet != ord("=")
                units.append(chr(octet) if plain else f"={octet:02X}")
            i += 1
        if units and units[-1] == " ":  # rule 3: no white space before a line break
            units[-1] = "=20"
        while True:
            if units[:1] == ["."]:  # SMTP dot-stuffing
                units[0] = "=2E"
            elif units[:5] == list("From "):  # mbox ">From " quoting
                units[0] = "=46"
            if sum(map(len, units)) <= 75:
                lines.append("".join(units))
                break
            taken = size = 0
            while size + len(units[taken]) <= 75:
                size += len(units[taken])
                taken += 1
            lines.append("".join(units[:taken]) + "=")
            units = units[taken:]
    return "\r\n".join(lines).encode("ascii")


QP_TEXT = st.lists(
    st.one_of(
        st.text(),
        st.just(PLACEHOLDER),
        st.sampled_from([".", "=", " ", "  ", "\t", "\n", "\r\n", "\n.", "From ", "\nFrom ", "é"]),
        st.text(alphabet=" ab", min_size=60, max_size=200),
    ),
    max_size=16,
).map("".join)


@given(QP_TEXT)
def test_qp_is_byte_exact_with_the_reference_and_decodes_back_with_the_stdlib(text: str) -> None:
    encoded = qp_encode(text, PLACEHOLDER)
    assert encoded == reference_qp(text, PLACEHOLDER)
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = encoded.split(b"\r\n")
    assert all(len(line) <= 76 for line in lines)
    assert not any(line.endswith((b" ", b"\t")) for line in lines)
    assert not any(line.startswith((b".", b"From ")) for line in lines)
    assert quopri.decodestring(encoded.replace(b"\r\n", b"\n")).decode("utf-8") == normalised
    decoded = email.quoprimime.body_decode(encoded.decode("ascii"))
    assert decoded.encode("latin-1").decode("utf-8") == normalised


def test_qp_leaves_spaces_alone_except_before_a_line_break() -> None:
    html = '<td style="padding:0 24px; color:#111">Read the summary </td> \n' * 3
    encoded = qp_encode(html)
    assert encoded.count(b"=20") == 3  # only the space ending each line
    assert (
        encoded.count(b'<td style=3D"padding:0 24px; color:#111">Read the summary </td>=20\r\n')
        == 3
    )
    assert qp_encode("From the lab\n. and\nFrom") == b"=46rom the lab\r\n=2E and\r\nFrom"


def test_the_html_part_of_a_message_reads_back_whole_with_its_spaces(settings: Settings) -> None:
    placeholder = new_placeholder()
    html = (
        '<!doctype html><html lang="en"><p>Two  spaces, a tab\there and a space at the end </p>'
        f'\n<a href="{settings.base_url}/u/{placeholder}">Unsubscribe</a></html>'
    )
    text = f"Hello \nFrom the editors\nUnsubscribe: {settings.base_url}/u/{placeholder}\n"
    template = build_template(
        settings, Rendered("s", html, text), placeholder=placeholder, date=DATE
    )
    token = new_token()
    raw = template.personalize(Recipient("a@example.org", None, token, "<a@b.c>"))
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    plain, rich = (part.get_content().replace("\r\n", "\n") for part in msg.iter_parts())
    assert plain == text.replace(placeholder, token)
    assert rich == html.replace(placeholder, token)
    assert b"Two  spaces, a tab=09here" in raw and b"Hello=20\r\n=46rom the editors" in raw


LONG_ASCII = (
    "Pharmacology, Neurology, Rehabilitation and Quality of life: 14 new summaries this week"
)
LONG_UNICODE = (
    "Neue Forschung: Rückenmarksverletzung – Übersicht für Patientinnen und Angehörige, "
    "Woche 49 (Pharmakologie, Neurologie) ≥ α"
)


def _subject_of(raw: bytes) -> str:
    msg = email.message_from_bytes(raw + b"\r\n", policy=email.policy.default)
    return str(msg["Subject"])


@pytest.mark.parametrize(
    "subject",
    [
        LONG_ASCII,
        "Pharmacology, Neurology and Rehabilitation: 12 new summaries this week",  # 79 columns
        "x" * 120,
        LONG_UNICODE,
        "Übersicht " * 12,
        "3 nouvelles synthèses en Pharmacologie ≥ α",
    ],
)
def test_subjects_fold_at_spaces_and_read_back_exactly(subject: str) -> None:
    raw = subject_header(subject)
    lines = raw.removesuffix(b"\r\n").split(b"\r\n")
    assert all(len(line) <= 78 for line in lines)
    assert lines[0].startswith(b"Subject: ") and len(lines[0]) > len(b"Subject: ")
    assert all(line.startswith(b" ") and not line.startswith(b"  ") for line in lines[1:])
    assert _subject_of(raw) == " ".join(subject.split())
    assert b"=?" not in raw or not subject.isascii() or len(max(subject.split(), key=len)) > 69


def test_a_long_ascii_subject_is_folded_only_at_spaces() -> None:
    raw = subject_header(LONG_ASCII)
    assert raw == (
        b"Subject: Pharmacology, Neurology, Rehabilitation and Quality of life: 14 new\r\n"
        b" summaries this week\r\n"
    )
    assert raw.replace(b"\r\n ", b" ") == f"Subject: {LONG_ASCII}\r\n".encode()


def test_a_long_non_ascii_subject_becomes_encoded_words_within_78_columns() -> None:
    raw = subject_header(LONG_UNICODE)
    words = re.findall(rb"=\?utf-8\?q\?[^?]*\?=", raw)
    assert words and all(len(word) <= 75 for word in words)
    assert b"Neue Forschung: " in raw and b" Patientinnen und " in raw  # ASCII words stay
    assert _subject_of(raw) == LONG_UNICODE


@given(st.text(max_size=300))
def test_any_subject_reads_back_exactly_on_lines_of_78(subject: str) -> None:
    raw = subject_header(subject)
    lines = raw.removesuffix(b"\r\n").split(b"\r\n")
    assert raw.isascii() and all(len(line) <= 78 for line in lines)
    assert b"\r" not in raw.replace(b"\r\n", b"") and b"\n" not in raw.replace(b"\r\n", b"")
    assert _subject_of(raw) == " ".join(subject.split())


def test_long_subjects_of_a_whole_message_parse_back(settings: Settings) -> None:
    for subject in (LONG_ASCII, LONG_UNICODE):
        template = build(settings, subject=subject)
        raw = template.personalize(Recipient("a@example.org", None, new_token(), "<a@b.c>"))
        head = raw.split(b"\r\n\r\n", 1)[0]
        assert b"Subject:\r\n" not in head
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert str(msg["Subject"]) == subject


def test_the_links_email_folds_a_long_subject_as_the_digest_does(settings: Settings) -> None:
    from dataclasses import replace

    from digest.notices.confirmation import ConfirmationRenderer
    from digest.web.mailer import build_links_message, render_links

    settings = replace(settings, site_name="Forschung zu Rückenmarksverletzungen für Angehörige")
    rendered = render_links(ConfirmationRenderer(settings), "t" * 43)
    _, raw = build_links_message(settings, rendered, to="a@example.org", name=None, now=DATE)
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"Subject:\r\n" not in head and all(len(line) <= 78 for line in head.split(b"\r\n"))
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert len(msg.get_all("Subject") or []) == 1
    assert msg["Subject"] == f"Your links for the {settings.site_name} digest"
