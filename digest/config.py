"""Settings: one table declaring each setting once, read at the edge into a frozen value.

Each field of :class:`Settings` declares its setting: type, default, meaning and parser (its
``metadata``). From that one declaration come the parser of ``digest.toml``, the environment
overrides (``DIGEST_<KEY>``, e.g. ``database_url`` -> ``DIGEST_DATABASE_URL``), the starter
file :data:`STARTER_CONFIG` and the README's settings tables (``python -m digest.config
--readme README.md`` rewrites them). The file is ``./digest.toml``, the one named by
``DIGEST_CONFIG`` or by ``--config``. Relative paths in it (SQLite database, outbox, templates,
DKIM key) are taken from the file's folder, so cron can run from anywhere.
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from digest import config_values as v
from digest import settings_table as table
from digest.config_values import WEEKDAYS, SmtpSettings, domain_aligned, is_loopback, parse_smtp_url
from digest.errors import ConfigError, SetupError
from digest.settings_table import REQUIRED, declared, setting, starter_toml

__all__ = ["CONFIG_FILENAME", "OTHER_VARIABLES", "SETTINGS", "SETTING_KEYS", "STARTER_CONFIG"]
__all__ += ["WEEKDAYS", "Settings", "SmtpSettings", "domain_aligned", "env_name", "is_loopback"]
__all__ += ["load_settings", "parse_smtp_url"]  # the value parsers are in config_values

CONFIG_FILENAME = "digest.toml"
#: ``DIGEST_*`` variables that are not settings but are read by digest or its tests; any
#: other ``DIGEST_*`` variable is refused like an unknown key in the file.
OTHER_VARIABLES = {
    "DIGEST_CONFIG": "the config file to use (the same as `--config`)",
    "DIGEST_NOW": "the time every command takes as now, for tests and replays: ISO 8601 with "
    "its offset, such as `2026-12-07T08:00:00+00:00`",
    "DIGEST_MJML_VALIDATOR": "the `mjml` command `digest check` validates templates with",
    "DIGEST_TEST_DATABASE_URL": "the PostgreSQL database the tests use besides SQLite",
    "DIGEST_REFRESH_GOLDEN": "`1` makes the tests rewrite their golden files",
}


_DKIM = """DKIM signing, on when dkim_selector is set. Publish the public key as a TXT record at
<dkim_selector>._domainkey.<dkim_domain>. dkim_domain defaults to the sender_address domain
and must be that domain or a parent of it. The key file is a PEM private key (RSA, 2048
bits, or ed25519 with dkim_algorithm = "ed25519-sha256"), relative to this file."""
_VERP = """Bounces: with bounce_address, each message's envelope sender is
bounces+<delivery id>-<check>@example.org (VERP), so a bounce names its delivery.
The mailbox must accept bounces+anything@ (Postfix: recipient_delimiter = +).
verp_secret signs the <check>; keep it secret and stable (changing it orphans old bounces)."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything digest needs to know, validated. Build it with :func:`load_settings`.

    The fields are in the order of the starter file; each declares its setting."""

    site_name: str = setting(
        REQUIRED, v.plain_text, "the site whose summaries are sent, shown in every email",
        example="Spinal Cord Research Help (sample)",
        heading="The site whose summaries are sent, shown in every email.",
    )  # fmt: skip
    site_url: str = setting(
        REQUIRED, v.https_url, "the site's https address", example="https://example.org"
    )
    base_url: str = setting(
        REQUIRED, v.https_url,
        "https base of the subscriber pages; unsubscribe links are `BASE/u/<token>`",
        example="https://example.org/digest",
        heading="Where the subscriber pages (unsubscribe, preferences) are served. Must be https.",
    )  # fmt: skip
    sender_name: str = setting(
        "", v.plain_text, "the name the email is from, only when it is not `site_name`",
        example="Spinal Cord Research Help", commented=True, default_text="`site_name`",
        heading="Who the email comes from. Use an address at a domain you control "
        "(SPF, DKIM, DMARC).",
        note="The From name is site_name (one brand name everywhere); set sender_name only "
        "to use\nanother one.",
    )  # fmt: skip
    sender_address: str = setting(
        REQUIRED, v.email_address, "the address the email is from, in a domain you control",
        example="digest@example.org",
    )  # fmt: skip
    reply_to: str | None = setting(
        None, v.email_address, "where replies go (`Reply-To`)", example="editors@example.org"
    )
    postal_address: str = setting(
        REQUIRED, v.plain_text, "shown in every footer (CAN-SPAM)",
        example="Example Foundation, 1 Example Street, Springfield 00000, Country",
        heading="A real postal address is required in bulk mail (CAN-SPAM); "
        "it is shown in every footer.",
    )  # fmt: skip
    list_id: str = setting(
        REQUIRED, v.list_id, "`List-Id` (RFC 2919), a dotted name in your domain",
        example="weekly.digest.example.org",
        heading="A stable dotted name for this list (List-Id header, RFC 2919), "
        "in your own domain.",
    )  # fmt: skip
    unsubscribe_mailto: str | None = setting(
        None, v.email_address, "adds a `mailto:` to `List-Unsubscribe`",
        example="unsubscribe@example.org",
    )  # fmt: skip
    timezone: str = setting(
        "UTC", v.time_zone, "IANA time zone of the editions' weeks and of `send_time`",
        heading="Editions are keyed by ISO week in this IANA time zone.",
    )  # fmt: skip
    language: str = setting("en", v.language_tag, "`lang` of the email, such as `en-GB`")
    brand_color: str = setting("#1d4f91", v.hex_color, "header colour")
    card_cap: int = setting(
        15, v.whole_number(1, 50), "summaries shown per email; the rest are linked on the site",
        heading="At most this many summaries per email (Gmail clips HTML over about 100 KB);\n"
        "the rest are linked on the site.",
    )  # fmt: skip
    lookback_days: int = setting(
        7, v.whole_number(1, 365), "how many days a new subscriber's first digest looks back",
        note="A new subscriber's first digest covers this many days before they joined.",
    )  # fmt: skip
    transport: str = setting(
        "file", v.one_of(*v.TRANSPORTS), "`smtp`, `file` or `console`",
        heading="smtp, file (one .eml per message in outbox_dir) or console.",
    )  # fmt: skip
    outbox_dir: Path = setting(  # noqa: RUF009 (setting() is a dataclass field)
        Path("outbox"), v.path, "where the `file` transport writes"
    )
    smtp: SmtpSettings | None = setting(  # noqa: RUF009
        None, v.smtp_url,
        "`smtp://user:pass@host:587?starttls=true`, `smtps://host:465`; `smtp://` uses "
        "STARTTLS except on loopback; options `starttls`, `timeout` (seconds, default 30), "
        "`data_timeout` (seconds to wait for the reply to the end of a message, default 600 "
        "as RFC 5321 says)",
        key="smtp_url", example="smtp://user:password@smtp.example.org:587?starttls=true",
        default_text="none (needed by `transport = \"smtp\"`)", secret=True,
    )  # fmt: skip
    smtp_connections: int = setting(
        4, v.whole_number(1, 32), "SMTP connections used at once",
        note="Connections to the SMTP server used at once, and the sending rate for the whole "
        "run\n(all connections and workers together; 0 = no limit). On 421/451 deferrals the "
        "rate\nhalves and then recovers.",
    )  # fmt: skip
    rate_per_second: float = setting(
        0.0, v.number(0, 100_000), "messages per second for the whole run (0: no limit)"
    )
    rate_per_hour: int = setting(
        0, v.whole_number(0, 100_000_000), "messages per hour for the whole run (0: no limit)"
    )
    send_retries: int = setting(
        3, v.whole_number(0, 10), "retries of temporary failures per run (never of 5xx ones)",
        note="Temporary failures (4xx, dropped connections) are retried this many times per "
        "run, with\nexponential back-off from retry_base_seconds (with jitter); 5xx failures "
        "never are.",
    )  # fmt: skip
    retry_base_seconds: float = setting(
        10.0, v.number(0, 3600), "seconds before the first retry; doubled for each next one"
    )
    send_batch_size: int = setting(
        2000, v.whole_number(1, 10_000),
        "ledger rows claimed at a time, at most 10 s of sending at the rate limit",
        note="How many ledger rows a sender claims at a time (fewer under a rate limit: at "
        "most 10 s\nof sending, so that a cancel or pause takes effect within seconds). "
        "Outcomes are recorded\nevery 100 messages and journaled at once, so after a crash "
        "at most one message per\nconnection goes out twice, with its original Message-ID, "
        "and is counted.",
    )  # fmt: skip
    send_lease_seconds: float = setting(
        600.0, v.number(1, 86400),
        "how long a sender's hold on an edition lasts unless renewed (renewed every tenth "
        "of it, at most every 10 s)", commented=True,
        note="A sender proves it still holds its edition every tenth of this (at most every "
        "10 s) and stops\nbefore its next message when it cannot; a new sender waits three "
        "of those intervals\nbefore taking over rows a live one may still hold.",
    )  # fmt: skip
    send_day: str = setting(
        "mon", v.one_of(*WEEKDAYS), "the weekday the edition goes out, in `timezone`",
        heading="When the weekly edition goes out (python scheduler.py, or cron with `digest "
        "send --due`),\nin the list's time zone. With local_delivery, each reader gets it at "
        "send_time in their own\ntime zone instead (the scheduler then runs hourly).",
    )  # fmt: skip
    send_time: str = setting("08:00", v.time_of_day, "the time of day the edition goes out")
    local_delivery: bool = setting(
        False, v.boolean, "send at `send_time` in each reader's own time zone"
    )
    misfire_grace_hours: int = setting(
        144, v.whole_number(1, 167), "how late a missed scheduled run may still start, in hours",
        note="After downtime, a missed send still runs (once) if it is at most this many "
        "hours late.",
    )  # fmt: skip
    ledger_retention_days: int = setting(
        400, v.whole_number(30, 36500),
        "ledger rows (who got which edition) older than this are deleted by "
        "`digest maintenance`; each edition keeps its totals",
        heading="Retention (`digest maintenance`, also run weekly by the scheduler).",
        commented=True,
    )  # fmt: skip
    bounce_retention_days: int = setting(
        180, v.whole_number(30, 36500),
        "bounce and complaint records older than this are deleted by `digest maintenance`; "
        "each edition keeps its totals", commented=True,
    )  # fmt: skip
    database_url: str = setting(
        "sqlite:///digest.sqlite3", v.plain_text,
        "SQLite beside `digest.toml`, or `postgresql+psycopg://user@host/db` "
        "(install `.[postgres]`)",
        heading="SQLite file next to this config by default; "
        "PostgreSQL: postgresql+psycopg://user@host/db",
    )  # fmt: skip
    templates_dir: Path | None = setting(  # noqa: RUF009
        None, v.path, "your own copy of the templates (`digest templates copy DIR`)",
        example="templates", default_text="the built-in templates",
        heading="Your own copy of the templates (digest templates copy DIR) instead of the "
        "built-in ones.",
    )  # fmt: skip
    dkim_selector: str | None = setting(
        None, v.dns_name(1),
        "turns DKIM signing on; the key is published at `<selector>._domainkey.<dkim_domain>`",
        section="dkim", example="digest2026", heading=_DKIM,
    )  # fmt: skip
    dkim_domain: str | None = setting(
        None, v.dns_name(2),
        "the `d=` of the signature: the `sender_address` domain or a parent of it "
        "(DMARC alignment)",
        section="dkim", example="example.org", default_text="the sender's domain",
    )  # fmt: skip
    dkim_key_file: Path | None = setting(  # noqa: RUF009
        None, v.path,
        "unencrypted PEM private key, relative to `digest.toml`: `openssl genrsa -out dkim.pem "
        "2048`, or `openssl genpkey -algorithm ed25519 -out dkim.pem`",
        section="dkim", example="dkim-private.pem", default_text="required with `dkim_selector`",
    )  # fmt: skip
    dkim_algorithm: str = setting(
        "rsa-sha256", v.one_of(*v.DKIM_ALGORITHMS),
        "`rsa-sha256` or `ed25519-sha256` (never `rsa-sha1`); RSA keys need at least 1024 "
        "bits, 2048 is best",
        section="dkim", commented=True,
    )  # fmt: skip
    bounce_address: str | None = setting(
        None, v.email_address,
        "turns VERP on: delivery 1234 is sent with envelope sender `bounces+1234-<check>@domain`"
        "; must be in the sender's domain (SPF alignment), and the mailbox must accept "
        "`bounces+anything@` (Postfix: `recipient_delimiter = +`)",
        section="dkim", example="bounces@example.org", heading=_VERP,
    )  # fmt: skip
    verp_secret: str | None = setting(
        None, v.secret,
        "at least 16 characters that sign `<check>`, so a forged bounce matches no delivery; "
        "make one with `python -c 'import secrets; print(secrets.token_hex(32))'` and keep it "
        "(changing it orphans bounces of earlier sends)",
        section="dkim", default_text="required with `bounce_address`", secret=True,
        example="change me: python -c 'import secrets; print(secrets.token_hex(32))'",
    )  # fmt: skip
    bounce_webhook_secret: str | None = setting(
        None, v.secret,
        "turns on the bounce webhooks of `digest serve` (`POST /bounces/json` with header "
        "`Authorization: Bearer <secret>`, `X-Digest-Secret` or `X-Digest-Signature`; "
        "`/bounces/ses`); at least 16 characters",
        section="dkim", example="change me: at least 16 random characters", secret=True,
        note="With a secret, `digest serve` also takes bounce webhooks: POST /bounces/json "
        "(header\nAuthorization: Bearer <secret>) and /bounces/ses (Amazon SNS, signature "
        "verified).",
    )  # fmt: skip
    signup_limit_per_ip: int = setting(
        10, v.whole_number(1, 100_000),
        "sign-ups and link requests per client address in 10 minutes (then 429)",
        commented=True,
        heading="Abuse limits of the sign-up and link-request forms, kept in the database so "
        "that\nevery process of `digest serve` shares them. An address gets at most one "
        "confirmation\nemail a day whatever the client.",
    )  # fmt: skip
    signup_limit_per_hour: int = setting(
        200, v.whole_number(1, 1_000_000),
        "emails the sign-up and link-request forms send per hour for the whole site (then 429)",
        commented=True,
    )  # fmt: skip
    trusted_proxies: str | None = setting(
        None, v.ip_networks,
        "comma-separated addresses or networks of your reverse proxies: from them, the client "
        "is the last `X-Forwarded-For` address that is not a proxy",
        example="127.0.0.1, ::1", default_text="none (`X-Forwarded-For` ignored)",
    )  # fmt: skip
    admin_password: str | None = setting(
        None, v.password,
        "turns on the admin console's login, needed to serve `digest admin` on any address "
        "but 127.0.0.1; at least 12 characters, or the hash `digest admin --hash-password` "
        "prints (only a hash is kept in memory)",
        example="change me: a long passphrase, or its hash", secret=True,
        heading="The admin console (`digest admin`) listens on 127.0.0.1 without a password. "
        "With one it\nasks for it at a login page and may be served on any address, behind "
        "HTTPS.",
    )  # fmt: skip
    #: The file these settings were read from (None: the environment alone).
    config_path: Path | None = None

    def __post_init__(self) -> None:
        if not self.sender_name:  # one brand name: the From name is the site's by default
            object.__setattr__(self, "sender_name", self.site_name)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def sender_domain(self) -> str:
        return self.sender_address.rpartition("@")[2]


SETTINGS = declared(Settings)
SETTING_KEYS = tuple(s.key for s in SETTINGS)


def env_name(key: str) -> str:
    return "DIGEST_" + key.upper()


STARTER_CONFIG = starter_toml(
    "digest configuration. Every key can also be set by an environment variable:\n"
    "DIGEST_<KEY IN CAPITALS>, for example DIGEST_DATABASE_URL or DIGEST_SMTP_URL.\n"
    "These values work as they are for local trials: messages go to ./outbox as files.",
    SETTINGS,
)


def readme_tables() -> dict[str, str]:
    """The README's generated tables, by section (``variables``: the other variables)."""
    names = {key: env_name(key) for key in SETTING_KEYS}
    tables = {s.about.section: "" for s in SETTINGS}
    tables = {section: table.markdown_table(SETTINGS, section, names) for section in tables}
    return tables | {"variables": table.variables_table(OTHER_VARIABLES)}


