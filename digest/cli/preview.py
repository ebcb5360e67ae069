"""``digest preview``, ``digest check`` and ``digest templates``: see a digest before it goes."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import webbrowser
from pathlib import Path

import click

from digest.cli.base import Context, out, pass_app
from digest.errors import DigestError, PreflightError
from digest.render.renderer import builtin_templates_dir

_UNSAFE = re.compile(r"[^A-Za-z0-9@._+-]")


@click.command()
@click.option("--subscriber", metavar="EMAIL", help="Preview what this subscriber gets.")
@click.option(
    "--categories", metavar="A,B", help="Preview a reader of these categories (slugs or names)."
)
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M"]),
    help="With --categories: start of the window (default: the previous edition's cutoff).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="preview",
    show_default=True,
    help="Folder for the .html, .txt and .eml files.",
)
@click.option("--open", "open_it", is_flag=True, help="Open the HTML in the default browser.")
@click.option("--serve", is_flag=True, help="Serve the admin console instead (`digest admin`).")
@click.option("--port", default=8025, show_default=True, help="Port of the admin console.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Others need admin_password.")
@pass_app
def preview(
    app: Context,
    subscriber: str | None,
    categories: str | None,
    since: dt.datetime | None,
    out_dir: str,
    open_it: bool,
    serve: bool,
    port: int,
    host: str,
) -> None:
    """Write exactly what a reader gets this week (no ledger row is touched), or, with
    --serve, start the admin console, whose "This week" page shows every variant at phone
    and desktop widths (the same as `digest admin`).

    \b
    Examples:
      digest preview --subscriber ada@example.org --open
      digest preview --categories pharmacology,neurology --out preview
      digest preview --serve --port 8025      # then open http://127.0.0.1:8025/admin/
    """
    from digest.preview.reader import Preview, preview_categories, preview_subscriber

    settings = app.settings
    if serve:
        from digest.web.admin.serve import check_bind, serve_admin

        check_bind(settings, host)
        out.print("The preview server is now the admin console (`digest admin`).")
        serve_admin(settings, host=host, port=port, echo=out.print)
        return
    if bool(subscriber) == bool(categories):
        raise DigestError("name a reader: --subscriber EMAIL or --categories A,B")
    if since and not categories:
        raise DigestError("--since goes with --categories (a subscriber has their own window)")
    result: Preview
    if subscriber:
        result = preview_subscriber(settings, subscriber, now=app.now)
        stem = _UNSAFE.sub("_", subscriber.strip().lower())
    else:
        labels = [label for label in (categories or "").split(",") if label.strip()]
        since_utc = since.replace(tzinfo=settings.zone).astimezone(dt.UTC) if since else None
        result = preview_categories(settings, labels, now=app.now, since=since_utc)
        stem = "-".join(sorted(label.strip().lower().replace(" ", "-") for label in labels))
    if not result.summaries:
        who = subscriber or f"a reader of {', '.join(result.categories)}"
        out.print(
            f"No email for {who} this week ({result.reason}); window "
            f"{result.since:%Y-%m-%d %H:%M} to {result.cutoff:%Y-%m-%d %H:%M} UTC."
        )
        return
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    html = folder / f"{stem}.html"
    html.write_text(result.html, encoding="utf-8")
    (folder / f"{stem}.txt").write_text(result.text, encoding="utf-8")
    (folder / f"{stem}.eml").write_bytes(result.eml)
    out.print(f"{result.subject}")
    if result.reason:
        out.print(f"({result.reason})")
    out.print(
        f"Wrote {folder / stem}.html, .txt and .eml ({result.summaries} summaries since "
        f"{result.since:%Y-%m-%d %H:%M} UTC)."
    )
    for problem in result.problems:
        out.print(f"Problem (a send would stop): {problem}")
    if result.warnings:
        out.print(f"{len(result.warnings)} summaries lack fields; `digest check` lists them.")
    if open_it:
        webbrowser.open(html.resolve().as_uri())


@click.command()
@pass_app
def check(app: Context) -> None:
    """Check this week's digests before sending: every variant renders, stays under Gmail's
    clipping size, has https links, alt text, the footer in both parts, every title and link in
    the text part, and no empty section; the MJML passes MJML's own validator. A send runs
    the same checks and stops before the first message if any fails. The confirmation and
    "your links" emails are rendered with sample data and checked too, from the same
    templates folder.

    \b
    Example:
      digest check && digest send
    """
    from digest.edition.checks import run_checks
    from digest.notices.checks import NOTICES, notice_problems

    now = app.now
    report = run_checks(app.factory, app.settings, now=now)
    notices = notice_problems(app.settings, now=now)
    names = " and ".join(name for name, _ in NOTICES)
    variants = report.checked.variants
    if not variants:
        out.print(f"No digest to check: there are no summaries yet. Checked the {names}.")
        if notices:
            raise PreflightError(notices, what="fix them before sending")
        out.print("No problems found.")
        return
    if report.sample:
        out.print(
            f"Nobody is left to get a digest in edition {report.plan.key}: checked a sample "
            "of the latest summaries in every category."
        )
    else:
        readers = sum(report.plan.recipients.values())
        out.print(
            f"Checked {len(variants)} variants of edition {report.plan.key} "
            f"({readers} readers) with the templates in {report.templates_dir}."
        )
    validation = report.checked.validation
    detail = f" ({validation.detail})" if validation.status == "skipped" else ""
    out.print(f"MJML validation: {validation.status}{detail}.")
    if report.checked.warnings:
        out.print(f"Warnings ({len(report.checked.warnings)}, not blocking):")
        for warning in report.checked.warnings:
            out.print(f"  - {warning}")
    out.print(f"Checked the {names} too.")
    if report.problems or notices:
        raise PreflightError([*report.problems, *notices], what="fix them before sending")
    out.print("No problems found.")


@click.group()
def templates() -> None:
    """Your own copy of the email templates (templates_dir in digest.toml).

    \b
    Example:
      digest templates copy my-templates
    """


@templates.command("copy")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def templates_copy(directory: str, force: bool) -> None:
    """Copy the built-in email templates into DIRECTORY to start your own from.

    \b
    Example:
      digest templates copy my-templates && echo 'templates_dir = "my-templates"' >> digest.toml
    """
    source = builtin_templates_dir()
    target = Path(directory)
    files = sorted(p for p in (source / "email").rglob("*") if p.is_file())
    pairs = [(p, target / p.relative_to(source)) for p in files]
    existing = [str(dest) for _, dest in pairs if dest.exists()]
    if existing and not force:
        more = len(existing) - 1
        which = f"{existing[0]} and {more} more file{'s' if more != 1 else ''}" if more else ""
        raise DigestError(
            f"{which or existing[0]} already exist{'' if more else 's'} (use --force to overwrite)"
        )
    for src, dest in pairs:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    out.print(f"Copied {len(pairs)} templates into {target / 'email'}.")
    out.print(
        f'Use them with templates_dir = "{directory}" in digest.toml (or DIGEST_TEMPLATES_DIR), '
        "then run `digest check`."
    )
