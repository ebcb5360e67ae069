"""Settings: the starter file works as is; every key can come from the environment;
a bad or missing value stops with one line naming the key and its variable; a missing
config file, a bad --config, an unknown variable, key or smtp_url option each stop with
one line naming the real cause; the starter file and the README's tables come from the
declarations."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli.main import cli
from digest.config import (
    OTHER_VARIABLES,
    SETTING_KEYS,
    SETTINGS,
    STARTER_CONFIG,
    env_name,
    load_settings,
    main,
    parse_smtp_url,
    readme_tables,
)
from digest.errors import ConfigError
from digest.settings_table import REQUIRED, refresh_readme


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


def test_no_file_at_all_names_the_folder_and_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(env={}, cwd=tmp_path)
    assert str(error.value) == (
        f"no digest.toml in {tmp_path}: run `digest init` to create one there, "
        "or set DIGEST_CONFIG (or --config) to your digest.toml"
    )


def test_without_a_file_the_environment_alone_is_enough(tmp_path: Path) -> None:
    env = {
        "DIGEST_SITE_NAME": "Research Help",
        "DIGEST_SITE_URL": "https://example.org",
        "DIGEST_BASE_URL": "https://example.org/digest",
        "DIGEST_SENDER_NAME": "Digest",
        "DIGEST_SENDER_ADDRESS": "digest@example.org",
        "DIGEST_POSTAL_ADDRESS": "1 Example Street",
        "DIGEST_LIST_ID": "weekly.example.org",
    }
    settings = load_settings(env=env, cwd=tmp_path)
    assert settings.config_path is None and settings.outbox_dir == tmp_path / "outbox"
    with pytest.raises(ConfigError) as error:
        load_settings(env={k: v for k, v in env.items() if k != "DIGEST_LIST_ID"}, cwd=tmp_path)
    assert str(error.value) == (
        "setting 'list_id' (environment variable DIGEST_LIST_ID): is missing; set the "
        f"variable, or run `digest init` (no digest.toml in {tmp_path})"
    )


def test_digest_config_naming_a_missing_file_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as error:
        load_settings(env={"DIGEST_CONFIG": str(missing)}, cwd=tmp_path)
    assert str(error.value) == f"DIGEST_CONFIG names {missing}, which does not exist"
    with pytest.raises(ConfigError) as error:
        load_settings(tmp_path, env={})
    assert str(error.value) == f"config file {tmp_path} is a folder, not a file"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("DIGEST_SMTP_URLL", "unknown environment variable DIGEST_SMTP_URLL: did you mean "
         "DIGEST_SMTP_URL?"),
        ("DIGEST_CARDCAP", "unknown environment variable DIGEST_CARDCAP: did you mean "
         "DIGEST_CARD_CAP?"),
        ("DIGEST_CONFG", "unknown environment variable DIGEST_CONFG: did you mean DIGEST_CONFIG?"),
        ("DIGEST_XYZZY", "unknown environment variable DIGEST_XYZZY: digest has no such "
         "setting (see Configuration in the README)"),
    ],
)  # fmt: skip
def test_unknown_digest_variables_are_refused_with_the_nearest_name(
    tmp_path: Path, name: str, message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path), env={name: "smtp://127.0.0.1:25"})
    assert str(error.value) == message


def test_variables_that_are_not_settings_are_accepted(tmp_path: Path) -> None:
    env = dict.fromkeys(OTHER_VARIABLES, "1") | {"PATH": "/usr/bin", "digest_lower": "x"}
    env["DIGEST_CONFIG"] = str(write(tmp_path))
    assert load_settings(env=env, cwd=tmp_path).site_url == "https://example.org"


def test_other_variables_are_the_ones_the_project_reads() -> None:
    """Every DIGEST_* name in the code, tests and docs is a setting or allowed on purpose."""
    root = Path(__file__).resolve().parents[1]
    texts = [p.read_text(encoding="utf-8") for p in root.glob("*.md")]
    for folder in ("digest", "subscribers", "tests", "benchmarks", ".ci"):
        texts += [
            p.read_text(encoding="utf-8", errors="replace")
            for p in (root / folder).rglob("*")
            if p.is_file() and p.suffix in {".py", ".md", ""} and "node" not in p.parts
        ]
    used = set(re.findall(r"\bDIGEST_[A-Z][A-Z_]*[A-Z]\b", "\n".join(texts)))
    constants = {"DIGEST_MJML", "DIGEST_CSS", "DIGEST_TEXT", "DIGEST_SUBJECT"}  # template names
    examples = {"DIGEST_COLOUR", "DIGEST_SMTP_URLL", "DIGEST_CARDCAP", "DIGEST_CONFG"}
    examples |= {"DIGEST_XYZZY"}  # unknown names the tests use on purpose
    known = {env_name(key) for key in SETTING_KEYS} | set(OTHER_VARIABLES)
    assert used - constants - examples <= known


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "smtp://mail.example.org?startls=true",
            "unknown option 'startls'; did you mean starttls?",
        ),
        ("smtp://mail.example.org?timout=5", "unknown option 'timout'; did you mean timeout?"),
        (
            "smtp://mail.example.org?tls",
            "unknown option 'tls'; known: starttls, timeout, data_timeout",
        ),
    ],
)
def test_unknown_smtp_url_options_are_refused_naming_the_setting(
    tmp_path: Path, url: str, message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path), env={"DIGEST_SMTP_URL": url})
    assert str(error.value) == (
        f"setting 'smtp_url' (environment variable DIGEST_SMTP_URL) in the environment: {message}"
    )
    path = write(tmp_path, STARTER_CONFIG + f'smtp_url = "{url}"\n')
    with pytest.raises(ConfigError, match=f"DIGEST_SMTP_URL\\) in {re.escape(str(path))}: "):
        load_settings(path, env={})


def test_unknown_keys_in_the_file_get_the_nearest_name(tmp_path: Path) -> None:
    path = write(tmp_path, STARTER_CONFIG + 'smtp_urll = "smtp://127.0.0.1"\n')
    with pytest.raises(ConfigError) as error:
        load_settings(path, env={})
    assert str(error.value) == (
        f"setting 'smtp_urll' (environment variable DIGEST_SMTP_URLL) in {path}: "
        "is not a known setting; did you mean smtp_url?"
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


def test_a_file_that_is_not_utf8_says_so(tmp_path: Path) -> None:
    path = tmp_path / "digest.toml"
    path.write_bytes(STARTER_CONFIG.replace("(sample)", "(\xe9chantillon)").encode("latin-1"))
    with pytest.raises(ConfigError) as error:
        load_settings(path, env={})
    assert str(error.value).startswith(f"{path} is not UTF-8 text: ")


def test_every_setting_with_a_value_can_come_from_the_environment(tmp_path: Path) -> None:
    """The starter file's values, given as variables instead, give the same settings."""
    path = write(tmp_path)
    from_file = load_settings(path, env={})
    path.unlink()
    env = {}
    for key, _, default, about in SETTINGS:
        if default is not None and not about.commented:  # as the starter file has them
            value = default if about.example is None else about.example
            env[env_name(key)] = str(value).lower() if isinstance(value, bool) else str(value)
    assert len(env) == len(re.findall(r"^[a-z_]+ = ", STARTER_CONFIG, re.MULTILINE)) == 24
    assert load_settings(env=env, cwd=tmp_path) == replace(from_file, config_path=None)


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


