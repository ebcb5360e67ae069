"""What every ``digest`` command shares: output consoles, one-line errors, settings."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from digest.config import Settings, load_settings
from digest.errors import DigestError

# Wide enough for tables when the output goes to a file or a pipe (cron, logs, tests).
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False)


class DigestGroup(click.Group):
    """Turns :class:`DigestError` into one readable line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DigestError as exc:
            raise click.ClickException(str(exc)) from None


def _settings(ctx: click.Context) -> Settings:
    root = ctx.find_root()
    path = root.params.get("config")
    from_env = root.get_parameter_source("config") is click.core.ParameterSource.ENVIRONMENT
    origin = "--config (set by DIGEST_CONFIG)" if from_env else "--config"
    return load_settings(Path(path) if path else None, origin=origin if path else None)
