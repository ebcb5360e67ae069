"""``digest serve``: the subscriber pages (unsubscribe, preferences, sign-up, archive)."""

from __future__ import annotations

import click

from digest.cli.base import Context, out, pass_app


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@pass_app
def serve(app: Context, host: str, port: int) -> None:
    """Serve the subscriber pages: one-click unsubscribe (/u/<token>), preferences
    (/p/<token>), sign-up (/subscribe), confirmation (/confirm/<token>), the web version
    of each digest (/v/<id>), the archive (/archive) and Atom feeds (/feeds/<topic>.atom).

    Put it behind an HTTPS reverse proxy that forwards base_url to it; or run
    'digest.web:create_app()' under any WSGI server.

    \b
    Example:
      digest serve --host 127.0.0.1 --port 8000
    """
    from digest.web.server import serve as serve_pages

    serve_pages(app.settings, host=host, port=port, echo=out.print)
