"""``digest serve``: the subscriber pages on werkzeug's threaded server.

Fine for a small list or behind a reverse proxy that terminates TLS; for more traffic run
``create_app()`` under any WSGI server (gunicorn, uWSGI, waitress). Access-log lines go
through the ``werkzeug`` logger, where tokens are redacted (:mod:`digest.web.security`).
"""

from __future__ import annotations

from collections.abc import Callable

from werkzeug.serving import make_server

from digest.config import Settings
from digest.errors import DigestError
from digest.web import create_app


def serve(settings: Settings, *, host: str, port: int, echo: Callable[[str], None] = print) -> None:
    """Serve the subscriber pages until Ctrl-C."""
    app = create_app(settings)
    try:
        server = make_server(host, port, app, threaded=True)
    except OSError as exc:
        raise DigestError(f"cannot listen on {host}:{port} ({exc.strerror}): try --port") from None
    echo(
        f"Subscriber pages on http://{host}:{server.port}/ for {settings.base_url} (Ctrl-C stops)."
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
