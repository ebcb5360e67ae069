"""What every ``digest`` command shares: the run's context (settings and sessions, loaded once
and lazily), the transport of a run, output consoles and formats, and the edition key."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console, ConsoleDimensions
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from digest import clock
from digest.config import Settings, load_settings
from digest.delivery.transport import make_transport
from digest.errors import DigestError
from digest.mail.transports import Transport
from subscribers.csvio import neutralise

#: Width of a console that is not a terminal (a pipe, a file, a cron log): wide enough that
#: rich never wraps or cuts a value.
UNLIMITED = 1_000_000


class PipeConsole(Console):
    """A rich console that only wraps on a terminal: piped output keeps every value whole."""

    @property
    def size(self) -> ConsoleDimensions:
        if self.is_terminal:
            return super().size
        return ConsoleDimensions(UNLIMITED, 25)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


# No markup or emoji: addresses, titles and server replies are printed as they are.
out = PipeConsole(highlight=False, markup=False, emoji=False, soft_wrap=True)
err = PipeConsole(stderr=True, highlight=False, markup=False, emoji=False)

#: ``--format`` of the commands that print rows.
FORMATS = ("table", "csv", "json")

_KEY = re.compile(r"(\d{4})-W(\d{2})")


class DigestGroup(click.Group):
    """Turns :class:`DigestError` into one readable line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DigestError as exc:
            raise click.ClickException(str(exc)) from None


class Context:
    """The state of one ``digest`` run (``ctx.obj``): the config path given, and the settings,
    session factory and time of the run, each loaded on first use and only once."""

    def __init__(self, config_path: str | None = None, origin: str | None = None) -> None:
        self.config_path = config_path
        self.origin = origin  # how the path was given, for errors: "--config" or DIGEST_CONFIG

    @cached_property
    def settings(self) -> Settings:
        path = Path(self.config_path) if self.config_path else None
        return load_settings(path, origin=self.origin if path else None)

    @cached_property
    def now(self) -> dt.datetime:
        """The time of this run (aware, UTC): ``DIGEST_NOW`` when set (for tests and
        replays), else the real time when the run started (the root command reads it first,
        so a bad ``DIGEST_NOW`` stops every command). Commands pass it down as ``now``."""
        return clock.now()

    @cached_property
    def factory(self) -> sessionmaker[Session]:
        from digest.store.schema import open_database

        return open_database(self.settings)


F = TypeVar("F", bound=Callable[..., Any])

#: ``@pass_app``: the command gets the run's :class:`Context` as its first argument.
pass_app = click.make_pass_decorator(Context, ensure=True)


@contextmanager
def transport_for(settings: Settings, name: str | None = None) -> Iterator[Transport]:
    """The transport of this run (the configured one unless ``name`` says otherwise),
    closed however the run ends."""
    transport = make_transport(settings, name or settings.transport)
    try:
        yield transport
    finally:
        transport.close()


class EditionKey(click.ParamType):  # type: ignore[type-arg]
    """An edition key: an ISO week such as ``2026-W49``."""

    name = "KEY"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        if not _week_exists(text.upper()):
            self.fail(f"{value!r} is not an edition key: give a week such as 2026-W49", param, ctx)
        return text.upper()


def _week_exists(key: str) -> bool:
    """``2026-W49`` names a real ISO week (2025 has no week 53)."""
    match = _KEY.fullmatch(key)
    if not match:
        return False
    try:
        dt.date.fromisocalendar(int(match.group(1)), int(match.group(2)), 1)
    except ValueError:
        return False
    return True


EDITION_KEY = EditionKey()


def edition_argument(*, required: bool = False, legacy_option: bool = False) -> Callable[[F], F]:
    """The ``KEY`` argument that names an edition, given the same way in every command;
    ``legacy_option`` also accepts the hidden ``--edition KEY`` of scripts written before."""

    def decorate(function: F) -> F:
        function = click.argument("key", type=EDITION_KEY, required=required)(function)
        if legacy_option:
            function = click.option("--edition", "edition_option", type=EDITION_KEY, hidden=True)(
                function
            )
        return function

    return decorate


def chosen_key(key: str | None, edition_option: str | None) -> str | None:
    """The key given as argument or (older scripts) as ``--edition``; both must agree."""
    if key and edition_option and key != edition_option:
        raise click.UsageError(f"two different editions given: {key} and {edition_option}")
    return key or edition_option


def format_option(function: F) -> F:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="table for people; csv or json for programs (values never cut).",
    )(function)


def print_rows(
    fmt: str, columns: Sequence[str], rows: Sequence[Sequence[str]], **table: Any
) -> None:
    """Rows as a rich table (kept whole when piped), as CSV with a header, or as a JSON list
    of objects keyed by column."""
    if fmt == "csv":  # names and server replies come from outside: never run as formulas
        rows_out = csv.writer(sys.stdout, lineterminator="\n")
        rows_out.writerow(columns)
        rows_out.writerows([neutralise(value) for value in row] for row in rows)
        return
    if fmt == "json":
        records = [dict(zip(columns, row, strict=True)) for row in rows]
        click.echo(json.dumps(records, ensure_ascii=False, indent=2))
        return
    shown = Table(**table)
    for column in columns:
        shown.add_column(column, overflow="fold")
    for row in rows:
        shown.add_row(*row)
    out.print(shown)


def shown_path(path: Path) -> str:
    """``path`` relative to the current folder when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