def test_the_starter_file_gives_each_declared_default_or_example(tmp_path: Path) -> None:
    """The starter file is written from the declarations: loaded as is, each setting has
    its declared default, or the example the file shows."""
    settings = load_settings(write(tmp_path), env={})
    for key, name, default, about in SETTINGS:
        value = getattr(settings, name)
        if default is REQUIRED:
            assert value == about.parse(key, about.example, "test"), key
        elif isinstance(default, Path):
            assert value == tmp_path / default, key
        elif key == "sender_name":  # unset: the From name is the site's (one brand name)
            assert value == settings.site_name, key
        elif key != "database_url":
            assert value == default, key
        assert f"{key} = " in STARTER_CONFIG, key


def test_readme_tables_are_generated_from_the_declarations() -> None:
    """Refresh with `python -m digest.config --readme README.md`."""
    readme = Path(__file__).resolve().parents[1] / "README.md"
    text = readme.read_text(encoding="utf-8")
    assert text.count("<!-- end of generated table -->") == len(readme_tables())
    assert refresh_readme(text, readme_tables()) == text, (
        "README tables are stale: run python -m digest.config --readme README.md"
    )


def test_python_m_digest_config_rewrites_a_stale_readme(tmp_path: Path) -> None:
    readme = Path(__file__).resolve().parents[1] / "README.md"
    stale = tmp_path / "README.md"
    stale.write_text(
        readme.read_text(encoding="utf-8").replace("| `card_cap` |", "| `cards` |"),
        encoding="utf-8",
    )
    assert main(["--readme", str(stale)]) == 0
    fresh = refresh_readme(readme.read_text(encoding="utf-8"), readme_tables())
    assert stale.read_text(encoding="utf-8") == fresh