def load_settings(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    *,
    origin: str | None = None,
) -> Settings:
    """Read the config file (if any) and the environment into a validated :class:`Settings`.

    ``origin`` says where ``path`` came from (such as ``--config``), for the error naming it."""
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    check_environment(env)
    if path is None:
        path = find_config(env, cwd)
    if origin is None and path is not None and env.get("DIGEST_CONFIG") == str(path):
        origin = "DIGEST_CONFIG"
    data = read_config_file(path, origin) if path is not None else {}
    required = [s.key for s in SETTINGS if s.default is REQUIRED]
    if path is None and not any(env.get(env_name(key)) for key in required):
        raise SetupError(
            f"no {CONFIG_FILENAME} in {cwd}: run `digest init` to create one there, "
            f"or set DIGEST_CONFIG (or --config) to your {CONFIG_FILENAME}"
        )
    base_dir = path.parent if path is not None else cwd
    values: dict[str, Any] = {}
    for key, name, default, about in SETTINGS:
        if env.get(env_name(key)):
            values[name] = about.parse(key, env[env_name(key)], "the environment")
        elif key in data:
            values[name] = about.parse(key, data[key], str(path))
        elif default is REQUIRED:
            hint = (
                f"add it to {path} or set the variable"
                if path
                else (f"set the variable, or run `digest init` (no {CONFIG_FILENAME} in {cwd})")
            )
            raise ConfigError(key, f"is missing; {hint}")
        else:
            values[name] = default
    values = {k: base_dir / x if isinstance(x, Path) else x for k, x in values.items()}
    values["database_url"] = v.resolve_sqlite(values["database_url"], base_dir)
    if values["smtp"] is None and values["transport"] == "smtp":
        raise ConfigError("smtp_url", "is missing but transport is smtp")
    v.check_dkim(values)
    v.check_bounces(values)
    return Settings(**values, config_path=path)


