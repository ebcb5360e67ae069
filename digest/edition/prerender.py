"""Render variants while the plan is still queueing their readers.

Planning spends most of its time waiting for the database (inserting a ledger row per
reader), rendering none (premailer, MJML, quoted-printable: CPU only). So each variant
the plan creates is rendered at once on a thread of its own, and the plan's waits and the
renders overlap. After the plan, :meth:`Prerender.renders` hands over exactly what
:func:`~digest.edition.passes.render_pending` would have made for the pending variants:
those rendered early (with the same contents, date and web address), the rest rendered
then. The preflight then checks them all, as before: nothing goes out before every
variant has passed it.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
from collections.abc import Sequence

from sqlalchemy.orm import Session, sessionmaker

from digest.delivery.ledger import PendingVariant
from digest.edition.passes import render_pending
from digest.edition.variants import Built, Renders, render_each
from digest.planning.catalog import load_contents
from digest.planning.selection import VariantKey
from digest.render.cards import DigestContent
from digest.render.renderer import Renderer

_DONE = None


class Prerender:
    """A thread rendering the variants :meth:`submit` names, in the order named. Use it
    through ``contextlib.closing``: :meth:`close` stops the thread (after the variant it is
    rendering) when the plan fails."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        renderer: Renderer,
        cap: int,
        *,
        date: dt.datetime,
        edition: str | None = None,
    ) -> None:
        self.factory = factory
        self.renderer = renderer
        self.cap = cap
        self.date = date
        self.edition = edition
        self._todo: queue.SimpleQueue[tuple[VariantKey, str] | None] = queue.SimpleQueue()
        self._contents: dict[VariantKey, DigestContent] = {}
        self._built: Built = {}
        self._failures: dict[VariantKey, str] = {}
        self._web_ids: dict[VariantKey, str] = {}
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="digest-prerender", daemon=True)
        self._thread.start()

    def submit(self, key: VariantKey, web_id: str) -> None:
        """A variant the plan just created (``web_id``: its web version's address)."""
        self._todo.put((key, web_id))

    def renders(self, pending: Sequence[PendingVariant]) -> Renders:
        """What the render step makes of ``pending``, once the thread has finished what
        was submitted: early renders whose web address is still the stored one, and the
        others rendered now. An unexpected error of the thread is raised here."""
        self._finish()
        if self._error is not None:
            raise self._error
        early = [v for v in pending if self._web_ids.get(v.key) == v.web_id]
        late = [v for v in pending if self._web_ids.get(v.key) != v.web_id]
        rest = (
            render_pending(
                self.factory,
                self.renderer,
                self.cap,
                late,
                date=self.date,
                edition=self.edition,
            )
            if late
            else Renders({}, {}, {})
        )
        contents = {v.key: self._contents[v.key] for v in early} | dict(rest.contents)
        built = {v.key: self._built[v.key] for v in early if v.key in self._built}
        failures = {v.key: self._failures[v.key] for v in early if v.key in self._failures}
        return Renders(contents, built | rest.built, failures | dict(rest.failures))

    def close(self) -> None:
        """Stop the thread without waiting for what is still queued."""
        self._stop.set()
        self._finish()

    def _finish(self) -> None:
        if self._thread.is_alive():
            self._todo.put(_DONE)
            self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                wanted = self._take()
                if wanted is None:
                    return
                self._render(wanted)
        except BaseException as exc:  # handed to the caller by renders()
            self._error = exc

    def _take(self) -> dict[VariantKey, str] | None:
        """Every variant queued by now (at least one, waiting for it): read in one go.
        None once told that nothing more comes."""
        first = self._todo.get()
        if first is _DONE:
            return None
        wanted = dict([first])
        while True:
            try:
                item = self._todo.get_nowait()
            except queue.Empty:
                return wanted
            if item is _DONE:
                self._todo.put(_DONE)  # seen again after these are rendered
                return wanted
            wanted[item[0]] = item[1]

    def _render(self, wanted: dict[VariantKey, str]) -> None:
        with self.factory() as session:
            contents = load_contents(session, list(wanted), self.cap, edition=self.edition)
        for key, content in contents.items():
            if self._stop.is_set():
                return
            made = render_each(self.renderer, {key: content}, date=self.date, web_ids=wanted)
            self._contents[key] = content
            self._built.update(made.built)
            self._failures.update(made.failures)
            self._web_ids[key] = wanted[key]