@pytest.fixture
def empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("DIGEST_")]:
        monkeypatch.delenv(name)
    return tmp_path


def digest(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run the digest command; its exit status and what it printed."""
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_a_command_in_a_folder_without_digest_toml_names_the_folder(empty_folder: Path) -> None:
    assert digest("send") == (
        1,
        f"Error: no digest.toml in {empty_folder}: run `digest init` to create one there, "
        "or set DIGEST_CONFIG (or --config) to your digest.toml\n",
    )


def test_a_missing_config_file_names_the_flag(empty_folder: Path) -> None:
    missing = empty_folder / "missing.toml"
    assert digest("--config", str(missing), "send") == (
        1,
        f"Error: --config names {missing}, which does not exist\n",
    )
    assert digest("send", env={"DIGEST_CONFIG": str(missing)}) == (
        1,
        f"Error: --config (set by DIGEST_CONFIG) names {missing}, which does not exist\n",
    )


def test_a_folder_given_as_config_is_refused_naming_the_flag(empty_folder: Path) -> None:
    status, output = digest("--config", str(empty_folder), "send")
    assert status == 2  # Click's usage error names the option
    assert "Invalid value for '--config'" in output and "is a directory" in output


def test_the_cli_refuses_an_unknown_digest_variable(empty_folder: Path) -> None:
    write(empty_folder)
    status, output = digest("send", "--dry-run", env={"DIGEST_SMTP_URLL": "smtp://x"})
    assert (status, output) == (
        1,
        "Error: unknown environment variable DIGEST_SMTP_URLL: did you mean DIGEST_SMTP_URL?\n",
    )


def test_the_cli_refuses_an_unknown_smtp_option(empty_folder: Path) -> None:
    write(empty_folder)
    url = "smtp://127.0.0.1:2525?startls=true"
    assert digest("send", env={"DIGEST_SMTP_URL": url}) == (
        1,
        "Error: setting 'smtp_url' (environment variable DIGEST_SMTP_URL) in the environment: "
        "unknown option 'startls'; did you mean starttls?\n",
    )


def test_the_from_name_is_the_site_name_unless_sender_name_says_otherwise(
    tmp_path: Path,
) -> None:
    starter = load_settings(write(tmp_path), env={})
    assert starter.sender_name == starter.site_name == "Spinal Cord Research Help (sample)"
    assert '# sender_name = "' in STARTER_CONFIG  # offered, commented out
    override = load_settings(write(tmp_path), env={"DIGEST_SENDER_NAME": "The SCI Editors"})
    assert (override.sender_name, override.site_name) == ("The SCI Editors", starter.site_name)
    in_file = write(tmp_path, STARTER_CONFIG.replace('# sender_name = "', 'sender_name = "'))
    assert load_settings(in_file, env={}).sender_name == "Spinal Cord Research Help"
