"""``digest admin``: the admin console (this week's edition, previews, the list, health)."""

from __future__ import annotations

import click

from digest.cli.base import Context, out, pass_app


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; any other than 127.0.0.1 needs admin_password.",
)
@click.option("--port", default=8025, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--hash-password",
    is_flag=True,
    help="Ask for a password and print its hash for admin_password; serve nothing.",
)
@pass_app
def admin(app: Context, host: str, port: int, hash_password: bool) -> None:
    """Serve the admin console: this week's edition (preflight, previews, test sends, send
    and cancel), the list and its health, at http://127.0.0.1:8025/admin/.

    Without admin_password (or DIGEST_ADMIN_PASSWORD) it listens on 127.0.0.1 only (reach
    it through an SSH tunnel); with one it asks for it and may listen anywhere, behind an
    HTTPS reverse proxy (its session cookie is Secure).

    \b
    Example:
      digest admin                       # then open http://127.0.0.1:8025/admin/
      digest admin --hash-password       # a hash to put in admin_password
    """
    if hash_password:
        from werkzeug.security import generate_password_hash

        from digest.config_values import password

        given = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        password("admin_password", given, "the prompt")
        out.print(generate_password_hash(given))
        return
    from digest.web.admin.serve import serve_admin

    serve_admin(app.settings, host=host, port=port, echo=out.print)
