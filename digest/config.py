"""Settings: read once at the edge from ``digest.toml`` and the environment, then passed down.

Every key can be set in the TOML file or overridden by the environment variable
``DIGEST_<KEY>`` (``database_url`` -> ``DIGEST_DATABASE_URL``). The file is ``./digest.toml``
or the one named by ``DIGEST_CONFIG``. Relative paths in the file (SQLite database, outbox,
templates) are taken relative to the file's folder, so cron can run from anywhere.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email

from digest.errors import ConfigError

CONFIG_FILENAME = "digest.toml"
TRANSPORTS = ("smtp", "file", "console")
DKIM_ALGORITHMS = ("rsa-sha256", "ed25519-sha256")
#: Longest bounce_address local part that still leaves room for ``+<id>-<hmac8>`` (RFC 5321
#: limits a local part to 64 octets; ids up to 19 digits).
MAX_BOUNCE_LOCAL = 64 - len("+-") - 19 - 8
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to hand messages to a mail server."""

    host: str
    port: int
    security: str  # "starttls", "tls" (implicit, smtps) or "none"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0


@dataclass(frozen=True)
class Settings:
    """Everything digest needs to know, validated. Build it with :func:`load_settings`."""

    site_name: str
    site_url: str
    base_url: str
    sender_name: str
    sender_address: str
    postal_address: str
    list_id: str
    database_url: str
    reply_to: str | None = None
    unsubscribe_mailto: str | None = None
    timezone: str = "UTC"
    language: str = "en"
    brand_color: str = "#1d4f91"
    card_cap: int = 15
    lookback_days: int = 7
    transport: str = "file"
    outbox_dir: Path = Path("outbox")
    smtp: SmtpSettings | None = None
    templates_dir: Path | None = None
    send_batch_size: int = 500
    smtp_connections: int = 4
    rate_per_second: float = 0.0
    rate_per_hour: int = 0
    send_retries: int = 3
    retry_base_seconds: float = 10.0
    send_day: str = "mon"
    send_time: str = "08:00"
    local_delivery: bool = False
    misfire_grace_hours: int = 144
    config_path: Path | None = None
    # DKIM (on when dkim_selector is set) and VERP bounces (on when bounce_address is set).
    dkim_selector: str | None = None
    dkim_domain: str | None = None  # None: the sender's domain
    dkim_key_file: Path | None = None
    dkim_algorithm: str = "rsa-sha256"
    bounce_address: str | None = None
    verp_secret: str | None = field(default=None, repr=False)
    #: Enables POST /bounces/json and /bounces/ses on `digest serve` (bounce webhooks).
    bounce_webhook_secret: str | None = field(default=None, repr=False)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def sender_domain(self) -> str:
        return self.sender_address.rpartition("@")[2]


def env_name(key: str) -> str:
    return "DIGEST_" + key.upper()


def _text(key: str, value: Any, source: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f"expected text, got {type(value).__name__}", source=source)
    text: str = value.strip()
    if not text:
        raise ConfigError(key, "is empty", source=source)
    if "\r" in text or "\n" in text:
        raise ConfigError(key, "must be on one line", source=source)
    return text


def _https_url(key: str, value: Any, source: str) -> str:
    text = _text(key, value, source).rstrip("/")
    parts = urlsplit(text)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError(key, f"must be an https:// URL, got {text!r}", source=source)
    return text


def _email(key: str, value: Any, source: str) -> str:
    text = _text(key, value, source)
    try:
        return str(validate_email(text, check_deliverability=False).normalized)
    except EmailNotValidError as exc:
        raise ConfigError(
            key, f"{text!r} is not a valid email address ({exc})", source=source
        ) from None


def _int_in(low: int, high: int) -> Callable[[str, Any, str], int]:
    def parse(key: str, value: Any, source: str) -> int:
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise ConfigError(
                    key, f"expected a whole number, got {value!r}", source=source
                ) from None
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(key, "expected a whole number", source=source)
        if not low <= value <= high:
            raise ConfigError(key, f"must be between {low} and {high}, got {value}", source=source)
        return value

    return parse


