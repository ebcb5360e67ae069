"""``digest serve``: the subscriber pages on werkzeug's threaded server.

Fine for a small list or behind a reverse proxy that terminates TLS; for more traffic run
``create_app()`` under any WSGI server (gunicorn, uWSGI, waitress). Access-log lines go
through the ``werkzeug`` logger, where tokens are redacted (:mod:`digest.web.security`).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from werkzeug.serving import make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

from digest.config import Settings
from digest.errors import DigestError
from digest.web import create_app


def serve(settings: Settings, *, host: str, port: int, echo: Callable[[str], None] = print) -> None:
    """Serve the subscriber pages until Ctrl-C."""
    run_until_interrupted(
        create_app(settings),
        host,
        port,
        lambda url: echo(f"Subscriber pages on {url} for {settings.base_url} (Ctrl-C stops)."),
    )


def run_until_interrupted(
    app: WSGIApplication, host: str, port: int, announce: Callable[[str], None]
) -> None:
    """Run ``app`` on werkzeug's threaded server until Ctrl-C; ``announce`` gets its URL.
    A port that cannot be bound is one readable error (werkzeug would print its own lines
    and exit, so the socket is bound here and handed over)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        listening = socket.create_server((host, port), family=family)
    except OSError as exc:
        raise DigestError(f"cannot listen on {host}:{port} ({exc.strerror}): try --port") from None
    with listening:
        server = make_server(host, port, app, threaded=True, fd=listening.fileno())
        announce(f"http://{host}:{server.port}/")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