def check_environment(env: Mapping[str, str]) -> None:
    """Refuse ``DIGEST_*`` variables that are neither settings nor :data:`OTHER_VARIABLES`."""
    known = [env_name(key) for key in SETTING_KEYS] + list(OTHER_VARIABLES)
    for name in sorted(env):
        if name.startswith("DIGEST_") and name not in known:
            hint = v.did_you_mean(name, known, prefix="DIGEST_") or (
                "digest has no such setting (see Configuration in the README)"
            )
            raise SetupError(f"unknown environment variable {name}: {hint}", key=name)


def find_config(env: Mapping[str, str], cwd: Path) -> Path | None:
    """The config file in use: ``$DIGEST_CONFIG``, else ``./digest.toml`` if it exists."""
    if env.get("DIGEST_CONFIG"):
        return Path(env["DIGEST_CONFIG"])
    candidate = cwd / CONFIG_FILENAME
    return candidate if candidate.is_file() else None


def read_config_file(path: Path, origin: str | None = None) -> dict[str, Any]:
    """The TOML table in ``path``; ``origin`` (``--config``...) is named if it cannot be read."""
    where = f"{origin} names {path}, which" if origin else f"config file {path}"
    if not path.exists():
        raise SetupError(f"{where} does not exist")
    if path.is_dir():
        raise SetupError(f"{where} is a folder, not a file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SetupError(f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise SetupError(f"{path} is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise SetupError(f"{where} cannot be read: {exc.strerror}") from None
    for key in sorted(set(data) - set(SETTING_KEYS)):
        hint = v.did_you_mean(key, SETTING_KEYS)
        problem = f"is not a known setting; {hint}" if hint else "is not a known setting"
        raise ConfigError(key, problem, source=str(path))
    return data


def main(argv: list[str] | None = None) -> int:
    """``python -m digest.config --readme README.md`` rewrites the README's settings tables;
    ``--markdown SECTION`` prints one; ``--starter`` prints the starter digest.toml."""
    parser = argparse.ArgumentParser(prog="python -m digest.config", description=main.__doc__)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--readme", type=Path, metavar="FILE", help="rewrite its tables")
    what.add_argument("--markdown", choices=sorted(readme_tables()), help="print one table")
    what.add_argument("--starter", action="store_true", help="print the starter digest.toml")
    args = parser.parse_args(argv)
    if args.readme:
        text = args.readme.read_text(encoding="utf-8")
        args.readme.write_text(table.refresh_readme(text, readme_tables()), encoding="utf-8")
    else:
        sys.stdout.write(STARTER_CONFIG if args.starter else readme_tables()[args.markdown])
    return 0


if __name__ == "__main__":
    sys.exit(main())