def _timezone(key: str, value: Any, source: str) -> str:
    text = _text(key, value, source)
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            key, f"{text!r} is not an IANA time zone such as Europe/London", source=source
        ) from None
    return text


def _list_id(key: str, value: Any, source: str) -> str:
    text = _text(key, value, source)
    if len(text) > 255 or not re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+", text):
        raise ConfigError(
            key, f"{text!r} must be a dotted name such as weekly.example.org", source=source
        )
    return text


def _color(key: str, value: Any, source: str) -> str:
    text = _text(key, value, source)
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", text):
        raise ConfigError(key, f"must be a colour like #1d4f91, got {text!r}", source=source)
    return text.lower()


def _choice(*choices: str) -> Callable[[str, Any, str], str]:
    def parse(key: str, value: Any, source: str) -> str:
        text = _text(key, value, source).lower()
        if text not in choices:
            raise ConfigError(key, f"must be one of {', '.join(choices)}", source=source)
        return text

    return parse


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _clock(key: str, value: Any, source: str) -> str:
    text = _text(key, value, source)
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", text)
    if not match:
        raise ConfigError(key, f"must be a time of day such as 08:00, got {text!r}", source=source)
    return f"{int(match[1]):02d}:{match[2]}"


def _number_in(low: float, high: float) -> Callable[[str, Any, str], float]:
    def parse(key: str, value: Any, source: str) -> float:
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise ConfigError(key, f"expected a number, got {value!r}", source=source) from None
        if isinstance(value, bool) or not low <= number <= high:
            raise ConfigError(key, f"must be between {low:g} and {high:g}", source=source)
        return number

    return parse


