"""DKIM: real digest messages signed with RSA-2048 and ed25519 keys verify with dkimpy; the
one-click unsubscribe headers are covered and over-signed; misaligned or broken keys are
refused at start-up with an error naming the setting."""

from __future__ import annotations

import base64
import datetime as dt
import pickle
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import dkim
import nacl.signing
import pytest

from digest.config import Settings
from digest.edition.passes import outbound_for
from digest.errors import ConfigError
from digest.mail.dkim import DkimKey, DkimSigner, dns_records
from digest.mail.message import Recipient, build_template, message_problems, new_placeholder
from digest.render.renderer import Rendered
from subscribers.tokens import new_token
from tests.conftest import make_settings

DATE = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
ALGORITHMS = ("rsa-sha256", "ed25519-sha256")
_ED25519_PKCS8 = bytes.fromhex("302e020100300506032b657004220420")


def openssl(*args: str) -> bytes:
    if shutil.which("openssl") is None:
        pytest.skip("RSA keys are generated with the openssl command, which is not installed")
    return subprocess.run(["openssl", *args], check=True, capture_output=True).stdout


def ed25519_pem(seed: bytes) -> bytes:
    body = base64.b64encode(_ED25519_PKCS8 + seed).decode()
    return f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n".encode()


@pytest.fixture(scope="module")
def keys() -> dict[str, bytes]:
    """One RSA-2048 and one ed25519 PEM private key for the whole module."""
    return {
        "rsa-sha256": openssl("genrsa", "2048"),
        "ed25519-sha256": ed25519_pem(bytes(nacl.signing.SigningKey.generate())),
    }


def dkim_settings(tmp_path: Path, pem: bytes, algorithm: str, **overrides: str) -> Settings:
    (tmp_path / "dkim.pem").write_bytes(pem)
    values = {"dkim_selector": "sel", "dkim_key_file": "dkim.pem", "dkim_algorithm": algorithm}
    return make_settings(tmp_path, **(values | overrides))


def personalised(settings: Settings) -> tuple[bytes, str]:
    placeholder = new_placeholder()
    link = f"{settings.base_url}/u/{placeholder}"
    template = build_template(
        settings,
        Rendered(
            "3 new summaries in Pharmacology",
            f'<!doctype html><html lang="en"><a href="{link}">Unsubscribe</a> café</html>',
            f"Hello ü\nUnsubscribe: {link}\n",
        ),
        placeholder=placeholder,
        date=DATE,
    )
    token = new_token()
    mid = f"<digest.2026-W48.abc@{settings.sender_domain}>"
    return template.personalize(Recipient("ada@example.net", "Ada Lovelace", token, mid)), token


def dns_stub(records: list[str]) -> Callable[..., bytes | None]:
    """What a resolver would answer for the zone-file lines of :func:`dns_records`."""
    table = {}
    for line in records:
        name, _, rest = line.partition(" IN TXT ")
        table[name.encode()] = "".join(re.findall(r'"([^"]*)"', rest)).encode()
    return lambda name, timeout=5: table.get(name)


