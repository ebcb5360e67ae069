"""Parsers of setting values: each turns a TOML or environment value into a valid one, or
raises :class:`~digest.errors.ConfigError` naming the setting (and where it came from).

A parser is called as ``parse(key, value, source)``; ``digest.config`` declares which parser
each setting uses. Kept apart from ``digest.config`` so that module holds only the declarations.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email

from digest.errors import ConfigError

TRANSPORTS = ("smtp", "file", "console")
DKIM_ALGORITHMS = ("rsa-sha256", "ed25519-sha256")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: Longest bounce_address local part that still leaves room for ``+<id>-<hmac8>`` (RFC 5321
#: limits a local part to 64 octets; ids up to 19 digits).
MAX_BOUNCE_LOCAL = 64 - len("+-") - 19 - 8
#: The options ``smtp_url`` understands after ``?``.
SMTP_URL_OPTIONS = ("starttls", "timeout", "data_timeout")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

Parser = Callable[[str, Any, str], Any]


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to hand messages to a mail server."""

    host: str
    port: int
    security: str  # "starttls", "tls" (implicit, smtps) or "none"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    #: the wait for the reply to the end of DATA (RFC 5321 §4.5.3.2.6: 10 minutes)
    data_timeout: float = 600.0


def did_you_mean(name: str, known: Iterable[str], *, prefix: str = "") -> str:
    """``"did you mean smtp_url?"`` for the known name nearest ``name``, or ``""``.

    ``prefix`` (such as ``DIGEST_``) is left out of the comparison, so a shared prefix does
    not make unrelated names look alike."""
    names = {k.removeprefix(prefix).lower(): k for k in known}
    close = difflib.get_close_matches(name.removeprefix(prefix).lower(), list(names), n=1)
    return f"did you mean {names[close[0]]}?" if close else ""


def plain_text(key: str, value: Any, source: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f"expected text, got {type(value).__name__}", source=source)
    text: str = value.strip()
    if not text:
        raise ConfigError(key, "is empty", source=source)
    if "\r" in text or "\n" in text:
        raise ConfigError(key, "must be on one line", source=source)
    return text


def https_url(key: str, value: Any, source: str) -> str:
    text = plain_text(key, value, source).rstrip("/")
    parts = urlsplit(text)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError(key, f"must be an https:// URL, got {text!r}", source=source)
    return text


def email_address(key: str, value: Any, source: str) -> str:
    text = plain_text(key, value, source)
    try:
        return str(validate_email(text, check_deliverability=False).normalized)
    except EmailNotValidError as exc:
        raise ConfigError(
            key, f"{text!r} is not a valid email address ({exc})", source=source
        ) from None


def whole_number(low: int, high: int) -> Callable[[str, Any, str], int]:
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


def time_zone(key: str, value: Any, source: str) -> str:
    text = plain_text(key, value, source)
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            key, f"{text!r} is not an IANA time zone such as Europe/London", source=source
        ) from None
    return text


def list_id(key: str, value: Any, source: str) -> str:
    text = plain_text(key, value, source)
    if len(text) > 255 or not re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+", text):
        raise ConfigError(
            key, f"{text!r} must be a dotted name such as weekly.example.org", source=source
        )
    return text


def hex_color(key: str, value: Any, source: str) -> str:
    text = plain_text(key, value, source)
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", text):
        raise ConfigError(key, f"must be a colour like #1d4f91, got {text!r}", source=source)
    return text.lower()


def one_of(*choices: str) -> Callable[[str, Any, str], str]:
    def parse(key: str, value: Any, source: str) -> str:
        text = plain_text(key, value, source).lower()
        if text not in choices:
            raise ConfigError(key, f"must be one of {', '.join(choices)}", source=source)
        return text

    return parse


def time_of_day(key: str, value: Any, source: str) -> str:
    text = plain_text(key, value, source)
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", text)
    if not match:
        raise ConfigError(key, f"must be a time of day such as 08:00, got {text!r}", source=source)
    return f"{int(match[1]):02d}:{match[2]}"


def number(low: float, high: float) -> Callable[[str, Any, str], float]:
    def parse(key: str, value: Any, source: str) -> float:
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise ConfigError(key, f"expected a number, got {value!r}", source=source) from None
        if isinstance(value, bool) or not low <= number <= high:
            raise ConfigError(key, f"must be between {low:g} and {high:g}", source=source)
        return number

    return parse