def _bool(key: str, value: Any, source: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(key, "must be true or false", source=source)


def _language(key: str, value: Any, source: str) -> str:
    text = _text(key, value, source)
    if not re.fullmatch(r"[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*", text) or text.lower() == "und":
        raise ConfigError(key, "must be a language tag such as en or en-GB", source=source)
    return text


def _dns_name(min_labels: int) -> Callable[[str, Any, str], str]:
    label = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"

    def parse(key: str, value: Any, source: str) -> str:
        text = _text(key, value, source).lower().rstrip(".")
        if len(text) > 253 or not re.fullmatch(rf"{label}(?:\.{label}){{{min_labels - 1},}}", text):
            example = "example.org" if min_labels > 1 else "digest2026"
            raise ConfigError(key, f"{text!r} must be a DNS name such as {example}", source=source)
        return text

    return parse


def _secret(key: str, value: Any, source: str) -> str:
    text = _text(key, value, source)
    if len(text) < 16:
        raise ConfigError(
            key, "must be at least 16 characters (use a random string)", source=source
        )
    return text


def domain_aligned(domain: str, from_domain: str) -> bool:
    """True when ``domain`` equals ``from_domain`` or is a parent of it (relaxed DMARC
    alignment, RFC 7489 §3.1.1), never for a bare top-level name such as ``org``."""
    domain, from_domain = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    if "." not in domain:
        return False
    return from_domain == domain or from_domain.endswith("." + domain)


def _last_two_labels(domain: str) -> str:
    return ".".join(domain.lower().rstrip(".").split(".")[-2:])


def parse_smtp_url(url: str, *, source: str = "environment") -> SmtpSettings:
    """``smtp://user:pass@host:587?starttls=true``, ``smtps://host:465``, ``smtp://127.0.0.1:25``.

    ``smtp://`` uses STARTTLS unless the host is a loopback address or ``?starttls=false``.
    """
    key = "smtp_url"
    parts = urlsplit(_text(key, url, source))
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigError(
            key, "must look like smtp://user:pass@host:587 or smtps://host:465", source=source
        )
    query = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
    timeout = 30.0
    if "timeout" in query:
        try:
            timeout = float(query["timeout"])
        except ValueError:
            raise ConfigError(key, "timeout must be a number of seconds", source=source) from None
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(key, "has an invalid port", source=source) from None
    if parts.scheme == "smtps":
        security = "tls"
    else:
        starttls = query.get("starttls")
        if starttls is None:
            security = "none" if is_loopback(parts.hostname) else "starttls"
        elif starttls in _TRUE:
            security = "starttls"
        elif starttls in _FALSE:
            security = "none"
        else:
            raise ConfigError(key, "starttls must be true or false", source=source)
    return SmtpSettings(
        host=parts.hostname,
        port=port or (465 if security == "tls" else 587 if security == "starttls" else 25),
        security=security,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        timeout=timeout,
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# key -> (parser, default or REQUIRED). Order is the order of the starter file.
REQUIRED = object()
_Parser = Callable[[str, Any, str], Any]
_FIELDS: dict[str, tuple[_Parser, Any]] = {
    "site_name": (_text, REQUIRED),
    "site_url": (_https_url, REQUIRED),
    "base_url": (_https_url, REQUIRED),
    "sender_name": (_text, REQUIRED),
    "sender_address": (_email, REQUIRED),
    "reply_to": (_email, None),
    "postal_address": (_text, REQUIRED),
    "list_id": (_list_id, REQUIRED),
    "unsubscribe_mailto": (_email, None),
    "timezone": (_timezone, "UTC"),
    "language": (_language, "en"),
    "brand_color": (_color, "#1d4f91"),
    "card_cap": (_int_in(1, 50), 15),
    "lookback_days": (_int_in(1, 365), 7),
    "transport": (_choice(*TRANSPORTS), "file"),
    "database_url": (_text, "sqlite:///digest.sqlite3"),
    "outbox_dir": (_text, "outbox"),
    "smtp_url": (_text, None),
    "templates_dir": (_text, None),
    "send_batch_size": (_int_in(1, 10_000), 500),
    "smtp_connections": (_int_in(1, 32), 4),
    "rate_per_second": (_number_in(0, 100_000), 0.0),
    "rate_per_hour": (_int_in(0, 100_000_000), 0),
    "send_retries": (_int_in(0, 10), 3),
    "retry_base_seconds": (_number_in(0, 3600), 10.0),
    "send_day": (_choice(*WEEKDAYS), "mon"),
    "send_time": (_clock, "08:00"),
    "local_delivery": (_bool, False),
    "misfire_grace_hours": (_int_in(1, 167), 144),
    "dkim_selector": (_dns_name(1), None),
    "dkim_domain": (_dns_name(2), None),
    "dkim_key_file": (_text, None),
    "dkim_algorithm": (_choice(*DKIM_ALGORITHMS), "rsa-sha256"),
    "bounce_address": (_email, None),
    "verp_secret": (_secret, None),
    "bounce_webhook_secret": (_secret, None),
}
SETTING_KEYS = tuple(_FIELDS)


def find_config(env: Mapping[str, str], cwd: Path) -> Path | None:
    """The config file in use: ``$DIGEST_CONFIG``, else ``./digest.toml`` if it exists."""
    if env.get("DIGEST_CONFIG"):
        path = Path(env["DIGEST_CONFIG"])
        if not path.is_file():
            raise ConfigError("config", f"file {path} does not exist")
        return path
    candidate = cwd / CONFIG_FILENAME
    return candidate if candidate.is_file() else None


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("config", f"cannot read {path}: {exc}") from None
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ConfigError(unknown[0], "is not a known setting", source=str(path))
    return data


def load_settings(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Read the config file (if any) and the environment into a validated :class:`Settings`."""
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    path = path if path is not None else find_config(env, cwd)
    data = read_config_file(path) if path is not None else {}
    base_dir = path.parent if path is not None else cwd
    values: dict[str, Any] = {}
    for key, (parse, default) in _FIELDS.items():
        if env.get(env_name(key)):
            raw, source = env[env_name(key)], "the environment"
        elif key in data:
            raw, source = data[key], str(path)
        elif default is REQUIRED:
            hint = f"add it to {path}" if path else "run `digest init` to create digest.toml"
            raise ConfigError(key, f"is missing; {hint} or set the variable")
        else:
            values[key] = default
            continue
        values[key] = parse(key, raw, source)

    smtp = None
    if values["smtp_url"] is not None:
        smtp = parse_smtp_url(values["smtp_url"])
    elif values["transport"] == "smtp":
        raise ConfigError("smtp_url", "is missing but transport is smtp")
    dkim_key_file = _check_dkim(values, base_dir)
    _check_bounces(values)
    return Settings(
        site_name=values["site_name"],
        site_url=values["site_url"],
        base_url=values["base_url"],
        sender_name=values["sender_name"],
        sender_address=values["sender_address"],
        postal_address=values["postal_address"],
        list_id=values["list_id"],
        database_url=_resolve_sqlite(values["database_url"], base_dir),
        reply_to=values["reply_to"],
        unsubscribe_mailto=values["unsubscribe_mailto"],
        timezone=values["timezone"],
        language=values["language"],
        brand_color=values["brand_color"],
        card_cap=values["card_cap"],
        lookback_days=values["lookback_days"],
        transport=values["transport"],
        outbox_dir=base_dir / values["outbox_dir"],
        smtp=smtp,
        templates_dir=base_dir / values["templates_dir"] if values["templates_dir"] else None,
        send_batch_size=values["send_batch_size"],
        smtp_connections=values["smtp_connections"],
        rate_per_second=values["rate_per_second"],
        rate_per_hour=values["rate_per_hour"],
        send_retries=values["send_retries"],
        retry_base_seconds=values["retry_base_seconds"],
        send_day=values["send_day"],
        send_time=values["send_time"],
        local_delivery=values["local_delivery"],
        misfire_grace_hours=values["misfire_grace_hours"],
        config_path=path,
        dkim_selector=values["dkim_selector"],
        dkim_domain=values["dkim_domain"],
        dkim_key_file=dkim_key_file,
        dkim_algorithm=values["dkim_algorithm"],
        bounce_address=values["bounce_address"],
        verp_secret=values["verp_secret"],
        bounce_webhook_secret=values["bounce_webhook_secret"],
    )


def _check_dkim(values: dict[str, Any], base_dir: Path) -> Path | None:
    """DKIM settings go together; returns the key file's path. The key itself is loaded
    (and checked) by :class:`digest.mail.dkim.DkimSigner`."""
    selector, key_file = values["dkim_selector"], values["dkim_key_file"]
    if selector is None:
        for other in ("dkim_key_file", "dkim_domain"):
            if values[other] is not None:
                raise ConfigError("dkim_selector", f"is missing but {other} is set")
        return None
    if key_file is None:
        raise ConfigError("dkim_key_file", "is missing but dkim_selector is set")
    sender_domain = values["sender_address"].rpartition("@")[2]
    domain = values["dkim_domain"] or sender_domain
    if not domain_aligned(domain, sender_domain):
        raise ConfigError(
            "dkim_domain",
            f"{domain!r} must be the sender's domain {sender_domain!r} or a parent of it "
            "(DMARC alignment)",
        )
    path: Path = base_dir / key_file
    if not path.is_file():
        raise ConfigError("dkim_key_file", f"file {path} does not exist")
    return path


def _check_bounces(values: dict[str, Any]) -> None:
    bounce = values["bounce_address"]
    if bounce is None:
        return
    if values["verp_secret"] is None:
        raise ConfigError(
            "verp_secret",
            "is missing but bounce_address is set; make one with "
            "python -c 'import secrets; print(secrets.token_hex(32))'",
        )
    local, _, domain = bounce.rpartition("@")
    if len(local) > MAX_BOUNCE_LOCAL or '"' in local:
        raise ConfigError(
            "bounce_address",
            f"local part must be plain and at most {MAX_BOUNCE_LOCAL} characters "
            "(VERP adds +<id>-<check>)",
        )
    sender_domain = values["sender_address"].rpartition("@")[2]
    if _last_two_labels(domain) != _last_two_labels(sender_domain):
        raise ConfigError(
            "bounce_address",
            f"domain {domain!r} must be in the sender's domain {sender_domain!r} "
            "(SPF alignment for DMARC)",
        )


def _resolve_sqlite(url: str, base_dir: Path) -> str:
    """Make ``sqlite:///relative.db`` relative to the config file's folder."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str((base_dir / url[len(prefix) :]).resolve())
    return url


STARTER_CONFIG = """\
# digest configuration. Every key can also be set by an environment variable:
# DIGEST_<KEY IN CAPITALS>, for example DIGEST_DATABASE_URL or DIGEST_SMTP_URL.
# These values work as they are for local trials: messages go to ./outbox as files.

# The site whose summaries are sent, shown in every email.
site_name = "Spinal Cord Research Help (sample)"
site_url = "https://example.org"

# Where the subscriber pages (unsubscribe, preferences) are served. Must be https.
base_url = "https://example.org/digest"

# Who the email comes from. Use an address at a domain you control (SPF, DKIM, DMARC).
sender_name = "Spinal Cord Research Digest"
sender_address = "digest@example.org"
# reply_to = "editors@example.org"

# A real postal address is required in bulk mail (CAN-SPAM); it is shown in every footer.
postal_address = "Example Foundation, 1 Example Street, Springfield 00000, Country"

# A stable dotted name for this list (List-Id header, RFC 2919), in your own domain.
list_id = "weekly.digest.example.org"
# unsubscribe_mailto = "unsubscribe@example.org"

# Editions are keyed by ISO week in this IANA time zone.
timezone = "UTC"
language = "en"
brand_color = "#1d4f91"

# At most this many summaries per email (Gmail clips HTML over about 100 KB);
# the rest are linked on the site.
card_cap = 15
# A new subscriber's first digest covers this many days before they joined.
lookback_days = 7

# smtp, file (one .eml per message in outbox_dir) or console.
transport = "file"
outbox_dir = "outbox"
# smtp_url = "smtp://user:password@smtp.example.org:587?starttls=true"
# Connections to the SMTP server used at once, and the sending rate for the whole run
# (all connections and workers together; 0 = no limit). On 421/451 deferrals the rate
# halves and then recovers.
smtp_connections = 4
rate_per_second = 0
rate_per_hour = 0
# Temporary failures (4xx, dropped connections) are retried this many times per run, with
# exponential back-off from retry_base_seconds (with jitter); 5xx failures never are.
send_retries = 3
retry_base_seconds = 10
# How many ledger rows a sender claims at a time. Outcomes are recorded every 100
# messages, so after a crash about that many (at most a batch) may go out twice, with
# their original Message-ID.
send_batch_size = 500

# When the weekly edition goes out (python scheduler.py, or cron with `digest send --due`),
# in the list's time zone. With local_delivery, each reader gets it at send_time in their own
# time zone instead (the scheduler then runs hourly).
send_day = "mon"
send_time = "08:00"
local_delivery = false
# After downtime, a missed send still runs (once) if it is at most this many hours late.
misfire_grace_hours = 144

# SQLite file next to this config by default; PostgreSQL: postgresql+psycopg://user@host/db
database_url = "sqlite:///digest.sqlite3"

# Your own copy of the templates (digest templates copy DIR) instead of the built-in ones.
# templates_dir = "templates"

# DKIM signing, on when dkim_selector is set. Publish the public key as a TXT record at
# <dkim_selector>._domainkey.<dkim_domain>. dkim_domain defaults to the sender_address domain
# and must be that domain or a parent of it. The key file is a PEM private key (RSA, 2048
# bits, or ed25519), relative to this file.
# dkim_selector = "digest2026"
# dkim_domain = "example.org"
# dkim_key_file = "dkim-private.pem"
# dkim_algorithm = "rsa-sha256"   # or "ed25519-sha256"

# Bounces: with bounce_address, each message's envelope sender is
# bounces+<delivery id>-<check>@example.org (VERP), so a bounce names its delivery.
# The mailbox must accept bounces+anything@ (Postfix: recipient_delimiter = +).
# verp_secret signs the <check>; keep it secret and stable (changing it orphans old bounces).
# bounce_address = "bounces@example.org"
# verp_secret = "change me: python -c 'import secrets; print(secrets.token_hex(32))'"
# With a secret, `digest serve` also takes bounce webhooks: POST /bounces/json (header
# X-Digest-Secret) and /bounces/ses (Amazon SNS, signature verified).
# bounce_webhook_secret = "change me: at least 16 random characters"
"""