def tags(signed: bytes) -> dict[str, str]:
    header = signed.split(b"\r\n\r\n")[0].decode().split("\r\n")
    lines = [header[0]]
    lines += [line for line in header[1:] if line[:1] in (" ", "\t")]  # its continuation
    value = "".join(lines).partition(":")[2]
    return {
        k.strip(): re.sub(r"\s+", "", v) for k, _, v in (t.partition("=") for t in value.split(";"))
    }


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_signed_digest_verifies_and_stays_standard(
    tmp_path: Path, keys: dict[str, bytes], algorithm: str
) -> None:
    settings = dkim_settings(tmp_path, keys[algorithm], algorithm)
    signer = DkimSigner.from_settings(settings)
    assert signer is not None
    raw, token = personalised(settings)
    signed = signer.sign(raw)
    assert signed.startswith(b"DKIM-Signature: ") and signed.endswith(raw)
    assert dkim.verify(signed, dnsfunc=dns_stub(dns_records(settings)))
    assert message_problems(signed, token=token, base_url=settings.base_url) == []
    found = tags(signed)
    assert found["a"] == algorithm
    assert found["c"] == "relaxed/relaxed"
    assert (found["d"], found["s"]) == ("example.org", "sel")
    signed_headers = found["h"].lower().split(":")
    for name in ("from", "list-unsubscribe", "list-unsubscribe-post"):
        assert signed_headers.count(name) >= 2, name
    for name in ("to", "subject", "date", "message-id", "mime-version", "content-type", "list-id"):
        assert name in signed_headers, name


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_worker_processes_sign_with_the_run_s_signer(
    tmp_path: Path, keys: dict[str, bytes], algorithm: str
) -> None:
    """``--workers`` hands the run's Outbound (its DKIM signer included) to each worker
    process as a pickle: what comes out signs messages that verify."""
    settings = dkim_settings(tmp_path, keys[algorithm], algorithm)
    outbound = pickle.loads(pickle.dumps(outbound_for(settings, "2026-W48", [], {})))  # noqa: S301
    assert outbound.sign is not None
    raw, _ = personalised(settings)
    assert dkim.verify(outbound.sign(raw), dnsfunc=dns_stub(dns_records(settings)))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_changed_or_added_unsubscribe_headers_break_the_signature(
    tmp_path: Path, keys: dict[str, bytes], algorithm: str
) -> None:
    settings = dkim_settings(tmp_path, keys[algorithm], algorithm)
    signer = DkimSigner.from_settings(settings)
    assert signer is not None
    signed = signer.sign(personalised(settings)[0])
    stub = dns_stub(dns_records(settings))
    assert dkim.verify(signed, dnsfunc=stub)

    tampered = signed.replace(
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        b"List-Unsubscribe-Post: List-Unsubscribe=Two-Clicks",
    )
    assert tampered != signed
    assert not dkim.verify(tampered, dnsfunc=stub)

    forged = b"List-Unsubscribe: <https://attacker.example/u/x>\r\n" + signed
    assert not dkim.verify(forged, dnsfunc=stub)
    second_from = b"From: Someone Else <boss@example.org>\r\n" + signed
    assert not dkim.verify(second_from, dnsfunc=stub)


def test_dkim_domain_may_be_a_parent_of_the_from_domain(
    tmp_path: Path, keys: dict[str, bytes]
) -> None:
    settings = dkim_settings(
        tmp_path,
        keys["ed25519-sha256"],
        "ed25519-sha256",
        sender_address="digest@news.example.org",
        dkim_domain="example.org",
    )
    signer = DkimSigner.from_settings(settings)
    assert signer is not None and signer.domain == "example.org"
    signed = signer.sign(personalised(settings)[0])
    assert tags(signed)["d"] == "example.org"
    assert dkim.verify(signed, dnsfunc=dns_stub(signer.dns_records()))


@pytest.mark.parametrize("domain", ["example.net", "news.example.org", "org", "badexample.org"])
def test_dkim_domain_not_aligned_with_from_is_refused(
    tmp_path: Path, keys: dict[str, bytes], domain: str
) -> None:
    key = DkimKey.from_bytes(keys["rsa-sha256"], selector="sel", algorithm="rsa-sha256")
    with pytest.raises(ConfigError, match="DIGEST_DKIM_DOMAIN"):
        DkimSigner([key], domain=domain, from_domain="example.org")
    with pytest.raises(ConfigError, match="DIGEST_DKIM_DOMAIN"):
        dkim_settings(tmp_path, keys["rsa-sha256"], "rsa-sha256", dkim_domain=domain)


def test_dual_signature_with_rsa_and_ed25519(keys: dict[str, bytes]) -> None:
    rsa = DkimKey.from_bytes(keys["rsa-sha256"], selector="rsa1", algorithm="rsa-sha256")
    ed = DkimKey.from_bytes(keys["ed25519-sha256"], selector="ed1", algorithm="ed25519-sha256")
    signer = DkimSigner([rsa, ed], domain="example.org", from_domain="example.org")
    raw = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nHello\r\n"
    signed = signer.sign(raw)
    assert signed.count(b"DKIM-Signature:") == 2
    stub = dns_stub(signer.dns_records())
    assert all(dkim.DKIM(signed).verify(idx=i, dnsfunc=stub) for i in (0, 1))


