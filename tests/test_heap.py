"""The collector skips what a run holds while it sends, and sees everything again after
it: a scheduler that runs editions for months must collect a run's garbage afterwards,
and a process that froze objects of its own keeps them frozen."""

from __future__ import annotations

import datetime as dt
import gc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings
from digest.edition.run import run_edition
from digest.mail.transports import MemoryTransport
from digest.mail.transports.base import Delivered, Job, OnWire
from tests.conftest import NOW, add_categories, add_reader, add_summary


class Marker:
    """An object made before the run, tracked by the collector."""


def tracked(marker: Marker) -> bool:
    """Whether the collector's generations hold ``marker`` (not frozen)."""
    return any(item is marker for item in gc.get_objects())


@dataclass
class WatchingTransport(MemoryTransport):
    """Notes, as each message goes out, whether the collector still walks ``marker``."""

    marker: Marker = field(default_factory=Marker)
    walked: list[bool] = field(default_factory=list)

    def deliver(self, jobs: Iterable[Job | None], on_wire: OnWire) -> Iterator[Delivered]:
        for delivered in super().deliver(jobs, on_wire):
            self.walked.append(tracked(self.marker))
            yield delivered


def plan_three(factory: sessionmaker[Session]) -> None:
    add_categories(factory, "Pharmacology")
    add_summary(factory, "A study", ["pharmacology"], NOW - dt.timedelta(days=2))
    for i in range(3):
        add_reader(factory, f"reader{i}@example.org", ["pharmacology"])


def test_the_run_freezes_what_it_holds_while_sending_and_thaws_it_after(
    db_settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    plan_three(factory)
    transport = WatchingTransport()
    assert gc.get_freeze_count() == 0
    assert tracked(transport.marker)

    report = run_edition(db_settings, transport, now=NOW, engine=engine)

    assert report.sent == 3
    assert transport.walked == [False, False, False]  # skipped by every collection
    assert gc.get_freeze_count() == 0  # nothing left out of the collector's reach
    assert tracked(transport.marker)


def test_a_process_that_froze_objects_of_its_own_keeps_them_frozen(
    db_settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    plan_three(factory)
    transport = WatchingTransport()
    gc.freeze()
    try:
        made_after = Marker()  # the run does not freeze what the process made since

        report = run_edition(db_settings, transport, now=NOW, engine=engine)

        assert report.sent == 3
        assert transport.walked == [False, False, False]  # frozen by the process itself
        assert not tracked(transport.marker)  # still frozen after the run
        assert tracked(made_after)
    finally:
        gc.unfreeze()
