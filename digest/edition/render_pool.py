"""Render variants on the machine's other cores: helper processes for a large edition.

A variant's render (MJML, premailer, quoted-printable) and its preflight checks are pure
CPU. In one process they share the interpreter's lock with the plan, which is CPU too
(reading readers, writing the ledger), so the first message waits for both, one after the
other. :class:`RenderPool` runs them in helper processes instead, each helper rendering and
checking whole variants: what comes back is what :func:`~digest.edition.build.build_variant`
and :func:`~digest.edition.build.problems_of` would have made in the sending process,
and the preflight still decides on every variant before anything goes out.

A helper is ``python -m digest.edition.render_pool``, a fresh interpreter that imports
the renderer and no database code (:mod:`digest.edition.build`; an import-linter contract
keeps it so). It is not a :mod:`multiprocessing` child, whose ``spawn`` runs the calling
script's top-level code again (a script of an admin's own calling ``run_edition``
without a ``__main__`` guard would do its work twice). The two sides exchange
length-prefixed pickles on the helper's standard input and output (our own processes
only). Helpers are started only when an edition has many variants: each costs 0.25 s of
CPU to start and, with warming up a renderer of its own and handing its results back,
about 1.5 s more CPU than rendering in one process (a 100k run on SQLite with two
helpers), which a handful of variants does not repay.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from digest.edition.build import build_variant, problems_of
from digest.errors import DigestError
from digest.mail.message import MessageTemplate
from digest.render.cards import DigestContent
from digest.render.identity import ListIdentity
from digest.render.renderer import Rendered, Renderer

#: Variants an edition has before helpers are started (each costs about 1.5 s of CPU).
HELPERS_FROM = 32
#: The most helper processes a run starts (each holds a renderer: about 75 MB).
MAX_HELPERS = 4
_LENGTH = struct.Struct(">Q")
Jobs = queue.SimpleQueue[tuple[Future["Made"], tuple[Any, ...]] | None]


class HelperStopped(Exception):
    """A helper process ended before it answered (killed, out of memory)."""


def helper_count(cores: int | None = None) -> int:
    """How many helpers a run may start: one per core this process may use, at most
    :data:`MAX_HELPERS`, and none on a single core (a helper would only take turns with
    the plan)."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return 0 if cores < 2 else min(cores, MAX_HELPERS)


@dataclass(frozen=True)
class Made:
    """One variant as a helper rendered it: built and checked, or why it failed."""

    built: tuple[Rendered, MessageTemplate] | None
    failure: str | None
    problems: tuple[str, ...]


def render_checked(
    renderer: Renderer, content: DigestContent, date: dt.datetime, web_id: str
) -> Made:
    """One variant rendered, built and put through the preflight's checks."""
    try:
        built = build_variant(renderer, content, date=date, web_id=web_id)
    except DigestError as exc:
        return Made(None, str(exc), ())
    return Made(built, None, problems_of(renderer.identity, content, built, web_id))


def _send(stream: IO[bytes], item: object) -> None:
    data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    """The next item, or EOFError when the other side is gone."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError
    (size,) = _LENGTH.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)  # noqa: S301 (written by our own parent or helper process)


class _Helper:
    """One helper process and the thread that feeds it jobs from the shared queue."""

    def __init__(self, renderer: Renderer, jobs: Jobs) -> None:
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])  # where `digest` is
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "digest.edition.render_pool"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._jobs = jobs
        self._identity = (renderer.identity, renderer.templates_dir)
        self.thread = threading.Thread(target=self._serve, name="digest-render-helper", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None
        assert stdout is not None
        stopped: BaseException | None = None
        try:
            _send(stdin, self._identity)
        except Exception as exc:  # its jobs are failed below, never left waiting
            stopped = exc
        while (job := self._jobs.get()) is not None:
            future, args = job
            if not future.set_running_or_notify_cancel():
                continue
            if stopped is not None:  # its jobs fail at once: rendered after the plan
                future.set_exception(HelperStopped(f"render helper stopped: {stopped!r}"))
                continue
            try:
                _send(stdin, args)
                ok, result = _receive(stdout)
            except Exception as exc:  # gone, or an answer that cannot be read: never hang
                stopped = exc
                future.set_exception(HelperStopped(f"render helper stopped: {exc!r}"))
                continue
            if ok:
                future.set_result(result)
            else:
                future.set_exception(result)
        with contextlib.suppress(OSError):
            stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        stdout.close()


class RenderPool:
    """Helper processes rendering with the same templates and identity as ``renderer``."""

    def __init__(self, renderer: Renderer, helpers: int) -> None:
        self._jobs: Jobs = queue.SimpleQueue()
        self._helpers: list[_Helper] = []
        try:
            for _ in range(helpers):
                self._helpers.append(_Helper(renderer, self._jobs))
        except OSError:  # no process could be started: the caller renders itself
            self.close()
            raise

    def submit(self, content: DigestContent, date: dt.datetime, web_id: str) -> Future[Made]:
        future: Future[Made] = Future()
        self._jobs.put((future, (content, date, web_id)))
        return future

    def close(self, *, cancel: bool = False) -> None:
        """Stop the helpers once they are done (``cancel``: without rendering what is
        still queued)."""
        if cancel:
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    job[0].cancel()
        for _ in self._helpers:
            self._jobs.put(None)
        for helper in self._helpers:
            helper.thread.join()


def _main() -> None:
    """A helper: read the identity, then render each job until the input ends."""
    out = os.fdopen(os.dup(1), "wb")  # replies only: anything printed goes to stderr
    os.dup2(2, 1)
    source = sys.stdin.buffer
    try:
        identity, templates_dir = _receive(source)
        renderer = Renderer(ListIdentity.of(identity), templates_dir)
        while True:
            content, date, web_id = _receive(source)
            try:
                reply: tuple[bool, object] = (True, render_checked(renderer, content, date, web_id))
            except Exception as exc:  # a bug: raised in the sending process, which stops
                reply = (False, exc)
            _send(out, reply)
    except EOFError:  # the run is done with this helper
        return


if __name__ == "__main__":  # run as a module: reply with this module's own classes
    from digest.edition import render_pool

    render_pool._main()