def boolean(key: str, value: Any, source: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(key, "must be true or false", source=source)


def language_tag(key: str, value: Any, source: str) -> str:
    text = plain_text(key, value, source)
    if not re.fullmatch(r"[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*", text) or text.lower() == "und":
        raise ConfigError(key, "must be a language tag such as en or en-GB", source=source)
    return text


def dns_name(min_labels: int) -> Callable[[str, Any, str], str]:
    label = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"

    def parse(key: str, value: Any, source: str) -> str:
        text = plain_text(key, value, source).lower().rstrip(".")
        if len(text) > 253 or not re.fullmatch(rf"{label}(?:\.{label}){{{min_labels - 1},}}", text):
            example = "example.org" if min_labels > 1 else "digest2026"
            raise ConfigError(key, f"{text!r} must be a DNS name such as {example}", source=source)
        return text

    return parse


def secret(key: str, value: Any, source: str) -> str:
    text = plain_text(key, value, source)
    if len(text) < 16:
        raise ConfigError(
            key, "must be at least 16 characters (use a random string)", source=source
        )
    return text


#: A password hash as werkzeug's ``generate_password_hash`` writes it (``digest admin
#: --hash-password`` prints one): ``method$salt$hash``.
PASSWORD_HASH = re.compile(
    r"(scrypt:\d+:\d+:\d+|pbkdf2:sha(256|512)(:\d+)?)\$[^$\s]+\$[0-9a-f]{32,}"
)
MIN_PASSWORD = 12


def password(key: str, value: Any, source: str) -> str:
    """A password of at least :data:`MIN_PASSWORD` characters, or the hash of one."""
    text = plain_text(key, value, source)
    if PASSWORD_HASH.fullmatch(text) is None and len(text) < MIN_PASSWORD:
        raise ConfigError(
            key,
            f"must be at least {MIN_PASSWORD} characters, or a hash made by "
            "`digest admin --hash-password`",
            source=source,
        )
    return text


def ip_networks(key: str, value: Any, source: str) -> str:
    """Comma-separated IP addresses or networks (``10.0.0.0/8``), normalised."""
    if isinstance(value, list):
        value = ", ".join(str(item) for item in value)
    text = plain_text(key, value, source)
    networks = []
    for part in (p.strip() for p in text.split(",")):
        try:
            networks.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ConfigError(
                key, f"{part[:60]!r} is not an IP address or network", source=source
            ) from None
    return ", ".join(networks)


def domain_aligned(domain: str, from_domain: str) -> bool:
    """True when ``domain`` equals ``from_domain`` or is a parent of it (relaxed DMARC
    alignment, RFC 7489 §3.1.1), never for a bare top-level name such as ``org``."""
    domain, from_domain = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    if "." not in domain:
        return False
    return from_domain == domain or from_domain.endswith("." + domain)


def last_two_labels(domain: str) -> str:
    return ".".join(domain.lower().rstrip(".").split(".")[-2:])


def parse_smtp_url(url: str, *, source: str = "environment") -> SmtpSettings:
    """``smtp://user:pass@host:587?starttls=true``, ``smtps://host:465``, ``smtp://127.0.0.1:25``.

    ``smtp://`` uses STARTTLS unless the host is a loopback address or ``?starttls=false``.
    """
    key = "smtp_url"
    parts = urlsplit(plain_text(key, url, source))
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigError(
            key, "must look like smtp://user:pass@host:587 or smtps://host:465", source=source
        )
    query = {k: v[-1].lower() for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    for option in query:
        if option not in SMTP_URL_OPTIONS:
            hint = did_you_mean(option, SMTP_URL_OPTIONS) or "known: " + ", ".join(SMTP_URL_OPTIONS)
            raise ConfigError(key, f"unknown option {option!r}; {hint}", source=source)
    timeout = _seconds(query, "timeout", 30.0, source)
    data_timeout = _seconds(query, "data_timeout", 600.0, source)
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
        data_timeout=data_timeout,
    )


def _seconds(query: dict[str, str], option: str, default: float, source: str) -> float:
    """An ``smtp_url`` option that is a positive number of seconds."""
    if option not in query:
        return default
    try:
        seconds = float(query[option])
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigError(
            "smtp_url", f"{option} must be a positive number of seconds", source=source
        )
    return seconds


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def smtp_url(key: str, value: Any, source: str) -> SmtpSettings:
    """The ``smtp_url`` setting, as a parser like the others."""
    return parse_smtp_url(value, source=source)


def path(key: str, value: Any, source: str) -> Path:
    """A file or folder; relative ones are taken from the config file's folder later."""
    return Path(plain_text(key, value, source))


def check_dkim(values: dict[str, Any]) -> None:
    """DKIM settings go together. The key itself is loaded (and checked) by
    :class:`digest.mail.dkim.DkimSigner`."""
    selector, key_file = values["dkim_selector"], values["dkim_key_file"]
    if selector is None:
        for other in ("dkim_key_file", "dkim_domain"):
            if values[other] is not None:
                raise ConfigError("dkim_selector", f"is missing but {other} is set")
        return
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
    if not key_file.is_file():
        raise ConfigError("dkim_key_file", f"file {key_file} does not exist")


def check_bounces(values: dict[str, Any]) -> None:
    """A VERP bounce address needs its secret and must align with the sender."""
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
    if last_two_labels(domain) != last_two_labels(sender_domain):
        raise ConfigError(
            "bounce_address",
            f"domain {domain!r} must be in the sender's domain {sender_domain!r} "
            "(SPF alignment for DMARC)",
        )


def resolve_sqlite(url: str, base_dir: Path) -> str:
    """Make ``sqlite:///relative.db`` relative to the config file's folder."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str((base_dir / url[len(prefix) :]).resolve())
    return url
