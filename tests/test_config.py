"""Settings: the starter file works as is; every key can come from the environment;
a bad or missing value stops with one line naming the key and its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.config import SETTING_KEYS, STARTER_CONFIG, load_settings, parse_smtp_url
from digest.errors import ConfigError


def write(tmp_path: Path, text: str = STARTER_CONFIG) -> Path:
    path = tmp_path / "digest.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_starter_config_works_as_it_is(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path), env={})
    assert settings.transport == "file"
    assert settings.outbox_dir == tmp_path / "outbox"
    assert settings.database_url == f"sqlite:///{(tmp_path / 'digest.sqlite3').resolve()}"
    assert settings.base_url == "https://example.org/digest"
    assert settings.card_cap == 15 and settings.timezone == "UTC"


def test_every_key_can_be_overridden_by_the_environment(tmp_path: Path) -> None:
    env = {
        "DIGEST_DATABASE_URL": "postgresql+psycopg://digest@db.example.org/digest",
        "DIGEST_SMTP_URL": "smtp://user:p%40ss@smtp.example.org:587?starttls=true",
        "DIGEST_BASE_URL": "https://news.example.org/",
        "DIGEST_TEMPLATES_DIR": "my-templates",
        "DIGEST_CARD_CAP": "12",
        "DIGEST_TIMEZONE": "Europe/Berlin",
        "DIGEST_TRANSPORT": "smtp",
    }
    settings = load_settings(write(tmp_path), env=env)
    assert settings.database_url == env["DIGEST_DATABASE_URL"]
    assert settings.base_url == "https://news.example.org"
    assert settings.templates_dir == tmp_path / "my-templates"
    assert settings.card_cap == 12 and settings.timezone == "Europe/Berlin"
    assert settings.smtp is not None
    assert (settings.smtp.host, settings.smtp.port, settings.smtp.security) == (
        "smtp.example.org",
        587,
        "starttls",
    )
    assert (settings.smtp.username, settings.smtp.password) == ("user", "p@ss")
    assert "p@ss" not in repr(settings)


def test_no_file_at_all_names_the_first_missing_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(env={}, cwd=tmp_path)
    assert str(error.value) == (
        "setting 'site_name' (environment variable DIGEST_SITE_NAME): is missing; "
        "run `digest init` to create digest.toml or set the variable"
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            'base_url = "http://example.org"',
            "'base_url' (environment variable DIGEST_BASE_URL) in {path}: must be an https:// URL",
        ),
        (
            'timezone = "Mars/Olympus"',
            "'timezone' (environment variable DIGEST_TIMEZONE) in "
            "{path}: 'Mars/Olympus' is not an IANA time zone",
        ),
        (
            "card_cap = 0",
            "'card_cap' (environment variable DIGEST_CARD_CAP) in {path}: must be between 1 and 50",
        ),
        (
            'sender_address = "not an address"',
            "'sender_address' (environment variable "
            "DIGEST_SENDER_ADDRESS) in {path}: 'not an address' is not a valid email address",
        ),
        (
            'transport = "pigeon"',
            "'transport' (environment variable DIGEST_TRANSPORT) in "
            "{path}: must be one of smtp, file, console",
        ),
        (
            'colour = "red"',
            "'colour' (environment variable DIGEST_COLOUR) in {path}: is not a known setting",
        ),
    ],
)
def test_invalid_values_name_the_key_variable_and_file(
    tmp_path: Path, line: str, message: str
) -> None:
    key = line.split(" = ")[0]
    text = "\n".join(row for row in STARTER_CONFIG.splitlines() if not row.startswith(f"{key} ="))
    path = write(tmp_path, text + "\n" + line + "\n")
    with pytest.raises(ConfigError) as error:
        load_settings(path, env={})
    assert message.format(path=path) in str(error.value)
    assert "\n" not in str(error.value)


def test_broken_toml_says_where(tmp_path: Path) -> None:
    path = write(tmp_path, 'site_name = "unterminated\n')
    with pytest.raises(ConfigError, match=r"is not valid TOML: .*line 1"):
        load_settings(path, env={})


def test_environment_value_with_a_newline_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"DIGEST_SENDER_NAME.*must be on one line"):
        load_settings(write(tmp_path), env={"DIGEST_SENDER_NAME": "Digest\r\nBcc: x@example.org"})


def test_smtp_transport_without_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DIGEST_SMTP_URL"):
        load_settings(write(tmp_path), env={"DIGEST_TRANSPORT": "smtp"})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtps://mail.example.org", ("mail.example.org", 465, "tls")),
        ("smtp://mail.example.org", ("mail.example.org", 587, "starttls")),
        ("smtp://127.0.0.1:2525", ("127.0.0.1", 2525, "none")),
        ("smtp://relay.example.org:25?starttls=false", ("relay.example.org", 25, "none")),
    ],
)
def test_smtp_urls(url: str, expected: tuple[str, int, str]) -> None:
    smtp = parse_smtp_url(url)
    assert (smtp.host, smtp.port, smtp.security) == expected


def test_starter_file_documents_every_key() -> None:
    for key in SETTING_KEYS:
        assert f"{key} =" in STARTER_CONFIG, key
