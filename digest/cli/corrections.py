"""``digest summaries correct`` and ``retract``: mark a summary, so its readers get a notice."""

from __future__ import annotations

import click

from digest.cli.base import Context, out, pass_app
from digest.cli.summaries import summaries
from digest.errors import DataError
from digest.sources.corrections import CORRECTED, NOTE_LIMIT, RETRACTED, correct
from digest.store.db import transaction


def _mark(app: Context, reference: str, status: str, note: str) -> None:
    if not note.strip():
        raise DataError("--note: say what changed, in a sentence or two")
    if len(note) > NOTE_LIMIT:
        raise DataError(f"--note is {len(note):,} characters; at most {NOTE_LIMIT:,}")
    try:
        with transaction(app.factory) as session:
            summary, notice = correct(session, reference, status, note, now=app.now)
            title, summary_id = summary.title, summary.id
    except LookupError:
        raise DataError(f"no summary with id or URL {reference!r}") from None
    word = "retracted" if status == RETRACTED else "corrected"
    if notice is None:
        out.print(
            f"Summary {summary_id} ({title}) was already {word} with this note; nothing changed."
        )
    else:
        out.print(
            f"Summary {summary_id} ({title}) marked {word}: everyone who was sent it gets a "
            "notice in their next digest."
        )


@summaries.command("correct")
@click.argument("reference", metavar="ID")
@click.option("--note", required=True, help="What was corrected, in plain words.")
@pass_app
def correct_command(app: Context, reference: str, note: str) -> None:
    """Mark the summary ID (its id or URL) as corrected; everyone who was sent it gets the
    note at the top of their next digest, once.

    \b
    Example:
      digest summaries correct 42 --note "The trial had 112 participants, not 212."
    """
    _mark(app, reference, CORRECTED, note)


@summaries.command("retract")
@click.argument("reference", metavar="ID")
@click.option("--note", required=True, help="Why the study was withdrawn, in plain words.")
@pass_app
def retract_command(app: Context, reference: str, note: str) -> None:
    """Mark the summary ID (its id or URL) as retracted: it is never sent again, the site
    labels it, and everyone who was sent it gets the note at the top of their next digest.

    \b
    Example:
      digest summaries retract https://example.org/research/x --note "The journal withdrew it."
    """
    _mark(app, reference, RETRACTED, note)
