"""``digest init`` (config and schema) and ``digest demo`` (sample data in an empty folder)."""

from __future__ import annotations

from pathlib import Path

import click

from digest.cli.base import Context, out, pass_app, shown_path
from digest.cli.send import run_and_report
from digest.config import CONFIG_FILENAME, STARTER_CONFIG
from digest.errors import DigestError
from digest.store import schema
from digest.store.db import make_engine, session_factory, transaction


@click.command()
@pass_app
def init(app: Context) -> None:
    """Create digest.toml (if there is none) and the database, or migrate it to the latest schema.

    \b
    Example:
      digest init && digest categories list
    """
    if not app.config_path and not Path(CONFIG_FILENAME).exists():
        Path(CONFIG_FILENAME).write_text(STARTER_CONFIG, encoding="utf-8")
        out.print(f"Wrote a starter {CONFIG_FILENAME}: edit it before sending real email.")
    engine = make_engine(app.settings.database_url)
    schema.upgrade(engine)
    out.print(
        f"Database ready at schema {schema.current_revision(engine)}: "
        f"{engine.url.render_as_string(hide_password=True)}"
    )


@click.command()
@pass_app
def demo(app: Context) -> None:
    """Try digest in an empty folder: sample data, then this week's edition into ./outbox.

    Running it again sends nothing new, and says so. It refuses to run where a digest.toml
    or a database exists that the demo did not create, so it never touches a real list.

    \b
    Example:
      mkdir try-digest && cd try-digest && digest demo
    """
    from digest.sources.demo import DEMO_MARKER, REFUSAL, config_is_demo, foreign_data, load_demo

    config = Path(app.config_path or CONFIG_FILENAME)
    if config.exists() and not config_is_demo(config):
        raise DigestError(
            f"this folder has a {config.name} that digest demo did not create: {REFUSAL}"
        )
    wrote = not config.exists() and not app.config_path
    if wrote:
        config.write_text(f"{DEMO_MARKER}\n{STARTER_CONFIG}", encoding="utf-8")
    settings = app.settings
    engine = make_engine(settings.database_url)
    foreign = foreign_data(engine)
    if foreign:  # e.g. DIGEST_DATABASE_URL names a real list's database
        if wrote:
            config.unlink()
        raise DigestError(
            f"this folder has a database that digest demo did not create ({foreign}): {REFUSAL}"
        )
    if wrote:
        out.print(f"Wrote {CONFIG_FILENAME} (sample settings, file outbox).")
    schema.upgrade(engine)
    now = app.now
    with transaction(session_factory(engine)) as session:
        loaded = load_demo(session, now=now)
    if loaded.summaries_added or loaded.subscribers_added:
        out.print(
            f"Loaded sample data: {loaded.summaries_added} summaries, "
            f"{loaded.subscribers_added} subscribers."
        )
    report = run_and_report(settings, "file", dry_run=False, engine=engine, now=now)
    folder = settings.outbox_dir / report.key
    if report.sent:
        out.print(f"\nLook at {shown_path(folder)}/")
        out.print("  *.eml          one message per reader (open with any mail program)")
        out.print("  variant-NN.html one file per distinct digest (open in a browser)")
    out.print(
        "Preview any reader: digest preview --categories pharmacology,neurology --out preview"
    )
