"""``digest categories``: the topics readers subscribe to."""

from __future__ import annotations

import click
from rich.table import Table

from digest.cli.base import Context, out, pass_app
from digest.sources.catalog import category_counts


@click.group()
def categories() -> None:
    """Categories readers subscribe to, with their summaries and subscribers.

    \b
    Example:
      digest categories list
    """


@categories.command("list")
@pass_app
def categories_list(app: Context) -> None:
    """Show each category's slug, name, summaries and active subscribers.

    \b
    Example:
      digest categories list
    """
    with app.factory() as session:
        rows = category_counts(session)
    if not rows:
        out.print("No categories yet: import summaries first.")
        return
    table = Table()
    for column in ("slug", "name", "summaries", "subscribers"):
        table.add_column(
            column, justify="right" if column in ("summaries", "subscribers") else "left"
        )
    for c in rows:
        table.add_row(c.slug, c.name, str(c.summaries), str(c.subscribers))
    out.print(table)
