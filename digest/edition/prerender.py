"""Render variants while the plan is still queueing their readers.

Planning spends most of its time waiting for the database (inserting a ledger row per
reader), rendering none (premailer, MJML, quoted-printable: CPU only). So each variant
the plan creates is rendered at once on a thread of its own, and the plan's waits and the
renders overlap. After the plan, :meth:`Prerender.renders` hands over exactly what
:func:`~digest.edition.passes.render_pending` would have made for the pending variants:
those rendered early (with the same contents, date and web address), the rest rendered
then. The preflight then checks them all, as before: nothing goes out before every
variant has passed it.

In a process, the renders and the plan take turns (both are CPU for the interpreter).
Once an edition has many variants (:data:`~digest.edition.render_pool.HELPERS_FROM`) and
the machine more than one core, the thread hands them to helper processes
(:class:`~digest.edition.render_pool.RenderPool`), which also run the preflight's checks
of each one; a helper that dies only leaves its variants to be rendered here after the
plan.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future

from sqlalchemy.orm import Session, sessionmaker

from digest.delivery.ledger import PendingVariant
from digest.edition import render_pool
from digest.edition.passes import render_pending
from digest.edition.render_pool import HelperStopped, Made, RenderPool
from digest.edition.variants import Built, Renders, render_each
from digest.planning.catalog import load_contents
from digest.planning.selection import VariantKey
from digest.render.cards import DigestContent
from digest.render.renderer import Renderer

log = logging.getLogger(__name__)
_DONE = None


class Prerender:
    """A thread rendering the variants :meth:`submit` names, in the order named. Use it
    through ``contextlib.closing``: :meth:`close` stops the thread (after the variant it is
    rendering) when the plan fails. With ``helpers``, once ``helpers_from`` variants were
    submitted (default :data:`~digest.edition.render_pool.HELPERS_FROM`), the rest are
    rendered and checked by that many helper processes."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        renderer: Renderer,
        cap: int,
        *,
        date: dt.datetime,
        edition: str | None = None,
        helpers: int = 0,
        helpers_from: int | None = None,
    ) -> None:
        self.factory = factory
        self.renderer = renderer
        self.cap = cap
        self.date = date
        self.edition = edition
        self.helpers = helpers
        self.helpers_from = render_pool.HELPERS_FROM if helpers_from is None else helpers_from
        self._pool: RenderPool | None = None
        self._seen = 0  # variants read so far
        self._sent: dict[VariantKey, tuple[Future[Made], str, DigestContent]] = {}
        self._problems: dict[VariantKey, tuple[str, ...]] = {}
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
        self._collect()
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
        problems = {v.key: self._problems[v.key] for v in early if v.key in self._problems}
        return Renders(contents, built | rest.built, failures | dict(rest.failures), problems)

    def close(self) -> None:
        """Stop the thread without waiting for what is still queued."""
        self._stop.set()
        self._finish()
        if self._pool is not None:
            self._pool.close(cancel=True)

    def _collect(self) -> None:
        """What the helpers made, once each is done; a variant whose helper died is left
        to be rendered here. Any other error of a helper is raised."""
        if self._pool is None:
            return
        lost = 0
        for key, (future, web_id, content) in self._sent.items():
            try:
                made = future.result()
            except HelperStopped:
                lost += 1
                continue
            self._contents[key] = content
            if made.built is not None:
                self._built[key] = made.built
                self._problems[key] = made.problems
            if made.failure is not None:
                self._failures[key] = made.failure
            self._web_ids[key] = web_id
        self._sent.clear()
        pool, self._pool = self._pool, None
        pool.close()
        if lost:
            log.warning("a render helper stopped: %d variants are rendered after the plan", lost)

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
        self._seen += len(contents)
        if self._pool is None and self.helpers and self._seen >= self.helpers_from:
            try:
                self._pool = RenderPool(self.renderer, self.helpers)
            except OSError as exc:
                log.warning("no render helper could be started (%s): rendering here", exc)
                self.helpers = 0
        for key, content in contents.items():
            if self._stop.is_set():
                return
            if self._pool is not None:
                future = self._pool.submit(content, self.date, wanted[key])
                self._sent[key] = (future, wanted[key], content)
                continue
            made = render_each(self.renderer, {key: content}, date=self.date, web_ids=wanted)
            self._contents[key] = content
            self._built.update(made.built)
            self._failures.update(made.failures)
            self._web_ids[key] = wanted[key]
