"""Settle the rows a dead (or displaced) sender left ``sending``, from the outcome journals.

Called at the start of a run, under the edition's send lock and with no worker process
sending (so every ``sending`` row belongs to a sender that is gone or going). When the
previous holder may still be running (its lease ran out, or its lock session ended while
it lived), or a row's sender cannot be seen from here (a worker on another machine whose
lock session ended), that sender has up to two heartbeats to notice and stop: the rows are
settled only after :attr:`SendLock.settle` seconds, and after the journals of senders still
alive stop holding any of them (or ten heartbeats at most).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from digest.delivery import journal, ledger
from digest.delivery.locks import SendLock


@dataclass(frozen=True)
class Settled:
    """What a resume did with the rows left ``sending``."""

    recorded: int = 0  # their outcome was in a journal: recorded, not sent again
    possibly_duplicated: int = 0  # may have reached their reader: sent again, marked
    unsent: int = 0  # never on the wire: queued again silently
    unknown: int = 0  # of possibly_duplicated: no journal here knew them (another machine)


def settle_in_flight(
    factory: sessionmaker[Session],
    edition_id: int,
    key: str,
    folder: Path,
    database_url: str,
    lock: SendLock | None,
    sleep: Callable[[float], None] = time.sleep,
) -> Settled:
    """Resolve every row left ``sending`` (see :func:`digest.delivery.journal.resolve`),
    then delete the journals of senders that are gone."""
    sending, found = _look(factory, edition_id, key, folder, database_url)
    if (
        sending
        and lock is not None
        and (lock.previous_may_live or _held(sending, found) or _unknown(sending, found))
    ):
        sleep(lock.settle)  # the old holder notices within two heartbeats, then records
        sending, found = _look(factory, edition_id, key, folder, database_url)
        for _ in range(7):  # up to ten heartbeats in all while a live one still holds rows
            if not _held(sending, found):
                break
            sleep(lock.heartbeat)
            sending, found = _look(factory, edition_id, key, folder, database_url)
    if not sending:
        journal.remove(j for j in found if not j.alive)
        return Settled()
    decided = journal.resolve(sending, found)
    marked = ledger.resolve_in_flight(
        factory,
        edition_id,
        outcomes=decided.outcomes,
        resend=decided.resend,
        unsent=decided.unsent,
    )
    journal.remove(j for j in found if not j.alive)
    return Settled(len(decided.outcomes), marked, len(decided.unsent), decided.unknown)


def _look(
    factory: sessionmaker[Session], edition_id: int, key: str, folder: Path, database_url: str
) -> tuple[list[int], list[journal.Found]]:
    with factory() as session:
        sending = ledger.in_flight(session, edition_id)
    return sending, journal.read_journals(folder, database_url, key)


def _unknown(sending: Sequence[int], found: Sequence[journal.Found]) -> bool:
    """Whether a row left ``sending`` is in no journal this machine trusts: its sender
    ran elsewhere (a worker on another machine) and may still be sending it."""
    known: set[int] = set()
    for j in found:
        if j.trusted:
            known.update(j.states)
    return not known.issuperset(sending)


def _held(sending: Sequence[int], found: Sequence[journal.Found]) -> bool:
    """Whether a sender still running holds any of the ``sending`` rows."""
    return any(j.alive and not j.states.keys().isdisjoint(sending) for j in found)
