"""``digest admin``: the console on werkzeug's threaded server, on 127.0.0.1 unless a
password is set."""

from __future__ import annotations

from collections.abc import Callable

from digest.config import Settings
from digest.config_values import is_loopback
from digest.errors import DigestError
from digest.web.admin import create_admin_app
from digest.web.server import run_until_interrupted


def check_bind(settings: Settings, host: str) -> None:
    """Refuse to serve the console on an address other machines reach, without a password."""
    if not is_loopback(host) and not settings.admin_password:
        raise DigestError(
            f"the admin console listens on {host!r} only with a password: set admin_password "
            "(or DIGEST_ADMIN_PASSWORD) and serve it behind HTTPS, or use 127.0.0.1 "
            "(reach it through an SSH tunnel)"
        )


def serve_admin(
    settings: Settings, *, host: str, port: int, echo: Callable[[str], None] = print
) -> None:
    """Serve the console until Ctrl-C."""
    check_bind(settings, host)
    login = " (sign in with admin_password)" if settings.admin_password else ""
    run_until_interrupted(
        create_admin_app(settings),
        host,
        port,
        lambda url: echo(f"Admin console on {url}admin/{login} (Ctrl-C stops it)."),
    )
