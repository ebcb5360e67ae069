"""VERP: each delivery's envelope sender maps back to its ledger id; forged, damaged or
foreign addresses map to nothing, and parsing never raises."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from digest.config import Settings
from digest.errors import ConfigError
from digest.mail.verp import MAX_ID, envelope_sender, parse_verp, verp_address
from tests.conftest import make_settings

SECRET = b"0123456789abcdef0123456789abcdef"
SECRETS = st.binary(min_size=1, max_size=64)


def test_address_shape_and_round_trip() -> None:
    address = verp_address("bounces", "example.org", 1234, SECRET)
    assert re.fullmatch(r"bounces\+1234-[0-9a-f]{8}@example\.org", address)
    assert parse_verp(address, SECRET) == 1234
    assert parse_verp(f"<{address}>", SECRET) == 1234
    assert parse_verp(f"  {address.upper()}\r\n", SECRET) == 1234  # case changed in transit
    assert parse_verp(verp_address("bounces", "example.org", 1235, SECRET), SECRET) == 1235
    assert verp_address("bounces", "example.org", 1234, SECRET) == address  # stable


@given(st.integers(min_value=0, max_value=MAX_ID), SECRETS)
def test_every_id_round_trips(delivery_id: int, secret: bytes) -> None:
    address = verp_address("bounces+digest", "bounce.example.org", delivery_id, secret)
    assert parse_verp(address, secret) == delivery_id


@given(
    st.integers(min_value=0, max_value=MAX_ID), st.text("0123456789abcdef", min_size=8, max_size=8)
)
def test_a_forged_check_is_refused(delivery_id: int, check: str) -> None:
    real = verp_address("bounces", "example.org", delivery_id, SECRET)
    forged = re.sub(r"-[0-9a-f]{8}@", f"-{check}@", real)
    assert parse_verp(forged, SECRET) == (delivery_id if forged == real else None)


def test_another_id_with_the_same_check_is_refused() -> None:
    address = verp_address("bounces", "example.org", 41, SECRET)
    assert parse_verp(address.replace("+41-", "+42-"), SECRET) is None


@given(st.integers(min_value=0, max_value=MAX_ID), SECRETS, SECRETS)
def test_wrong_secret_is_refused(delivery_id: int, secret: bytes, other: bytes) -> None:
    assume(other != secret)  # a chance match of 8 hex digits is 1 in 2**32
    address = verp_address("bounces", "example.org", delivery_id, secret)
    assert parse_verp(address, other) is None


@pytest.mark.parametrize(
    "address",
    [
        "",
        "bounces@example.org",
        "bounces+12@example.org",
        "bounces+12-@example.org",
        "bounces+12-abcdef1@example.org",
        "bounces+12-abcdef123@example.org",
        "bounces+12-abcdefgh@example.org",
        "bounces+012-abcdef12@example.org",
        "bounces+-1-abcdef12@example.org",
        "bounces+12345678901234567890-abcdef12@example.org",
        "+12-abcdef12@example.org",
        "bounces+12-abcdef12@",
        "bounces+12-abcdef12@a@b",
        "bounces+12-abcdef12",
        "bounces+१२-abcdef12@example.org",
        "x" * 400 + "+1-abcdef12@example.org",
        "<<bounces+12-abcdef12@example.org>>",
    ],
)
def test_malformed_addresses_give_none(address: str) -> None:
    assert parse_verp(address, SECRET) is None


def test_non_text_and_empty_secret_give_none() -> None:
    address = verp_address("bounces", "example.org", 7, SECRET)
    assert parse_verp(None, SECRET) is None  # type: ignore[arg-type]
    assert parse_verp(address.encode(), SECRET) is None  # type: ignore[arg-type]
    assert parse_verp(address, b"") is None


@given(st.text(max_size=400), SECRETS)
def test_parse_never_raises_on_any_text(address: str, secret: bytes) -> None:
    result = parse_verp(address, secret)
    assert result is None or 0 <= result <= MAX_ID


@given(st.from_regex(r"\A<?[a-z+]{0,4}\+[0-9-]{0,22}-?[0-9a-fA-F]{0,9}@[a-z.@]{0,12}>?\Z"), SECRETS)
def test_parse_never_raises_on_near_misses(address: str, secret: bytes) -> None:
    result = parse_verp(address, secret)
    assert result is None or 0 <= result <= MAX_ID


@pytest.mark.parametrize(
    ("local", "domain", "delivery_id", "secret"),
    [
        ("bounces", "example.org", -1, SECRET),
        ("bounces", "example.org", MAX_ID + 1, SECRET),
        ("bounces", "example.org", True, SECRET),
        ("bounces", "example.org", 1, b""),
        ("", "example.org", 1, SECRET),
        ("bounces", "", 1, SECRET),
        ("bounces@x", "example.org", 1, SECRET),
        ("boun ces", "example.org", 1, SECRET),
    ],
)
def test_bad_arguments_are_refused(
    local: str, domain: str, delivery_id: int, secret: bytes
) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        verp_address(local, domain, delivery_id, secret)


def test_envelope_sender_is_the_sender_without_bounce_address(settings: Settings) -> None:
    assert settings.bounce_address is None
    assert envelope_sender(settings, 5) == settings.sender_address == "digest@example.org"


def test_envelope_sender_is_verp_with_bounce_address(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, bounce_address="Bounces@Bounce.Example.org", verp_secret="s" * 32
    )
    sender = envelope_sender(settings, 9876)
    assert re.fullmatch(r"Bounces\+9876-[0-9a-f]{8}@bounce\.example\.org", sender)
    assert parse_verp(sender, ("s" * 32).encode()) == 9876
    assert "s" * 32 not in repr(settings)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"bounce_address": "bounces@example.org"}, "DIGEST_VERP_SECRET.*secrets.token_hex"),
        (
            {"bounce_address": "bounces@example.net", "verp_secret": "s" * 32},
            "DIGEST_BOUNCE_ADDRESS.*'example.net' must be in the sender's domain",
        ),
        (
            {"bounce_address": "b" * 40 + "@example.org", "verp_secret": "s" * 32},
            "DIGEST_BOUNCE_ADDRESS.*at most 35 characters",
        ),
        ({"bounce_address": "not an address", "verp_secret": "s" * 32}, "DIGEST_BOUNCE_ADDRESS"),
        ({"bounce_address": "bounces@example.org", "verp_secret": "short"}, "DIGEST_VERP_SECRET"),
    ],
)
def test_bounce_settings_are_checked(
    tmp_path: Path, overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        make_settings(tmp_path, **overrides)