def test_dns_records_are_zone_file_lines(tmp_path: Path, keys: dict[str, bytes]) -> None:
    settings = dkim_settings(tmp_path, keys["rsa-sha256"], "rsa-sha256")
    (line,) = dns_records(settings)
    assert line.startswith('sel._domainkey.example.org. IN TXT "v=DKIM1; k=rsa; p=MII')
    assert all(len(s) <= 255 for s in re.findall(r'"([^"]*)"', line))
    assert dns_records(make_settings(tmp_path)) == []


def test_dkim_is_off_in_the_starter_config(settings: Settings) -> None:
    assert settings.dkim_selector is None
    assert DkimSigner.from_settings(settings) is None


def test_pkcs1_rsa_and_dknewkey_ed25519_files_load(tmp_path: Path) -> None:
    pkcs1 = openssl("genrsa", "-traditional", "1024")
    assert pkcs1.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    rsa = DkimKey.from_bytes(pkcs1.replace(b"\n", b"\r\n"), selector="a", algorithm="rsa-sha256")
    assert rsa.bits == 1024
    seed = base64.b64encode(bytes(nacl.signing.SigningKey.generate()))  # dknewkey's .key file
    ed = DkimKey.from_bytes(seed + b"\n", selector="b", algorithm="ed25519-sha256")
    assert ed.txt.startswith("v=DKIM1; k=ed25519; p=") and len(ed.public) == 44
    DkimSigner([rsa, ed], domain="example.org", from_domain="example.org")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"dkim_selector": "sel"}, "DIGEST_DKIM_KEY_FILE.*is missing but dkim_selector is set"),
        ({"dkim_key_file": "dkim.pem"}, "DIGEST_DKIM_SELECTOR.*is missing"),
        ({"dkim_domain": "example.org"}, "DIGEST_DKIM_SELECTOR.*is missing"),
        (
            {"dkim_selector": "sel", "dkim_key_file": "missing.pem"},
            r"DIGEST_DKIM_KEY_FILE.*missing\.pem does not exist",
        ),
        ({"dkim_selector": "bad selector!"}, "DIGEST_DKIM_SELECTOR.*DNS name"),
        ({"dkim_algorithm": "rsa-sha1"}, "DIGEST_DKIM_ALGORITHM.*rsa-sha256, ed25519-sha256"),
    ],
)
def test_incomplete_dkim_settings_are_refused(
    tmp_path: Path, overrides: dict[str, str], message: str
) -> None:
    (tmp_path / "dkim.pem").write_text("not used")
    with pytest.raises(ConfigError, match=message):
        make_settings(tmp_path, **overrides)


@pytest.mark.parametrize(
    ("key", "algorithm", "message"),
    [
        (b"hello", "rsa-sha256", "no PEM private key"),
        (
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "rsa-sha256",
            "not an RSA",
        ),
        (b"-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n", "rsa-sha256", "base64"),
        (b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n", "rsa-sha256", "encrypted"),
        (b"\xff\xfe", "rsa-sha256", "not a PEM text file"),
        ("ED25519", "rsa-sha256", "set dkim_algorithm = 'ed25519-sha256'"),
        ("RSA", "ed25519-sha256", "not an ed25519 key"),
        ("RSA-512", "rsa-sha256", "512-bit RSA key; use at least 1024"),
        (b"c2hvcnQ=", "ed25519-sha256", "not an ed25519 private key"),
    ],
)
def test_bad_key_files_are_refused_naming_the_setting(
    tmp_path: Path, keys: dict[str, bytes], key: bytes | str, algorithm: str, message: str
) -> None:
    if key == "RSA-512":
        key = openssl("genrsa", "512")
    elif isinstance(key, str):
        key = keys["ed25519-sha256" if key == "ED25519" else "rsa-sha256"]
    settings = dkim_settings(tmp_path, key, algorithm)
    with pytest.raises(ConfigError, match="DIGEST_DKIM_KEY_FILE") as error:
        DkimSigner.from_settings(settings)
    assert message in str(error.value)
