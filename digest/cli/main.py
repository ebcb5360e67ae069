"""The ``digest`` command: the root group and its options; it only assembles the command
groups, each in its own module."""

from __future__ import annotations

import click

from digest import __version__
from digest.cli import corrections as _corrections  # noqa: F401  (summaries correct|retract)
from digest.cli.admin import admin
from digest.cli.base import Context, DigestGroup
from digest.cli.bounces import bounces, deliverability
from digest.cli.categories import categories
from digest.cli.editions import deliveries, editions
from digest.cli.maintenance import maintenance
from digest.cli.preview import check, preview, templates
from digest.cli.schedule import schedule
from digest.cli.send import send
from digest.cli.setup import demo, init
from digest.cli.subscribers import subscribers
from digest.cli.summaries import summaries
from digest.cli.web import serve


@click.group(cls=DigestGroup)
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    envvar="DIGEST_CONFIG",
    help="Config file (default: ./digest.toml).",
)
@click.version_option(__version__, prog_name="digest")
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """Weekly email digests of new research summaries, one per subscriber.

    \b
    Example:
      digest demo              # try it: sample data, this week's edition into ./outbox
    """
    from_env = ctx.get_parameter_source("config") is click.core.ParameterSource.ENVIRONMENT
    ctx.obj = Context(config, origin="--config (set by DIGEST_CONFIG)" if from_env else "--config")
    ctx.obj.now  # noqa: B018 (a bad DIGEST_NOW stops every command, before it does anything)


for command in (
    init,
    demo,
    send,
    schedule,
    categories,
    editions,
    deliveries,
    summaries,
    subscribers,
    preview,
    check,
    templates,
    bounces,
    deliverability,
    maintenance,
    serve,
    admin,
):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="digest")
